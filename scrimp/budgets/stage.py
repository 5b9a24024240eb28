"""The budgets stage: spend limits per tenant, key, feature and model that hold across replicas.

Before a call, its worst-case cost (input estimated from the request and priced at the target model, plus
`max_tokens` of output, or `default_max_tokens` when the request sets none) is *reserved* atomically against
every budget the call falls under; a budget whose hard limit it would pass refuses it (429 naming the budget and
when it resets). After the answer (whole, streamed, or a stream the client abandoned) the reservation is
*settled* to what the call really cost, priced from the answer's usage as the ledger prices it (an answer no
provider was paid for, a cache hit, costs nothing). Graded actions per budget, in the configured order:
`alert` (log, ledger event, /metrics), `downgrade` (route to a named cheaper model) and `block`.
Budget state is in Redis (one Lua script per step) or a SQLite file (one transaction per step); see
docs/budgets.md."""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from scrimp import pricing, webhooks
from scrimp.canonical import ChatResponse, Usage
from scrimp.formats.errors import APIError
from scrimp.metrics import Sample
from scrimp.options import ConfigError, Where
from scrimp.pipeline import Call, Next, Reply, StreamEvent, new_request_id, priced_at
from scrimp.shared_counters import (
    NANO,
    STORE_ERRORS,
    Counter,
    CounterStore,
    CountingStore,
    OnStoreError,
    store_failed,
    to_nano,
)
from scrimp.stage import Stage, StageContext
from scrimp.tokens import request_input_tokens

log = logging.getLogger("scrimp.budgets")

DIMENSIONS = ("tenant", "key", "feature", "model")


@dataclass
class BudgetAction:
    do: Literal["alert", "downgrade", "defer", "block"]
    at: float = 1.0  # share of the limit at which it applies (alert 0.8: at 80%)
    model: str | None = None  # downgrade: the cheaper model to route to
    window: str = "24h"  # defer: the batch lane's window ('1h', '24h', or 'flex')
    webhook: str | None = None  # alert: also POST the alert here (once per budget, scope and period, any replica)

    def check(self, where: Where) -> None:
        if self.webhook is not None and (self.do != "alert" or not self.webhook.startswith(("http://", "https://"))):
            raise where.key("webhook").error("an http(s) URL, on an alert")
        if self.do == "downgrade" and not self.model:
            raise where.key("model").error("a downgrade names the cheaper model to route to")
        if self.do != "downgrade" and self.model:
            raise where.key("model").error("only a downgrade takes a model")
        if self.do == "defer":
            from scrimp.batch.options import window_seconds

            if self.window != "flex" and window_seconds(self.window) is None:
                raise where.key("window").error("a window such as '1h' or '24h', or 'flex'")
        if self.at <= 0:
            raise where.key("at").error("a share of the limit above 0 (1.0 = the whole limit)")


@dataclass
class Budget:
    name: str
    limit_usd: float
    period: Literal["day", "month"] | None = "day"  # calendar periods, UTC
    window_s: float | None = None  # a rolling window instead of a calendar period
    # one counter per distinct value of these (e.g. [tenant]: every tenant its own limit); none: one counter
    per: list[str] = field(default_factory=list)
    # the calls it applies to (all when unset)
    tenant: str | None = None
    key: str | None = None  # a gateway key id
    feature: str | None = None
    model: str | None = None  # the model the call targets when it reaches this stage
    actions: list[BudgetAction] = field(default_factory=lambda: [BudgetAction("block", 1.0)])

    def check(self, where: Where) -> None:
        if self.limit_usd <= 0:
            raise where.key("limit_usd").error("a limit above 0")
        if self.window_s is not None and self.window_s <= 0:
            raise where.key("window_s").error("a window above 0 seconds")
        for i, d in enumerate(self.per):
            if d not in DIMENSIONS:
                raise where.key("per").item(i).error(f"one of {', '.join(DIMENSIONS)}")
        if ":" in self.name or not self.name:
            raise where.key("name").error("a non-empty name without ':'")


