"""The trim stage: send fewer input tokens without breaking the provider's prompt cache.

Per feature (options.py): retrieved chunks re-ranked and pruned, tool output shrunk and old outputs masked, long
histories cut to a summary + recent turns + the earlier turns the question needs. The levels that change a prefix
the provider may hold (where the summary ends, how many old outputs are masked) only move forward, in steps, and
only when the request costs less with the move than without it, cache reads and writes included (cache_cost.py).
Each part records what it saved as its own lever (`trim.chunks`, `trim.tool_output`, `trim.mask`,
`trim.history`): the tokens it removed at the input price of the model that answered, less the extra cache
write its move caused; the summary call is charged to `trim.history`.

List it after routing (it plans for the model that will answer) and before `prompt_cache` (which places its
breakpoints on the trimmed request).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from scrimp import pricing
from scrimp.canonical import Usage
from scrimp.pipeline import Call, Counterfactual, Next, Reply, collect
from scrimp.promptcache.profiles import Profiles
from scrimp.stage import Stage, StageContext
from scrimp.trim.cache_cost import NO_CACHE, CacheRates, rates_for
from scrimp.trim.history import message_tokens
from scrimp.trim.options import TrimOptions, TrimPolicy
from scrimp.trim.relevance import VectorCache
from scrimp.trim.summary import SummaryStore, prefix_digests, summary_request
from scrimp.trim.trimmer import Levels, Prepared, Trimmed, Trimmer

log = logging.getLogger("scrimp.trim")


@dataclass
class Sent:
    """What was last sent for a conversation: its levels, when, and how long the prompt was."""

    levels: Levels
    at: float
    tokens: int


def unit_input_price(model: str, provider: str | None) -> float:
    """USD per plain input token."""
    try:
        return pricing.cost(model, provider, Usage(input=1_000_000)) / 1e6
    except pricing.UnknownPrice:
        return 0.0


class TrimStage(Stage):
    name = "trim"
    Options = TrimOptions

    def __init__(self, options: TrimOptions, ctx: StageContext | None = None, *, embedder: Any = None) -> None:
        self.options = options
        self.ctx = ctx
        self.profiles = Profiles.load()
        self._embedder = embedder
        self._vectors: VectorCache | None = None
        self._trimmers: dict[int, Trimmer] = {}
        self.summaries = SummaryStore(options.max_conversations)
        self.sent: OrderedDict[bytes, Sent] = OrderedDict()

    @classmethod
    def build(cls, options: TrimOptions, ctx: StageContext) -> TrimStage:
        for where, policy in [("default", options.default), *options.features.items()]:
            model = policy.history.summary_model
            if model is not None and model not in ctx.models:
                raise ctx_error(f"{'features.' + where if where != 'default' else where}.history.summary_model",
                                model)
        return cls(options, ctx)

    async def start(self) -> None:
        if self._embedder is None and self.ctx is not None:
            self._embedder = self.ctx.embedder()
        if self._embedder is not None:
            self._vectors = VectorCache(self._embedder)

    def trimmer(self, policy: TrimPolicy) -> Trimmer:
        found = self._trimmers.get(id(policy))
        if found is None:
            found = self._trimmers[id(policy)] = Trimmer(policy, self._vectors)
        return found

    # -- the call ------------------------------------------------------------------------------------------------
    async def handle(self, call: Call, next: Next) -> Reply:
        policy = self.options.policy(call.attribution.feature)
        if not policy.enabled or not call.request.messages:
            return await next(call)
        trimmer = self.trimmer(policy)
        try:
            prepared = await asyncio.to_thread(trimmer.prepare, call.request)
        except Exception:  # a request the trimmer cannot read goes as the client sent it
            log.exception("trim: request left untrimmed")
            return await next(call)
        provider = self.ctx.provider_of(call.target_model) if self.ctx else None
        scope = f"{call.attribution.tenant}|{call.attribution.feature}|{call.request.system_text()}"
        digests = prefix_digests(scope, prepared.messages)
        # a conversation is known by its scope, first message, caller and model (its state is only a cost estimate)
        who = f"{call.attribution.user}|{call.target_model}".encode()
        conversation = hashlib.sha256(digests[min(1, len(prepared.messages))] + who).digest()
        levels, held_back, extra_write = self._choose(call, trimmer, prepared, digests, conversation, provider)
        summary = None
        if levels.checkpoint:
            try:
                summary = await self._summary(call, trimmer.policy, prepared, digests, levels.checkpoint)
            except Exception as exc:  # noqa: BLE001 - no summary, no history trim: the request goes as it was
                log.warning("trim: summary failed (%s); history left as sent", exc)
                call.decisions["trim_summary_failed"] = str(exc)[:200]
                levels = dataclasses.replace(levels, checkpoint=0)
        trimmed = await asyncio.to_thread(trimmer.build, prepared, levels, summary)
        self._remember(conversation, Sent(levels, self._now(), trimmed.tokens))
        if any(trimmed.removed.values()) or held_back:
            self._apply(call, trimmed, held_back, extra_write, prepared)
        return await next(call)

    def _now(self) -> float:
        return self.ctx.clock() if self.ctx is not None else 0.0

    def _choose(self, call: Call, trimmer: Trimmer, prepared: Prepared, digests: list[bytes], conversation: bytes,
                provider: str | None) -> tuple[Levels, dict[str, Any] | None, tuple[str, float]]:
        """The levels to send at: the ones wanted now unless staying where the conversation was is cheaper.
        Returns (levels, what was held back and why, (part charged, extra cache write in input-token units))."""
        want = prepared.wanted
        last = self.sent.get(conversation)
        cur = Levels()
        cached = 0
        if last is not None:
            cp = last.levels.checkpoint
            if cp > want.checkpoint or (cp and self.summaries.get(digests[cp]) is None):
                cp = 0  # the conversation changed under us, or its summary was forgotten
            cur = Levels(cp, min(last.levels.masked, want.masked))
            if self._now() - last.at < self.options.cache_ttl_s:
                cached = last.tokens
        if want == cur:
            return want, None, ("", 0.0)
        rates = rates_for(self.profiles, provider, call.target_model) if self.options.cache_aware else NO_CACHE
        base = trimmer.build(prepared, cur, self.summaries.get(digests[cur.checkpoint]) if cur.checkpoint else None,
                             excerpts=False)
        best, best_cost, best_cached = cur, rates.cost(base.tokens, cached), cached
        options = {Levels(want.checkpoint, cur.masked), Levels(cur.checkpoint, want.masked), want} - {cur}
        costs = {cur: best_cost}
        for levels in sorted(options, key=lambda lv: (lv.checkpoint, lv.masked)):
            summary = self.summaries.get(digests[levels.checkpoint]) if levels.checkpoint else None
            t = trimmer.build(prepared, levels, summary, excerpts=False)
            kept = min(cached, _common_prefix(base, t, prepared.fixed_tokens))
            cost = rates.cost(t.tokens, kept) + self._summary_cost(call, trimmer.policy, prepared, digests, levels,
                                                                  summary)
            costs[levels] = cost
            if cost < best_cost:
                best, best_cost, best_cached = levels, cost, kept
        held = None
        if best != want:
            held = {"wanted": dataclasses.asdict(want), "sent": dataclasses.asdict(best), "reason": "prompt cache",
                    "cost_wanted": round(costs.get(want, 0.0)), "cost_sent": round(best_cost)}
        part = "history" if best.checkpoint != cur.checkpoint else "mask"
        return best, held, (part, max(0.0, (cached - best_cached) * (rates.write - rates.read)))

    def _summary_cost(self, call: Call, policy: TrimPolicy, prepared: Prepared, digests: list[bytes],
                      levels: Levels, summary: str | None) -> float:
        """A summary still to be made, priced in the target model's input-token units."""
        if not levels.checkpoint or summary is not None or not policy.history.summary:
            return 0.0
        model = policy.history.summary_model or call.target_model
        start, _ = self._previous_summary(prepared, digests, levels.checkpoint, policy)
        tokens = sum(message_tokens(m) for m in prepared.messages[start:levels.checkpoint]) + 100
        usd = _price(model, self.ctx.provider_of(model) if self.ctx else None,
                     Usage(input=tokens, output=policy.history.summary_max_tokens))
        unit = unit_input_price(call.target_model, self.ctx.provider_of(call.target_model) if self.ctx else None)
        return usd / unit if unit > 0 else 0.0

    def _previous_summary(self, prepared: Prepared, digests: list[bytes], checkpoint: int,
                          policy: TrimPolicy) -> tuple[int, str | None]:
        from scrimp.trim.history import checkpoints

        for c in reversed(checkpoints(prepared.messages, checkpoint, policy.history.checkpoint_every)):
            found = self.summaries.get(digests[c])
            if found is not None:
                return c, found
        return 0, None

    async def _summary(self, call: Call, policy: TrimPolicy, prepared: Prepared, digests: list[bytes],
                       checkpoint: int) -> str | None:
        if not policy.history.summary:
            return None

        async def make() -> str:
            assert self.ctx is not None, "a summary needs the pipeline's upstream"
            start, previous = self._previous_summary(prepared, digests, checkpoint, policy)
            model = policy.history.summary_model or call.target_model
            req = summary_request(model, previous, prepared.messages[start:checkpoint],
                                  policy.history.summary_max_tokens)
            sub = Call(req, call.attribution, requested_model=model, target_model=model,
                       request_id=call.request_id + "-summary")
            sub.client_key = call.client_key
            reply = await self.ctx.upstream(sub)
            resp = await collect(reply)
            usd = _price(reply.served_model or model, reply.served_provider or None, resp.usage)
            usd += sum(c.usd for c in sub.costs)
            call.spend(usd, f"history summary of {checkpoint} messages by {reply.served_model or model}",
                       "trim.history", reply.served_model or model)
            call.decisions["trim_summary_made"] = checkpoint
            text = resp.text().strip()
            if not text:
                raise RuntimeError("the summary model answered nothing")
            return text

        return await self.summaries.once(digests[checkpoint], make)

    def _remember(self, conversation: bytes, sent: Sent) -> None:
        self.sent[conversation] = sent
        self.sent.move_to_end(conversation)
        while len(self.sent) > self.options.max_conversations:
            self.sent.popitem(last=False)

    def _apply(self, call: Call, trimmed: Trimmed, held_back: dict[str, Any] | None,
               extra_write: tuple[str, float], prepared: Prepared) -> None:
        req = call.edit_request()
        req.messages = trimmed.messages
        decision: dict[str, Any] = {k: v for k, v in trimmed.removed.items() if v}
        if trimmed.levels.checkpoint:
            decision["checkpoint"] = trimmed.levels.checkpoint
            decision["excerpts"] = len(trimmed.plan.excerpts)
        if trimmed.levels.masked:
            decision["masked"] = trimmed.levels.masked
        if held_back:
            decision["held_back"] = held_back
        call.decisions["trim"] = decision
        part_charged, extra_units = extra_write
        for part, tokens in trimmed.removed.items():
            if tokens > 0:
                extra = extra_units if part == part_charged else 0.0
                call.save(f"trim.{part}", "the same request untrimmed", priced=_removed_price(tokens, extra))


def _common_prefix(a: Trimmed, b: Trimmed, fixed: int) -> int:
    """Tokens at the start of two versions of a request that are the same (system, tools, equal messages)."""
    total = fixed
    for x, y, n in zip(a.messages, b.messages, a.message_tokens, strict=False):
        if x != y:
            break
        total += n
    return total


def _price(model: str, provider: str | None, usage: Usage) -> float:
    try:
        return pricing.cost(model, provider, usage)
    except pricing.UnknownPrice:
        return 0.0


def _removed_price(tokens: int, extra_write_units: float):
    """The removed tokens at the answering model's input price, less the extra cache write this trim caused."""

    def price(without: Counterfactual) -> tuple[float, Counterfactual]:
        unit = unit_input_price(without.model, without.provider)
        usage = dataclasses.replace(without.usage, input=without.usage.input + tokens)
        return (tokens - extra_write_units) * unit, Counterfactual(usage, without.model, without.provider)

    return price


def ctx_error(path: str, model: str):
    from scrimp.options import ConfigError

    return ConfigError(f"stages.trim.{path}: unknown model {model!r} (not in models:)")


__all__ = ["CacheRates", "TrimStage"]
