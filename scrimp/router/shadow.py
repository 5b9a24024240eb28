"""Shadow evaluation: after a request is answered, ask the route's other candidate model the same thing in
the background (a sampled share of traffic, within a daily spend cap), score the cheap answer against the
strong one, and keep the result in the ledger (`shadow` table). These results train the learned router
(`scrimp router export-shadow`) and feed the drift guard."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from scrimp import pricing
from scrimp.canonical import ChatRequest, ChatResponse
from scrimp.options import Where
from scrimp.pipeline import Call, Reply
from scrimp.router import scorers
from scrimp.router.checks import answer_text

log = logging.getLogger("scrimp.router")


@dataclasses.dataclass
class ShadowPolicy:
    share: float = 0.05  # of the route's eligible traffic
    max_usd_per_day: float = 1.0
    scorer: str = "embedding"
    judge_model: str | None = None
    fields: list[str] | None = None  # json scorer: the fields that must match
    max_in_flight: int = 4
    seed: int | None = None  # fixes the sampling sequence (tests, reproducible experiments)

    def check(self, where: Where) -> None:
        if not 0 <= self.share <= 1:
            raise where.key("share").error(f"must be between 0 and 1, got {self.share}")
        if self.scorer not in (*scorers.SCORERS, "judge"):
            raise where.key("scorer").error(f"must be one of {', '.join([*scorers.SCORERS, 'judge'])}, "
                                            f"got {self.scorer!r}")
        if self.max_in_flight < 1 or self.max_usd_per_day < 0:
            raise where.error("max_in_flight must be at least 1 and max_usd_per_day not negative")


class ShadowRunner:
    """Runs one route's shadow calls; keeps the day's spend so the cap holds."""

    def __init__(self, route: str, policy: ShadowPolicy, upstream: Callable[[Call], Awaitable[Reply]],
                 providers: dict[str, str], record: Callable[[str, dict[str, Any]], None],
                 on_score: Callable[[float, str], None], seed: int | None = None) -> None:
        self.route = route
        self.policy = policy
        self.upstream = upstream
        self.providers = providers
        self.record = record  # (ledger table, row)
        self.on_score = on_score  # (score, which model served the client)
        self._rng = random.Random(seed)
        self._day = ""
        self.spent_today = 0.0
        self.in_flight = 0
        self.runs = 0
        self.skipped_for_cap = 0
        self._tasks: set[asyncio.Task] = set()

    def _roll_day(self) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        if day != self._day:
            self._day, self.spent_today = day, 0.0

    def maybe_run(self, call: Call, served: str, other: str, cheap: str, strong: str, resp: ChatResponse) -> bool:
        """Start a shadow call for this answered request if it is sampled and the cap allows."""
        if self.policy.share <= 0 or self._rng.random() >= self.policy.share:
            return False
        self._roll_day()
        if self.spent_today >= self.policy.max_usd_per_day:
            self.skipped_for_cap += 1
            return False
        if self.in_flight >= self.policy.max_in_flight:
            return False
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(call, served, other, cheap, strong, resp))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _ask(self, model: str, req: ChatRequest, parent: Call) -> tuple[ChatResponse, float]:
        sub = Call(dataclasses.replace(req, stream=False), parent.attribution, requested_model=model,
                   target_model=model, request_id=parent.request_id + "-shadow")
        sub.client_key = parent.client_key
        reply = await self.upstream(sub)
        resp = reply.response
        assert resp is not None
        try:
            cost = pricing.cost(reply.served_model, reply.served_provider or None, resp.usage)
        except pricing.UnknownPrice:
            cost = 0.0
        cost += sum(c.usd for c in sub.costs)  # attempts of its own the provider billed (a timed-out try)
        self.spent_today += cost
        self.record("calls", _shadow_call_row(sub, reply, resp, cost, self.route))
        # the spend is charged to the router, against the call it evaluated
        self.record("savings", {"ts": time.time(), "request_id": parent.request_id,
                                "tenant": parent.attribution.tenant, "feature": parent.attribution.feature,
                                "kind": "cost", "lever": "router", "usd": cost,
                                "detail": f"shadow call to {model} (route {self.route})"})
        return resp, cost

    async def _run(self, call: Call, served: str, other: str, cheap: str, strong: str, resp: ChatResponse) -> None:
        try:
            other_resp, cost = await self._ask(other, call.request, call)
            cheap_text = answer_text(resp if served == cheap else other_resp)
            strong_text = answer_text(other_resp if served == cheap else resp)
            score, judge_cost = await self.score(call.request, cheap_text, strong_text, call)
            self.runs += 1
            self.record("shadow", {
                "ts": time.time(), "request_id": call.request_id, "route": self.route,
                "tenant": call.attribution.tenant, "feature": call.attribution.feature,
                "prompt": call.request.final_user_text(), "cheap_model": cheap, "strong_model": strong,
                "served": "cheap" if served == cheap else "strong", "cheap_answer": cheap_text[:20000],
                "strong_answer": strong_text[:20000], "score": score, "scorer": self.policy.scorer,
                "cost_usd": cost + judge_cost})
            self.on_score(score, "cheap" if served == cheap else "strong")
        except Exception:
            log.exception("shadow evaluation failed on route %s", self.route)
        finally:
            self.in_flight -= 1

    async def score(self, req: ChatRequest, cheap_text: str, strong_text: str, call: Call) -> tuple[float, float]:
        p = self.policy
        if p.scorer != "judge":
            fn = scorers.SCORERS[p.scorer]
            kwargs = {"fields": p.fields} if p.scorer == "json" else {}
            if p.scorer == "embedding":
                return await asyncio.to_thread(fn, cheap_text, strong_text), 0.0
            return fn(cheap_text, strong_text, **kwargs), 0.0
        spent = 0.0

        async def ask(prompt: str) -> str:
            nonlocal spent
            judge_req = ChatRequest(model=p.judge_model or "", messages=[
                {"role": "user", "content": [{"type": "text", "text": prompt}]}], max_tokens=8, temperature=0)
            resp, cost = await self._ask(p.judge_model or "", judge_req, call)
            spent += cost
            return answer_text(resp)

        score = await scorers.judge(cheap_text, strong_text, prompt=req.final_user_text(), ask=ask)
        return score, spent

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _shadow_call_row(sub: Call, reply: Reply, resp: ChatResponse, cost: float, route: str) -> dict[str, Any]:
    # a shadow call is spend no client asked for: baseline 0, so it shows as the router's cost
    u = resp.usage
    return {"ts": time.time(), "request_id": sub.request_id, "tenant": sub.attribution.tenant,
            "user_id": sub.attribution.user, "feature": sub.attribution.feature, "inbound": sub.request.inbound,
            "requested_model": sub.requested_model, "served_model": reply.served_model,
            "provider": reply.served_provider, "input_tokens": u.input, "output_tokens": u.output,
            "cache_read_tokens": u.cache_read, "cache_write_5m_tokens": u.cache_write_5m,
            "cache_write_1h_tokens": u.cache_write_1h, "reasoning_tokens": u.reasoning, "cost_usd": cost,
            "baseline_usd": 0.0, "saved_usd": -cost, "saving_stage": "router_shadow", "cache": "miss",
            "decisions": f'{{"shadow": "{route}"}}', "latency_ms": None, "ttft_ms": None, "stream": 0,
            "status": "ok", "error": None}