@dataclass
class ObservedOutput:
    """For a request without max_tokens, reserve its feature's longest answer seen (times `margin`) instead of
    `default_max_tokens`, once `min_answers` of the feature's answers are known: read from the ledger's last
    `lookback_days` at start, then from every answer this replica settles."""

    min_answers: int = 20
    margin: float = 1.2
    lookback_days: float = 7.0

    def check(self, where: Where) -> None:
        if self.min_answers < 1:
            raise where.key("min_answers").error("at least 1")
        if self.margin < 1:
            raise where.key("margin").error("1 or more (a share above the longest answer seen)")


@dataclass
class BudgetsOptions:
    budgets: list[Budget] = field(default_factory=list)
    redis_url: str | None = None  # shared state for replicas; else the SQLite file `path`
    prefix: str = "scrimp:budget:"  # Redis key prefix
    path: str = "scrimp-budgets.db"
    reservation_ttl_s: float = 600.0  # a reservation never settled (a crash) stops counting after this
    default_max_tokens: int = 4096  # output reserved for a request that sets no max_tokens
    observed_output: ObservedOutput | None = field(default_factory=ObservedOutput)  # null: always the default
    estimate_margin: float = 1.0  # multiplies the estimated input tokens (a real tokenizer may count more)
    key_budgets: bool = True  # enforce the budget stored with a gateway key (scrimp keys create --budget-usd)
    webhook_secret: str | None = None  # signs alert webhooks: x-scrimp-signature: sha256=<HMAC-SHA256 of the body>
    webhook_attempts: int = 5  # tries per alert webhook, with backoff from 1 s
    on_store_error: OnStoreError = "refuse"  # the state unreachable: refuse calls (503), or `allow` them unchecked

    def check(self, where: Where) -> None:
        names = [b.name for b in self.budgets]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise where.key("budgets").item(i).key("name").error(f"budget {name!r} is defined twice")
        if self.reservation_ttl_s <= 0:
            raise where.key("reservation_ttl_s").error("a time above 0 seconds")


def period_bounds(budget: Budget, now: float) -> tuple[str, float]:
    """The calendar period's id and when it resets (unix seconds), or for a rolling window ("w", the time by
    which everything spent so far has left the window)."""
    if budget.window_s:
        return "w", now + budget.window_s
    t = datetime.fromtimestamp(now, UTC)
    if budget.period == "month":
        nxt = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
        return t.strftime("%Y-%m"), nxt.timestamp()
    day_start = calendar.timegm((t.year, t.month, t.day, 0, 0, 0))
    return t.strftime("%Y-%m-%d"), day_start + 86400.0


def key_budget(key_id: str, usd: float, period: str | None) -> Budget:
    """The budget stored with a gateway key (scrimp keys create --budget-usd X --period day|month)."""
    return Budget(name=f"key-{key_id}", limit_usd=usd, period="month" if period == "month" else "day")


@dataclass
class Scoped:
    """A budget as it applies to one call: its counter and the scope it counts."""

    budget: Budget
    counter: Counter
    scope: str
    resets_at: float

    def label(self) -> str:
        return self.budget.name + (f" ({self.scope})" if self.scope else "")


