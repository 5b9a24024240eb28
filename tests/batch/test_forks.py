"""Another attempt at an already deferred call (an output cap's continuation, a cascade's escalation) is a line
of its own: the client gets the whole answer, not the first line's answer twice."""

from __future__ import annotations

import openai


def test_an_output_cap_continuation_of_a_deferred_call_is_its_own_line(make_lane, sim):
    cap = {"name": "output_cap", "refresh_s": 0,
           "default": {"min_samples": 1, "floor": 1, "ceiling": 6}}
    lane = make_lane(extra=[cap])
    client = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0, timeout=60)
    question = [{"role": "user", "content": "Describe the nightly export job."}]
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "warm up"}])
    direct = openai.OpenAI(base_url=sim[0] + "/v1", api_key="k").chat.completions.create(
        model="gpt-4o-mini", messages=question)
    assert direct.usage.completion_tokens > 6  # so scrimp's learned cap of 6 cuts it
    got = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=question,
                                                           extra_headers={"x-scrimp-defer": "1h"})
    answer = got.parse()
    assert answer.choices[0].message.content == direct.choices[0].message.content
    assert answer.usage.completion_tokens == direct.usage.completion_tokens
    assert got.headers["x-scrimp-lane"] == "batch"
    assert lane.endpoint_hits("batch") == 2  # the cut first part and its continuation, each a provider line
