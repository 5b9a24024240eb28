"""The pipeline contract: stages run in order and can short-circuit, rewrite or observe."""

from __future__ import annotations

from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.pipeline import Call, Pipeline, Reply, StreamEvent, collect


def _request(text: str = "hi") -> ChatRequest:
    return ChatRequest(model="gpt-4o", messages=[{"role": "user", "content": [{"type": "text", "text": text}]}])


async def _terminal(call: Call) -> Reply:
    text = f"{call.target_model}:{call.request.final_user_text()}"
    return Reply(response=ChatResponse(id="r1", model=call.target_model, content=[{"type": "text", "text": text}],
                                       usage=Usage(input=3, output=2)), served_model=call.target_model)


class Rewrite:
    name = "rewrite"

    async def handle(self, call, next):
        call.target_model = "gpt-4o-mini"
        return await next(call)


class ShortCircuit:
    name = "short"

    async def handle(self, call, next):
        if call.request.final_user_text() == "cached":
            call.decisions["cache"] = "exact"
            return Reply(response=ChatResponse(id="c", model="x", content=[{"type": "text", "text": "from cache"}]))
        return await next(call)


class Observe:
    name = "observe"

    def __init__(self):
        self.seen = []

    async def handle(self, call, next):
        reply = await next(call)
        self.seen.append((call.decisions.get("cache"), reply.response.text() if reply.response else None))
        return reply


async def test_stages_rewrite_short_circuit_and_observe():
    observer = Observe()
    pipeline = Pipeline([observer, ShortCircuit(), Rewrite()], _terminal)

    reply = await pipeline(Call(_request("hello")))
    assert reply.response.text() == "gpt-4o-mini:hello"

    call = Call(_request("cached"))
    reply = await pipeline(call)
    assert reply.response.text() == "from cache"
    assert call.target_model == "gpt-4o"  # the rewrite stage after the hit never ran
    assert observer.seen == [(None, "gpt-4o-mini:hello"), ("exact", "from cache")]


async def test_collect_drains_a_stream_to_its_final_response():
    final = ChatResponse(id="s", model="m", content=[{"type": "text", "text": "ab"}], usage=Usage(input=1, output=2))

    async def events():
        yield StreamEvent("text", text="a")
        yield StreamEvent("text", text="b")
        yield StreamEvent("done", response=final)

    reply = Reply(stream=events())
    assert (await collect(reply)).text() == "ab"
    assert reply.response is final


def test_usage_fields_do_not_overlap():
    usage = Usage(input=100, cache_read=1000, cache_write_5m=50, cache_write_1h=25, output=10)
    assert usage.cache_write == 75
    assert usage.total_input == 1175