class BudgetsStage(CountingStore, Stage):
    name = "budgets"
    Options = BudgetsOptions

    def __init__(self, options: BudgetsOptions, ctx: StageContext) -> None:
        self.options = options
        self.ctx = ctx
        self.alerts: dict[str, int] = {}
        self.downgrades: dict[str, int] = {}
        self.blocks: dict[str, int] = {}
        self.deferrals: dict[str, int] = {}
        self.longest: dict[str, tuple[int, int]] = {}  # feature -> (answers seen, longest answer's output tokens)
        self.seen_keys: dict[str, tuple[float, str | None]] = {}  # key id -> its budget, from calls seen here
        self._tasks: set[asyncio.Task[None]] = set()  # alert webhooks being delivered
        self.unchecked = 0  # calls let through unchecked while the state was unreachable (on_store_error: allow)
        self.used: dict[tuple[str, str], float] = {}  # (budget, scope) -> share of its limit last seen
        self._alerted: set[tuple[str, str, str, float]] = set()  # (budget, scope, period, at): once per period

    @classmethod
    def build(cls, options: BudgetsOptions, ctx: StageContext) -> BudgetsStage:
        for i, b in enumerate(options.budgets):
            for j, a in enumerate(b.actions):
                if a.model is not None and a.model not in ctx.models:
                    raise ConfigError(f"stages.budgets.budgets[{i}].actions[{j}].model: unknown model {a.model!r}")
        return cls(options, ctx)

    async def start(self) -> None:
        self.open_store()
        if self.options.observed_output is not None and self.ctx.ledger is not None:
            try:
                self.longest.update(await asyncio.to_thread(self._read_longest, self.options.observed_output))
            except Exception:  # a ledger without that history only means the default is reserved
                log.warning("could not read answer lengths from the ledger", exc_info=True)

    def _read_longest(self, observed: ObservedOutput) -> dict[str, tuple[int, int]]:
        since = self.ctx.clock() - observed.lookback_days * 86400
        rows = self.ctx.ledger.query(  # type: ignore[union-attr]
            "SELECT feature, COUNT(*), MAX(output_tokens) FROM calls WHERE ts >= ? AND status = 'ok' "
            "AND feature IS NOT NULL AND output_tokens > 0 GROUP BY feature", (since,))
        return {f: (int(n), int(m)) for f, n, m in rows}

    async def close(self) -> None:
        if self._tasks:  # a webhook still retrying gets a moment, not the whole shutdown
            await asyncio.wait(self._tasks, timeout=5)
        await self.close_store()

    # -- which budgets a call falls under ---------------------------------------------------------------------
    def budgets_for(self, call: Call) -> list[Budget]:
        out = []
        values = self._values(call)
        for b in self.options.budgets:
            if any(getattr(b, d) is not None and getattr(b, d) != values[d] for d in DIMENSIONS):
                continue
            if any(values[d] is None for d in b.per):
                continue  # counted per key, and this call has none
            out.append(b)
        key = call.key
        if self.options.key_budgets and key is not None and key.budget_usd:
            self.seen_keys[key.id] = (key.budget_usd, key.budget_period)
            out.append(key_budget(key.id, key.budget_usd, key.budget_period))
        return out

    @staticmethod
    def _values(call: Call) -> dict[str, str | None]:
        return {"tenant": call.attribution.tenant, "key": call.key.id if call.key is not None else None,
                "feature": call.attribution.feature, "model": call.target_model}

    def scoped(self, call: Call, budgets: list[Budget], now: float) -> list[Scoped]:
        values = self._values(call)
        out = []
        for b in budgets:
            scope = ",".join(f"{d}={values[d]}" for d in b.per)
            period, resets_at = period_bounds(b, now)
            ttl = int(b.window_s + self.options.reservation_ttl_s) + 60 if b.window_s else (
                40 * 86400 if b.period == "month" else 2 * 86400)
            hard = [a.at for a in b.actions if a.do == "block"]
            limit = to_nano(b.limit_usd * min(hard)) if hard else None
            out.append(Scoped(b, Counter(f"{b.name}:{scope}:{period}", limit, b.window_s, ttl), scope, resets_at))
        return out

    # -- costs --------------------------------------------------------------------------------------------------
    def worst_case(self, call: Call, model: str) -> float:
        req = call.request
        inp = int(request_input_tokens(call.request) * self.options.estimate_margin + 0.999)
        out = (req.max_tokens or self.output_guess(call.attribution.feature)) * max(1, req.n)
        try:
            return pricing.cost(model, self.ctx.provider_of(model), Usage(input=inp, output=out))
        except pricing.UnknownPrice:
            log.warning("no price for %s: its calls reserve nothing against budgets", model)
            return 0.0

    def output_guess(self, feature: str | None) -> int:
        """Output tokens to reserve for a request without max_tokens."""
        observed = self.options.observed_output
        seen, longest = self.longest.get(feature or "", (0, 0))
        if observed is None or feature is None or seen < observed.min_answers:
            return self.options.default_max_tokens
        return min(self.options.default_max_tokens, math.ceil(longest * observed.margin))

    def observe(self, feature: str | None, resp: ChatResponse | None, n: int) -> None:
        if feature is None or resp is None or resp.usage.output <= 0:
            return
        seen, longest = self.longest.get(feature, (0, 0))
        self.longest[feature] = (seen + 1, max(longest, math.ceil(resp.usage.output / max(1, n))))

    def real_cost(self, resp: ChatResponse | None, served: str, provider: str, billed: bool) -> float:
        if not billed or resp is None or not served:
            return 0.0
        try:
            return pricing.cost(served, provider or None, resp.usage)
        except pricing.UnknownPrice:
            return 0.0

    # -- the stage ---------------------------------------------------------------------------------------------
    async def handle(self, call: Call, next: Next) -> Reply:
        budgets = self.budgets_for(call)
        if not budgets:
            return await next(call)
        store = self.open_store()
        now = self.ctx.clock()
        scoped = self.scoped(call, budgets, now)
        rid = new_request_id()
        counters = [s.counter for s in scoped]
        try:
            if any(a.do in ("downgrade", "defer") for s in scoped for a in s.budget.actions):
                await self._soft_actions(call, scoped, store, now)
            worst = self.worst_case(call, call.target_model)
            amount = to_nano(worst)
            res = await store.reserve(counters, rid, amount, now, self._reservation_ttl(call))
        except STORE_ERRORS as exc:
            store_failed(exc, "budget state", self.options.on_store_error)
            self.unchecked += 1
            call.decisions["budget_unchecked"] = type(exc).__name__
            return await next(call)
        if not res.ok:
            assert res.refused is not None
            self._block(call, scoped[res.refused], res.used[res.refused], worst, now)
        call.decisions["budget_reserved_usd"] = worst
        for s, (spent, reserved) in zip(scoped, res.used, strict=True):
            self._alert(call, s, spent + reserved + amount)
        first_cost = len(call.costs)
        settled = False

        async def settle(resp: ChatResponse | None, served: str, provider: str, billed: bool) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            if billed:
                self.observe(call.attribution.feature, resp, call.request.n)
            # a lever that recorded the call itself priced it (the batch lane: at the batch rate)
            answer = call.cost_usd if call.recorded and call.cost_usd is not None else self.real_cost(
                resp, served, provider, billed)
            usd = answer + sum(c.usd for c in call.costs[first_cost:])
            try:
                await store.settle(counters, rid, to_nano(usd), self.ctx.clock())
            except Exception:  # the reservation expires on its own; the call's answer must not be lost
                log.exception("could not settle budget reservation %s", rid)

        try:
            reply = await next(call)
        except BaseException:
            paid = call.answer
            if paid is not None:
                await settle(paid.response, paid.served_model, paid.served_provider, paid.billed)
            elif call.decisions.get("batch") == "deferred" and call.cost_usd is None:
                # the client stopped waiting, but its batch line goes on and will be billed: count the worst case
                # (never less than the line will cost) rather than nothing
                call.cost_usd, call.recorded = worst, True
                await settle(None, "", "", False)
            else:
                await settle(None, "", "", False)
            raise
        if reply.stream is None:
            await settle(reply.response, reply.served_model, reply.served_provider, reply.billed)
            return reply
        reply.stream = self._watch(reply, reply.stream, settle)
        return reply

    async def _watch(self, reply: Reply, stream: AsyncIterator[StreamEvent], settle: Any) -> AsyncIterator[StreamEvent]:
        try:
            async for event in stream:
                if event.kind == "done":
                    await settle(event.response, reply.served_model, reply.served_provider, reply.billed)
                yield event
        finally:
            # abandoned or failed: what was received so far (the ledger charges the same)
            await settle(reply.partial() if reply.partial else None, reply.served_model, reply.served_provider,
                         reply.billed)

    def _reservation_ttl(self, call: Call) -> float:
        """A call known to be deferred (x-scrimp-defer, or this stage's defer action) may wait its whole window
        for its batch line: its reservation lasts that long too, so the counter never forgets it meanwhile."""
        window = call.hints.get("x-scrimp-defer") or (call.decisions.get("budget_defer") or {}).get("window")
        if not window or window == "flex":
            return self.options.reservation_ttl_s
        from scrimp.batch.options import window_seconds

        return self.options.reservation_ttl_s + (window_seconds(window.strip().lower()) or 0.0)

    async def _soft_actions(self, call: Call, scoped: list[Scoped], store: Any, now: float) -> None:
        """Downgrades and deferrals whose share is reached (they read the counters; they do not lock)."""
        used = await store.read([s.counter for s in scoped], now)
        for s, (spent, reserved) in zip(scoped, used, strict=True):
            share = (spent + reserved) / (s.budget.limit_usd * NANO)
            for a in s.budget.actions:
                if a.do == "defer" and share >= a.at and "budget_defer" not in call.decisions:
                    from scrimp.batch.stage import defer_call  # the batch lane's entry point for other levers

                    defer_call(call, a.window)
                    call.decisions["budget_defer"] = {"budget": s.budget.name, "window": a.window}
                    self.deferrals[s.budget.name] = self.deferrals.get(s.budget.name, 0) + 1
                    self._event(call, "budget_defer", s, share, {"window": a.window})
                if a.do == "downgrade" and share >= a.at and a.model and call.target_model != a.model:
                    log.info("budget %s at %.0f%%: %s downgraded from %s to %s", s.label(), share * 100,
                             call.request_id, call.target_model, a.model)
                    call.decisions["budget_downgrade"] = {"budget": s.budget.name, "from": call.target_model,
                                                          "to": a.model}
                    call.save(self.name, f"the same usage at {call.target_model}, the model before the downgrade",
                              priced=priced_at(call.target_model, self.ctx.provider_of(call.target_model)))
                    call.target_model = a.model
                    self.downgrades[s.budget.name] = self.downgrades.get(s.budget.name, 0) + 1
                    self._event(call, "budget_downgrade", s, share, {"to": a.model})

    def _alert(self, call: Call, s: Scoped, used_nano: int) -> None:
        share = used_nano / (s.budget.limit_usd * NANO)
        self.used[(s.budget.name, s.scope)] = share
        for a in s.budget.actions:
            if a.do != "alert" or share < a.at:
                continue
            period = s.counter.key
            if s.budget.window_s:  # a rolling window has no calendar period: alert at most once per window length
                period += f"@{int(self.ctx.clock() // s.budget.window_s)}"
            once = (s.budget.name, s.scope, period, a.at)
            if once in self._alerted:
                continue
            self._alerted.add(once)
            self.alerts[s.budget.name] = self.alerts.get(s.budget.name, 0) + 1
            log.warning("budget %s at %.0f%% of $%g (alert at %.0f%%)", s.label(), share * 100,
                        s.budget.limit_usd, a.at * 100)
            self._event(call, "budget_alert", s, share, {"at": a.at})
            if a.webhook:
                payload = {"event": "budget_alert", "budget": s.budget.name, "scope": s.scope, "at": a.at,
                           "share": round(share, 4), "limit_usd": s.budget.limit_usd,
                           "period": s.counter.key.rsplit(":", 1)[1], "tenant": call.attribution.tenant,
                           "feature": call.attribution.feature, "request_id": call.request_id, "ts": time.time()}
                task = asyncio.create_task(self._post_alert(f"{period}:{a.at}", s.counter.key_ttl_s,
                                                            a.webhook, payload))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _post_alert(self, once: str, ttl_s: float, url: str, payload: dict[str, Any]) -> None:
        store = self.open_store()
        try:
            if not await store.claim("alert:" + once, ttl_s):
                return  # another replica (or an earlier run) sent this one
        except STORE_ERRORS:
            log.warning("could not claim alert %s; sending it from here", once)
        await webhooks.deliver(url, payload, self.options.webhook_secret, attempts=self.options.webhook_attempts)

    def _block(self, call: Call, s: Scoped, used: tuple[int, int], worst: float, now: float) -> None:
        spent, reserved = used[0] / NANO, used[1] / NANO
        self.blocks[s.budget.name] = self.blocks.get(s.budget.name, 0) + 1
        resets = datetime.fromtimestamp(s.resets_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        when = (f"spend older than {s.budget.window_s:g} s leaves the window; all of it by {resets}"
                if s.budget.window_s else f"it resets at {resets}")
        share = (used[0] + used[1]) / (s.budget.limit_usd * NANO)
        self._event(call, "budget_block", s, share, {"reserve_usd": worst})
        call.decisions["budget_blocked"] = s.budget.name
        raise APIError(
            429, f"Budget '{s.label()}' exhausted: ${spent:.6f} spent and ${reserved:.6f} reserved of "
                 f"${s.budget.limit_usd:g}; this request could cost up to ${worst:.6f}. {when[0].upper()}{when[1:]}.",
            code="budget_exceeded", headers={"retry-after": str(max(1, int(s.resets_at - now + 0.999)))})

    def _event(self, call: Call, kind: str, s: Scoped, share: float, extra: dict[str, Any]) -> None:
        ledger = self.ctx.ledger
        if ledger is None:
            return
        detail = {"budget": s.budget.name, "scope": s.scope, "limit_usd": s.budget.limit_usd,
                  "share": round(share, 4), "request_id": call.request_id, **extra}
        ledger.write({"ts": time.time(), "kind": kind, "route": None, "tenant": call.attribution.tenant,
                      "feature": call.attribution.feature, "detail": orjson.dumps(detail).decode()}, table="events")

    def metrics(self) -> list[Sample]:
        out = []
        for kind, counts, what in (("alerts", self.alerts, "Budget alerts fired (once per budget, scope, period)."),
                                   ("downgrades", self.downgrades, "Calls downgraded to a cheaper model by a budget."),
                                   ("deferrals", self.deferrals, "Calls handed to the batch lane by a budget."),
                                   ("blocks", self.blocks, "Calls refused (429) by a budget.")):
            out += [Sample(f"scrimp_budget_{kind}_total", "counter", what, n, {"budget": b})
                    for b, n in sorted(counts.items())]
        out.append(Sample("scrimp_budget_unchecked_total", "counter",
                          "Calls let through unchecked while the budget state was unreachable.", self.unchecked))
        out += [Sample("scrimp_budget_used_share", "gauge", "Spent + reserved over the limit, as last seen here.",
                       v, {"budget": b, "scope": sc}) for (b, sc), v in sorted(self.used.items())]
        return out

    # -- visibility ------------------------------------------------------------------------------------------------
    def http_routes(self) -> list[Any]:
        from starlette.routing import Route

        return [Route("/v1/scrimp/budgets", self._status_endpoint, methods=["GET"])]  # admin with auth:

    async def _status_endpoint(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        keys = dict(self.seen_keys)
        if self.options.key_budgets and self.ctx.ledger is not None:
            keys.update(await asyncio.to_thread(stored_key_budgets, self.ctx.ledger))
        return JSONResponse({"budgets": await self._status(self.open_store(), self.ctx.clock(), keys)})

    async def status(self, now: float | None = None,
                     keys: dict[str, tuple[float, str | None]] | None = None) -> list[dict[str, Any]]:
        """Each configured budget's counters present in the store, and the budget of each key in `keys` (id ->
        (usd, period)): spent, reserved, remaining, reset. Opens a store of its own (callable from any event
        loop: the CLI, a test)."""
        store = self.new_store()
        try:
            return await self._status(store, self.ctx.clock() if now is None else now, keys or {})
        finally:
            await store.close()

    async def _status(self, store: CounterStore, now: float,
                      keys: dict[str, tuple[float, str | None]]) -> list[dict[str, Any]]:
        present = await store.scan()
        budgets = list(self.options.budgets)
        if self.options.key_budgets:
            budgets += [key_budget(kid, usd, period) for kid, (usd, period) in sorted(keys.items())]
        out = []
        for b in budgets:
            period, resets_at = period_bounds(b, now)
            mine = [k for k in present if k.startswith(b.name + ":") and k.endswith(":" + period)]
            if not b.per and not mine:
                mine = [f"{b.name}::{period}"]
            scoped = [Counter(k, None, b.window_s, 0) for k in mine]
            for c, (spent, reserved) in zip(scoped, await store.read(scoped, now), strict=True):
                scope = c.key[len(b.name) + 1:-(len(period) + 1)]
                out.append({"budget": b.name, "scope": scope, "period": "window" if b.window_s else b.period,
                            "limit_usd": b.limit_usd, "spent_usd": spent / NANO, "reserved_usd": reserved / NANO,
                            "remaining_usd": max(0.0, b.limit_usd - (spent + reserved) / NANO),
                            "resets_at": datetime.fromtimestamp(resets_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
        return out


def stored_key_budgets(ledger: Any) -> dict[str, tuple[float, str | None]]:
    """Key id -> (budget, period) of every live key with a budget in the ledger's database (none for an
    in-memory ledger)."""
    from scrimp.auth.keys import KeyStore

    store = KeyStore.of_ledger(ledger)
    if store is None:
        return {}
    try:
        return {k.id: (k.budget_usd, k.budget_period) for k in store.list() if k.budget_usd and not k.revoked}
    finally:
        store.close()
