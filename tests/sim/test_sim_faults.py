"""Rate limits, injected faults, API keys and the quality model."""

from __future__ import annotations

import httpx
import openai
import pytest

from scrimp.sim.config import ConfigError, Faults, ModelConfig, SimConfig, parse_config
from scrimp.sim.testing import run_simulator

MSG = [{"role": "user", "content": "hello"}]


def test_rate_limit_gives_429_with_retry_after():
    cfg = SimConfig(models={"gpt-4o-mini": ModelConfig("gpt-4o-mini", "openai", rpm=2)})
    with run_simulator(cfg) as (url, _):
        c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        r = httpx.post(url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_exceeded"


def test_injected_server_errors_and_keys():
    cfg = SimConfig(models={"gpt-4o": ModelConfig("gpt-4o", "openai", faults=Faults(rate_500=1.0))},
                    require_api_key=True)
    with run_simulator(cfg) as (url, _):
        assert httpx.post(url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": MSG}).status_code == 401
        c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="gpt-4o", messages=MSG)


def test_dropped_stream_breaks_the_connection():
    cfg = SimConfig(models={"gpt-4o": ModelConfig("gpt-4o", "openai", faults=Faults(drop_stream=1.0))})
    with run_simulator(cfg) as (url, _):
        c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        with pytest.raises((httpx.RemoteProtocolError, openai.APIError)):
            list(c.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=200, stream=True))


def test_quality_model_answers_by_capability(tmp_path):
    workload = tmp_path / "w.jsonl"
    workload.write_text('{"prompt": "What is 6 x 7?", "answer": "42", "difficulty": 0.8}\n')
    cfg = parse_config({"workload": str(workload)})
    with run_simulator(cfg) as (url, _):
        c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        strong = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "What is 6 x 7?"}])
        weak = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "What is 6 x 7?"}])
        assert strong.choices[0].message.content == "42"
        assert weak.choices[0].message.content not in ("42", "")


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match=r"models\[0\]\.capability"):
        parse_config({"models": [{"name": "x", "provider": "openai", "capability": "high"}]})
    with pytest.raises(ConfigError, match="colour"):
        parse_config({"colour": 1})


def test_faults_from_a_yaml_config_file(tmp_path):
    """A `faults:` section in the YAML file `scrimp sim serve --config` reads: the configured share of
    requests fails with the configured status, the rest are answered, and the same seed fails the same ones."""
    from scrimp.sim.config import load_config

    path = tmp_path / "sim.yaml"
    path.write_text(
        "seed: 7\n"
        "models:\n"
        "  - {name: gpt-4o-mini, provider: openai, tier: cheap, faults: {rate_429: 0.25}}\n"
        "  - name: gpt-4o\n"
        "    provider: openai\n"
        "    faults:\n"
        "      rate_529: 1.0\n"
        "  - {name: claude-haiku-4-5, provider: anthropic, faults: {rate_529: 1.0}}\n"
    )
    cfg = load_config(path)
    with run_simulator(cfg) as (url, _):
        c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)

        def outcomes(n: int) -> list[str]:
            out = []
            for _ in range(n):
                try:
                    c.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
                    out.append("ok")
                except openai.RateLimitError as exc:
                    assert exc.response.headers["retry-after"] == "1"
                    out.append("429")
            return out

        first = outcomes(200)
        assert 25 <= first.count("429") <= 75, first.count("429")  # 25% of 200, well within the binomial spread
        assert first.count("ok") == 200 - first.count("429")  # no other failure: not a blanket 500
        httpx.post(url + "/sim/reset")
        assert outcomes(200) == first  # the seed draws the same failures again

        with pytest.raises(openai.InternalServerError) as err:  # OpenAI models answer "overloaded" as 503
            c.chat.completions.create(model="gpt-4o", messages=MSG)
        assert err.value.status_code == 503
        r = httpx.post(url + "/v1/messages", headers={"anthropic-version": "2023-06-01", "x-api-key": "k"},
                       json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": MSG})
        assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"


def test_bad_fault_shares_are_refused():
    with pytest.raises(ConfigError, match=r"models\[0\]\.faults\.rate_429"):
        parse_config({"models": [{"name": "x", "provider": "openai", "faults": {"rate_429": 25}}]})
    with pytest.raises(ConfigError, match=r"models\[0\]\.faults\.rate_4299: unknown key"):
        parse_config({"models": [{"name": "x", "provider": "openai", "faults": {"rate_4299": 0.1}}]})
