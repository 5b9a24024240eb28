"""The structured stage: an answer to a `json_schema` (or `json_object`) response format, or to a forced tool
call, is checked against the schema before the client sees it. An answer that does not fit gets one repair call
(the validation error sent back), then the original request goes to the feature's fallback model, then the
client gets a clear error in its API's shape (502, code `invalid_structured_output`, not to be retried). A
streamed request is answered once the answer is checked (then replayed as a stream).

It saves nothing: every rejected answer was billed, and is recorded as this lever's cost on the call."""

from __future__ import annotations

import collections
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from scrimp import pricing
from scrimp.canonical import ChatResponse
from scrimp.formats.errors import APIError
from scrimp.metrics import Sample
from scrimp.options import ConfigError
from scrimp.pipeline import Call, Next, Reply, collect, replay
from scrimp.stage import Stage, StageContext
from scrimp.structured.checks import Expectation, expectation, problem, usable
from scrimp.structured.options import StructuredOptions, StructuredPolicy
from scrimp.structured.repair import repair_request

log = logging.getLogger("scrimp.structured")


@dataclass
class Checked:
    """What became of one call's answers: outcome valid | repaired | fallback | failed | truncated | refused."""

    kind: str
    outcome: str = "error"  # until an answer is judged: the provider call itself failed
    invalid: int = 0  # answers that did not fit
    problems: list[str] = field(default_factory=list)

    def decision(self) -> dict[str, Any]:
        return {"kind": self.kind, "outcome": self.outcome, "invalid": self.invalid,
                "problem": self.problems[0] if self.problems else None}


class StructuredStage(Stage):
    name = "structured"
    Options = StructuredOptions

    def __init__(self, options: StructuredOptions) -> None:
        self.options = options
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()  # (feature, outcome) -> calls

    @classmethod
    def build(cls, options: StructuredOptions, ctx: StageContext) -> StructuredStage:
        for where, policy in [("default", options.default), *((f"features.{k}", v) for k, v in options.features.items())]:
            if policy.fallback_model is not None and policy.fallback_model not in ctx.models:
                raise ConfigError(f"stages.structured.{where}.fallback_model: unknown model {policy.fallback_model!r} "
                                  f"(configured: {', '.join(sorted(ctx.models))})")
        return cls(options)

    async def handle(self, call: Call, next: Next) -> Reply:
        policy = self.options.policy(call.attribution.feature)
        exp = expectation(call.request, tools=policy.tools, json_object=policy.json_object) if policy.enabled else None
        if exp is None:
            return await next(call)
        checked = Checked(exp.kind)
        call.decisions["structured"] = checked.decision()
        if not usable(exp):
            checked.outcome = "unchecked"  # the client's schema is no JSON schema: the provider will say so
            call.decisions["structured"] = checked.decision()
            return await next(call)
        try:
            reply, resp = await self._attempts(call, next, exp, policy, checked)
        finally:
            call.decisions["structured"] = checked.decision()
            self.counts[(call.attribution.feature or "", checked.outcome)] += 1
            self.counts[(call.attribution.feature or "", "invalid")] += bool(checked.invalid)
        if call.request.stream:  # the checked answer, sent as a stream (and billed if the client hangs up)
            return dataclasses.replace(reply, response=None, stream=replay(resp), partial=lambda: resp)
        return reply

    async def _attempts(self, call: Call, next: Next, exp: Expectation, policy: StructuredPolicy,
                        checked: Checked) -> tuple[Reply, ChatResponse]:
        asked = dataclasses.replace(call.request, stream=False)
        first = call.fork(request=asked)
        tries: list[tuple[str, Call]] = []
        try:
            reply, resp = await self._ask(next, first)
        except APIError as exc:
            if exc.code != "invalid_json_output":
                raise
            # the upstream's own JSON check (a model without a JSON mode) already asked again: on to the fallback
            checked.invalid += 1
            checked.problems.append(exc.message)
            call.costs.extend(first.costs)
        else:
            if resp.stop_reason in ("max_tokens", "refusal"):  # cut or refused: the client sees it as it is
                checked.outcome = "truncated" if resp.stop_reason == "max_tokens" else "refused"
                call.adopt(first)
                return reply, resp
            found = problem(resp, exp)
            if found is None:
                checked.outcome = "valid"
                call.adopt(first)
                return reply, resp
            self._reject(call, first, reply, resp, checked, found)
            if policy.repair:
                tries.append(("repaired", call.fork(request=repair_request(asked, resp, exp, found),
                                                    target_model=reply.served_model or call.target_model)))
        if policy.fallback_model:
            tries.append(("fallback", call.fork(request=asked, target_model=policy.fallback_model)))
        for outcome, attempt in tries:
            try:
                reply, resp = await self._ask(next, attempt)
            except Exception as exc:  # noqa: BLE001 - a failed try leads to the next one, then to the error
                checked.problems.append(f"{outcome} attempt failed: {str(exc)[:120]}")
                call.costs.extend(attempt.costs)
                continue
            found = problem(resp, exp) if resp.stop_reason != "max_tokens" else "cut off at max_tokens"
            if found is None:
                checked.outcome = outcome
                call.adopt(attempt)
                if outcome == "fallback":
                    call.target_model = attempt.target_model
                return reply, resp
            self._reject(call, attempt, reply, resp, checked, found)
        checked.outcome = "failed"
        tried = 1 + len(tries)
        what = "a JSON answer that fits the schema" if exp.kind != "tool" else "a tool call whose arguments fit its schema"
        raise APIError(502, f"The model did not give {what} after {tried} attempt(s) "
                            f"({'; '.join(p[:200] for p in checked.problems)}).", code="invalid_structured_output",
                       headers={"x-should-retry": "false"})

    @staticmethod
    async def _ask(next: Next, attempt: Call) -> tuple[Reply, ChatResponse]:
        reply = await next(attempt)
        return reply, await collect(reply)

    def _reject(self, call: Call, attempt: Call, reply: Reply, resp: ChatResponse, checked: Checked,
                found: str) -> None:
        """A rejected answer was still billed: its cost (and its attempt's own, a billed retry) is the call's."""
        checked.invalid += 1
        checked.problems.append(found)
        call.costs.extend(attempt.costs)
        if not reply.billed:
            return
        try:
            usd = pricing.cost(reply.served_model, reply.served_provider or None, resp.usage)
        except pricing.UnknownPrice:
            usd = 0.0
        call.spend(usd, f"structured: rejected answer of {reply.served_model} ({found[:120]})", self.name,
                   reply.served_model)

    def metrics(self) -> list[Sample]:
        return [Sample("scrimp_structured_answers_total", "counter",
                       "Structured-output calls by outcome (invalid: calls with at least one answer that did not fit).",
                       n, {"feature": feature, "outcome": outcome})
                for (feature, outcome), n in sorted(self.counts.items())]
