"""The output_cap stage: per feature, a default `max_tokens` for requests that set none, learned from the
feature's complete answers (a high quantile of their output tokens, with headroom, between a floor and a
ceiling, once enough were seen), and an answer stopped at that cap continued by a second call with the partial
answer as the start of the assistant turn, so the client gets the whole answer with both calls' usage. A cap the
client set is never continued. Optionally a per-feature length instruction is added to the system prompt.

What it saves is stated as it is: a cap bounds what one answer can cost (the worst case a budget reserves), it
does not shorten a complete answer, so a capped call's saving record is 0 and a continued one's is negative: the
input the continuation paid again (the same answer in one uncapped call is the comparison)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from scrimp import pricing
from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.db import Database
from scrimp.metrics import Sample
from scrimp.outputcap.continuation import continuation_request, join, last_text_index, without_continuation
from scrimp.outputcap.lengths import DDL, AnswerLengths, quantile
from scrimp.outputcap.options import CapPolicy, OutputCapOptions
from scrimp.pipeline import Call, Counterfactual, Next, Reply, StreamEvent, collect, replay
from scrimp.stage import Stage, StageContext

log = logging.getLogger("scrimp.outputcap")


def learned_cap(policy: CapPolicy, lengths: list[int]) -> int | None:
    """The cap for a feature whose latest complete answers had these lengths (None: too few seen yet)."""
    if len(lengths) < policy.min_samples:
        return None
    cap = math.ceil(quantile(lengths, policy.quantile) * policy.headroom)
    return max(policy.floor, min(policy.ceiling, cap))


@dataclass
class Capped:
    """One call scrimp capped: what it set, what the client had set, and what became of the answer."""

    cap: int
    client_cap: int | None
    truncated: bool = False
    continued: bool = False
    extra_input: Usage = field(default_factory=Usage)  # what the continuation call paid for its input

    def decision(self) -> dict[str, Any]:
        return {"cap": self.cap, "client_cap": self.client_cap, "truncated": self.truncated,
                "continued": self.continued}


class OutputCapStage(Stage):
    name = "output_cap"
    Options = OutputCapOptions

    def __init__(self, options: OutputCapOptions, ctx: StageContext) -> None:
        self.options = options
        self.ctx = ctx
        self.lengths: AnswerLengths | None = None
        self.caps: dict[str, int | None] = {}  # feature -> learned cap
        self.samples: dict[str, int] = {}  # feature -> complete answers seen (up to its window)
        self._seen: set[str] = set()
        self._last_sync = -math.inf
        self._sync_task: asyncio.Task[None] | None = None
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()  # (feature, what) -> calls

    @classmethod
    def build(cls, options: OutputCapOptions, ctx: StageContext) -> OutputCapStage:
        return cls(options, ctx)

    # -- learned state -------------------------------------------------------------------------------------
    def store(self) -> AnswerLengths:
        if self.lengths is None:
            ledger = self.ctx.ledger
            self.lengths = AnswerLengths(Database.of_ledger(ledger, DDL) if ledger is not None else None)
        return self.lengths

    async def start(self) -> None:
        store = self.store()
        self._seen.update(await asyncio.to_thread(store.features))
        await self.sync()

    async def close(self) -> None:
        if self._sync_task is not None:
            await asyncio.gather(self._sync_task, return_exceptions=True)
        if self.lengths is not None:
            await self.sync()
            self.lengths.close()

    async def sync(self) -> None:
        """Write this replica's new answers and re-read every feature's latest lengths."""
        self._last_sync = self.ctx.clock()
        windows = {f: self.options.policy(f or None).window for f in self._seen}
        try:
            lengths = await asyncio.to_thread(self.store().sync, windows)
        except Exception:  # the shared table out of reach: keep the caps learned so far
            log.exception("output caps could not be synchronised")
            return
        for feature, values in lengths.items():
            self.caps[feature] = learned_cap(self.options.policy(feature or None), values)
            self.samples[feature] = len(values)

    async def _maybe_sync(self) -> None:
        if self.options.refresh_s == 0:
            await self.sync()
        elif self.ctx.clock() - self._last_sync >= self.options.refresh_s and (
                self._sync_task is None or self._sync_task.done()):
            self._last_sync = self.ctx.clock()
            self._sync_task = asyncio.create_task(self.sync())

    async def _learn(self, feature: str, resp: ChatResponse) -> None:
        """A complete answer's length counts; one cut by any cap does not (its length is not its own)."""
        if resp.stop_reason != "max_tokens":
            self._seen.add(feature)
            self.store().add(feature, self.ctx.clock(), resp.usage.output)
            if self.options.refresh_s == 0:  # learned at once (tests, a single replica that wants it)
                await self.sync()

    # -- the stage ------------------------------------------------------------------------------------------
    @staticmethod
    def eligible(req: ChatRequest) -> bool:
        """Text answers only: a tool call cut half-way cannot be continued, nor n > 1 choices; a Responses
        request keeps the upstream's own output items, which a joined answer would not match."""
        return not req.tools and req.n == 1 and req.inbound != "responses"

    async def handle(self, call: Call, next: Next) -> Reply:
        policy = self.options.policy(call.attribution.feature)
        if not policy.enabled:
            return await next(call)
        feature = call.attribution.feature or ""
        if policy.length_instruction:
            req = call.edit_request()
            req.system.append({"type": "text", "text": policy.length_instruction})
            call.decisions["length_instruction"] = True
        if not self.eligible(call.request):
            return await next(call)
        self._seen.add(feature)  # its answers are read back from the shared table from the next sync on
        await self._maybe_sync()
        capped = self._cap(call, policy, feature)
        reply = await next(call)
        if reply.stream is not None:
            reply.stream = self._watch(call, reply, reply.stream, next, capped, policy, feature)
            return reply
        resp = reply.response
        if resp is not None and capped is not None and self._cut_by_scrimp(resp, capped):
            rest = await self._go_on(call, reply, resp, capped, next, policy, stream=False)
            if rest is not None:
                ended = await collect(rest)
                self._paid_again(capped, ended)
                reply.response = join(resp, ended)
        if resp is not None and reply.billed:
            await self._learn(feature, reply.response or resp)
        self._decide(call, capped, feature)
        return reply

    def _cap(self, call: Call, policy: CapPolicy, feature: str) -> Capped | None:
        learned = self.caps.get(feature)
        client = call.request.max_tokens
        self.counts[(feature, "calls")] += 1
        if learned is None or not (client is None or (policy.lower_client_caps and client > learned)):
            return None
        call.edit_request().max_tokens = learned
        capped = Capped(learned, client)
        bound = f"{client} output tokens" if client is not None else "the model's output limit"
        call.save(self.name, f"no output cap: up to {bound} could be billed for this answer, {learned} tokens with "
                  "the cap (a bound; a complete answer is not shortened)",
                  priced=lambda without: self._price(capped, without))
        return capped

    @staticmethod
    def _cut_by_scrimp(resp: ChatResponse, capped: Capped) -> bool:
        """Stopped at scrimp's cap, below the client's own (an answer at the client's cap stays as it is)."""
        return resp.stop_reason == "max_tokens" and (capped.client_cap is None or resp.usage.output < capped.client_cap)

    async def _go_on(self, call: Call, reply: Reply, partial: ChatResponse, capped: Capped, next: Next,
                     policy: CapPolicy, *, stream: bool) -> Reply | None:
        """The continuation call (None when it is not made or fails: the client then gets the cut answer)."""
        capped.truncated = True
        if not policy.continue_truncated:
            return None
        remaining = capped.client_cap - partial.usage.output if capped.client_cap is not None else None
        req = continuation_request(call.request, partial, remaining)
        req.stream = stream
        attempt = call.fork(request=req, target_model=reply.served_model or call.target_model)
        try:
            rest = await next(attempt)
        except Exception as exc:  # noqa: BLE001 - the first answer stands, cut, as the provider gave it
            log.warning("continuation of %s failed: %s", call.request_id, exc)
            call.decisions["output_cap_error"] = str(exc)[:200]
            call.costs.extend(attempt.costs)
            return None
        call.costs.extend(attempt.costs)  # a billed retry of the continuation
        capped.continued = True
        return rest

    @staticmethod
    def _paid_again(capped: Capped, rest: ChatResponse) -> None:
        u = rest.usage
        capped.extra_input = Usage(input=u.input, cache_read=u.cache_read, cache_write_5m=u.cache_write_5m,
                                   cache_write_1h=u.cache_write_1h)

    def _decide(self, call: Call, capped: Capped | None, feature: str) -> None:
        if capped is None:
            return
        call.decisions["output_cap"] = capped.decision()
        self.counts[(feature, "capped")] += 1
        self.counts[(feature, "truncated")] += capped.truncated
        self.counts[(feature, "continued")] += capped.continued

    @staticmethod
    def _price(capped: Capped, without: Counterfactual) -> tuple[float, Counterfactual]:
        """The call without the cap: one call with the same answer, so what the continuation paid for its input
        again (0 when there was none) is this lever's (negative) saving."""
        if not capped.continued:
            return 0.0, without
        usage = without_continuation(without.usage, capped.extra_input)
        try:
            usd = (pricing.cost(without.model, without.provider, usage)
                   - pricing.cost(without.model, without.provider, without.usage))
        except pricing.UnknownPrice:
            usd = 0.0
        return usd, Counterfactual(usage, without.model, without.provider)

    async def _watch(self, call: Call, reply: Reply, stream: AsyncIterator[StreamEvent], next: Next,
                     capped: Capped | None, policy: CapPolicy, feature: str) -> AsyncIterator[StreamEvent]:
        """Pass the answer on as it comes; when it stops at scrimp's cap, go on with the continuation's events in
        the same block, and end with the joined answer. The last block_stop is held back until it is known whether
        the block goes on."""
        held: StreamEvent | None = None
        first: ChatResponse | None = None
        async for event in stream:
            if event.kind == "done":
                first = event.response
                break
            if held is not None:
                yield held
                held = None
            if event.kind == "block_stop":
                held = event
                continue
            yield event
        if first is None:  # ended without an answer (an upstream failure is raised, not this)
            if held is not None:
                yield held
            return
        final = first
        if capped is not None and self._cut_by_scrimp(first, capped):
            rest = await self._go_on(call, reply, first, capped, next, policy, stream=True)
            if rest is not None:
                held = None  # the block goes on: the continuation's own block_stop closes it
                at, base = last_text_index(first), len(first.content)
                reply.partial = lambda: join(first, rest.partial()) if rest.partial is not None else first
                ended: ChatResponse | None = None
                async for event in rest.stream if rest.stream is not None else replay(rest.response):
                    if event.kind == "done":
                        ended = event.response
                        break
                    if event.kind == "native":
                        continue
                    # the continuation's first block is the cut one; any further ones follow the first's blocks
                    yield dataclasses.replace(event, index=at if event.index == 0 else base + event.index - 1)
                if ended is None:
                    return
                self._paid_again(capped, ended)
                final = join(first, ended)
        if held is not None:
            yield held
        if reply.billed:
            await self._learn(feature, final)
        self._decide(call, capped, feature)
        yield StreamEvent("done", response=final)

    def metrics(self) -> list[Sample]:
        out = []
        for (feature, what), n in sorted(self.counts.items()):
            out.append(Sample(f"scrimp_output_cap_{what}_total", "counter",
                              f"Calls of the feature the output_cap stage saw ({what}).", n, {"feature": feature}))
        for feature, cap in sorted(self.caps.items()):
            if cap is not None:
                out.append(Sample("scrimp_output_cap_tokens", "gauge", "The feature's learned output cap.", cap,
                                  {"feature": feature}))
        return out
