"""The router stage: per route (a feature, or `default`), choose the model that answers.

Policies: `fixed` (one model), `rules` (rules.py), `learned` (a trained router file: p(cheap is good
enough) against its calibrated threshold) and `cascade` (cheap first; escalate to the strong model when a
check fails, both costs in the ledger). A route with `cheap` and `strong` models can also sample shadow
evaluations (shadow.py) and run a drift guard (drift.py) that sends it back to the strong model when the
cheap model's measured quality falls below target. Parameters a chosen model refuses are dropped by the
upstream (`models[].rejects`, `max_tokens_field`).

Place it after the caches (a cache hit needs no model at all) and before prompt_cache (which plans for the
model actually called)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HttpRoute

from scrimp import pricing
from scrimp.canonical import ChatResponse
from scrimp.formats import responses_upstream
from scrimp.metrics import Sample
from scrimp.options import ConfigError, Where
from scrimp.pipeline import Call, Next, Reply, StreamEvent, priced_at, replay
from scrimp.router import rules as rules_mod
from scrimp.router.checks import CHECKS, DEFAULT_CHECKS, first_failure
from scrimp.router.drift import DriftGuard
from scrimp.router.shadow import ShadowPolicy, ShadowRunner
from scrimp.stage import Stage, StageContext

log = logging.getLogger("scrimp.router")
POLICIES = ("fixed", "rules", "learned", "cascade")


class RouteConfigError(ValueError):
    pass


@dataclasses.dataclass
class RouteSpec:
    name: str
    policy: str
    model: str | None = None  # fixed
    rules: list[rules_mod.Rule] = dataclasses.field(default_factory=list)
    default: str | None = None  # rules: when none matches (None: the requested model)
    cheap: str | None = None
    strong: str | None = None
    router: Any = None  # learned: a scrimp.router.model.Router
    threshold: float | None = None  # learned: overrides the router file's calibrated threshold
    checks: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_CHECKS))
    verifier: dict[str, Any] = dataclasses.field(default_factory=dict)
    only_models: list[str] = dataclasses.field(default_factory=list)  # route only requests for these models
    shadow: ShadowRunner | None = None
    drift: DriftGuard | None = None


@dataclasses.dataclass
class VerifierOptions:
    pattern: str | None = None  # a regular expression the answer must match (case-insensitive)
    min_chars: int = 0


@dataclasses.dataclass
class DriftOptions:
    target: float = 0.95  # the cheap model's quality target (mean shadow score)
    confidence: float = 0.95
    min_samples: int = 30
    window: int = 200

    def check(self, where: Where) -> None:
        if not 0 < self.target <= 1:
            raise where.key("target").error(f"must be in (0, 1], got {self.target}")
        if not 0.5 <= self.confidence < 1:
            raise where.key("confidence").error(f"must be in [0.5, 1), got {self.confidence}")
        if self.min_samples < 1 or self.window < self.min_samples:
            raise where.key("window").error("window must be at least min_samples, and min_samples at least 1")


@dataclasses.dataclass
class RouteOptions:
    policy: Literal["fixed", "rules", "learned", "cascade"]
    model: str | None = None  # fixed
    rules: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # rules: [{if: {...}, model}]
    default: str | None = None  # rules: when none matches (unset: the requested model)
    cheap: str | None = None
    strong: str | None = None
    router: str | None = None  # learned: a router file (scrimp router train)
    threshold: float | None = None  # learned: overrides the router file's calibrated threshold
    checks: list[str] | None = None  # cascade (default: DEFAULT_CHECKS)
    verifier: VerifierOptions = dataclasses.field(default_factory=VerifierOptions)
    only_models: list[str] = dataclasses.field(default_factory=list)  # route only requests for these models
    shadow: ShadowPolicy | None = None
    drift: DriftOptions | None = None

    def check(self, where: Where) -> None:
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise where.key("threshold").error(f"must be between 0 and 1, got {self.threshold}")
        bad = [c for c in self.checks or [] if c not in CHECKS]
        if bad:
            raise where.key("checks").error(f"unknown check(s) {bad} (known: {', '.join(sorted(CHECKS))})")


def _parse_route(name: str, raw: RouteOptions, models: set[str]) -> RouteSpec:
    """The route's models, rules and router file checked against the configuration (types were checked when
    the config was read)."""
    where = f"stages.router.routes.{name}"
    for key in ("model", "default", "cheap", "strong"):
        value = getattr(raw, key)
        if value is not None and value not in models:
            raise RouteConfigError(f"{where}.{key}: unknown model {value!r}")
    for i, model in enumerate(raw.only_models):
        if model not in models:
            raise RouteConfigError(f"{where}.only_models[{i}]: unknown model {model!r}")
    spec = RouteSpec(name, raw.policy, model=raw.model, default=raw.default, cheap=raw.cheap, strong=raw.strong,
                     threshold=raw.threshold, verifier=dataclasses.asdict(raw.verifier),
                     only_models=list(raw.only_models))
    if raw.checks is not None:
        spec.checks = list(raw.checks)
    if raw.policy == "fixed" and not spec.model:
        raise RouteConfigError(f"{where}: the fixed policy needs 'model'")
    if raw.policy == "rules":
        if not raw.rules:
            raise RouteConfigError(f"{where}.rules: expected a non-empty list")
        try:
            spec.rules = [rules_mod.Rule.parse(r, f"{where}.rules[{i}]", models) for i, r in enumerate(raw.rules)]
        except rules_mod.RuleError as exc:
            raise RouteConfigError(str(exc)) from exc
    if raw.policy in ("learned", "cascade") and not (spec.cheap and spec.strong):
        raise RouteConfigError(f"{where}: the {raw.policy} policy needs 'cheap' and 'strong'")
    if raw.policy == "learned":
        if not raw.router:
            raise RouteConfigError(f"{where}.router: the learned policy needs a router file (scrimp router train)")
        spec.router = load_router(raw.router, where)
        if spec.threshold is None and getattr(spec.router, "threshold", None) is None:
            raise RouteConfigError(f"{where}: router {raw.router} is not calibrated "
                                   "(scrimp router calibrate) and no threshold is set")
    if (raw.shadow is not None or raw.drift is not None) and not (spec.cheap and spec.strong):
        raise RouteConfigError(f"{where}: shadow and drift need the route's 'cheap' and 'strong' models")
    if raw.shadow is not None and raw.shadow.scorer == "judge" and raw.shadow.judge_model not in models:
        raise RouteConfigError(f"{where}.shadow.judge_model: the judge scorer needs a configured judge model")
    return spec


def load_router(path: str, where: str) -> Any:
    from scrimp.router.model import Router

    try:
        return Router.load(path)
    except (OSError, ValueError, KeyError) as exc:
        raise RouteConfigError(f"{where}.router: cannot load {path}: {exc}") from exc


@dataclasses.dataclass
class RouterOptions:
    routes: dict[str, RouteOptions] = dataclasses.field(default_factory=dict)  # a feature, or "default"

    def check(self, where: Where) -> None:
        if not self.routes:
            raise where.key("routes").error("expected a mapping of route name (a feature, or 'default') to its "
                                            "policy")


class RouterStage(Stage):
    name = "router"
    Options = RouterOptions

    def __init__(self, routes: dict[str, RouteSpec], ctx: StageContext | None = None,
                 providers: dict[str, str] | None = None) -> None:
        self.routes = routes
        self.ctx = ctx  # its ledger gets shadow results and events
        self.providers = providers or {}
        self.events: list[dict[str, Any]] = []  # recent events, also served at /v1/scrimp/router/status
        self.routed: collections.Counter[tuple[str, str]] = collections.Counter()  # (route, model) -> calls
        self.trips: collections.Counter[str] = collections.Counter()  # route -> drift-guard trips

    @classmethod
    def build(cls, options: RouterOptions, ctx: StageContext) -> RouterStage:
        return from_options(options, ctx)

    # -- choosing ------------------------------------------------------------------------------------
    def route_for(self, call: Call) -> RouteSpec | None:
        route = self.routes.get(call.attribution.feature or "") or self.routes.get("default")
        if route is None or (route.only_models and call.requested_model not in route.only_models):
            return None
        return route

    async def decide(self, route: RouteSpec, call: Call) -> tuple[str, dict[str, Any]]:
        """(model, decision details) for non-cascade policies."""
        if route.drift is not None and route.drift.tripped:
            return route.strong or call.requested_model, {"reason": "drift_guard"}
        if route.policy == "fixed":
            return route.model or call.requested_model, {}
        if route.policy == "rules":
            model, index = rules_mod.choose(route.rules, call, route.default or call.requested_model)
            return model, {"rule": index}
        prompt = call.request.final_user_text()
        featurizer = route.router.featurizer
        memo_key = (featurizer.embedder_key(), featurizer.embedded_text(prompt))
        known = call.embeddings.get(memo_key)  # the semantic cache may have embedded this question already

        def score() -> tuple[Any, float]:
            vector = known if known is not None else featurizer.embed([prompt])[0]
            return vector, float(route.router.p_cheap_ok([prompt], vector[None, :])[0])

        call.embeddings[memo_key], p = await asyncio.to_thread(score)
        threshold = route.threshold if route.threshold is not None else route.router.threshold
        return (route.cheap if p >= threshold else route.strong), {"p_cheap_ok": round(p, 4)}

    async def handle(self, call: Call, next: Next) -> Reply:
        route = self.route_for(call)
        if route is None:
            return await next(call)
        if route.policy == "cascade" and not (route.drift is not None and route.drift.tripped):
            cannot = self._cannot_serve(route.cheap or "", call) or self._cannot_serve(route.strong or "", call)
            if cannot:
                call.decisions["route_skipped"] = cannot
                return await next(call)
            return await self._cascade(route, call, next)
        model, details = await self.decide(route, call)
        cannot = self._cannot_serve(model, call)
        if cannot:  # the route's choice could not answer this request: the model asked for does
            call.decisions["route_skipped"] = cannot
            return await next(call)
        self._mark(call, route, model, details)
        asked = call.request  # as the client sent it: what a shadow call asks the other model
        reply = await next(call)
        return self._after(route, call, reply, asked)

    def _cannot_serve(self, model: str, call: Call) -> str | None:
        """Why `model` could not answer this request, which the requested model can: Anthropic models return one
        choice and have no OpenAI hosted tools."""
        if model == call.requested_model or self.providers.get(model) != "anthropic":
            return None
        if call.request.n > 1:
            return f"{model} returns one choice (n={call.request.n})"
        if responses_upstream.refusal(call.request) is not None:
            return f"{model} cannot run the request's OpenAI hosted tools"
        return None

    def _mark(self, call: Call, route: RouteSpec, model: str, details: dict[str, Any]) -> None:
        call.target_model = model
        self.routed[(route.name, model)] += 1
        tier = "cheap" if model == route.cheap else "strong" if model == route.strong else model
        call.decisions.update(route=f"{route.name}:{tier}", routed_model=model, **details)
        if model != call.requested_model:
            call.save(self.name, f"the same usage priced at the requested model ({call.requested_model})",
                      priced=priced_at(call.requested_model, self.providers.get(call.requested_model)))

    # -- cascade -----------------------------------------------------------------------------------------
    async def _cascade(self, route: RouteSpec, call: Call, next: Next) -> Reply:
        assert route.cheap and route.strong
        asked = call.request
        first = call.fork(request=dataclasses.replace(call.request, stream=False), target_model=route.cheap)
        failure: str | None
        try:
            attempt = await next(first)
            resp = attempt.response
            failure = "no_response" if resp is None else first_failure(route.checks, call.request, resp,
                                                                       route.verifier)
        except Exception as exc:  # noqa: BLE001 - the cheap model failing is a reason to escalate
            attempt, resp, failure = None, None, f"error: {str(exc)[:80]}"
        if failure is None and attempt is not None and resp is not None:
            stream = call.request.stream
            call.adopt(first)
            self._mark(call, route, route.cheap, {"cascade": "accepted"})
            if stream:  # every choice, and still recorded (as billed) if the client hangs up half-way
                attempt = dataclasses.replace(attempt, response=None, stream=replay(resp), partial=lambda: resp)
            return self._after(route, call, attempt, asked)
        # escalate: the cheap attempt's cost is part of this call's cost
        if resp is not None and attempt is not None:
            try:
                cost = pricing.cost(attempt.served_model, attempt.served_provider or None, resp.usage)
            except pricing.UnknownPrice:
                cost = 0.0
            call.spend(cost, f"cascade: rejected answer of {attempt.served_model} ({failure})", self.name,
                       attempt.served_model)
        call.costs.extend(first.costs)  # spend of the rejected attempt's own (a billed retry)
        self._mark(call, route, route.strong, {"cascade": "escalated", "escalation": failure})
        reply = await next(call)
        return self._after(route, call, reply, asked)

    # -- shadow and drift ------------------------------------------------------------------------------------
    def _after(self, route: RouteSpec, call: Call, reply: Reply, asked: Any) -> Reply:
        if route.shadow is None or not reply.billed:
            return reply
        served = call.target_model
        if served not in (route.cheap, route.strong):
            return reply
        other = route.strong if served == route.cheap else route.cheap
        assert route.cheap and route.strong and other

        def start(resp: ChatResponse) -> None:
            original = call.fork(request=asked)  # the shadow sees the request as the client sent it
            if route.shadow is not None and route.shadow.maybe_run(original, served, other, route.cheap or "",
                                                                   route.strong or "", resp):
                call.decisions["shadow"] = other

        if reply.stream is None:
            if reply.response is not None:
                start(reply.response)
            return reply
        reply.stream = _on_done(reply.stream, start)
        return reply

    def on_score(self, route: RouteSpec, score: float, served: str) -> None:
        # the guard watches the cheap model on the traffic the route gives it
        if route.drift is None or served != "cheap":
            return
        if route.drift.add(score):
            status = route.drift.status()
            detail = {"mean": status.mean, "upper": status.upper, "target": status.target,
                      "samples": status.samples, "now": route.strong}
            log.warning("drift guard: route %s sends traffic back to %s (cheap-model quality %.3f, upper bound "
                        "%.3f < target %.3f over %d shadow samples)", route.name, route.strong, status.mean,
                        status.upper, status.target, status.samples)
            self.trips[route.name] += 1
            self.record_event("drift_guard_tripped", route.name, detail)

    def record_event(self, kind: str, route: str, detail: dict[str, Any]) -> None:
        event = {"ts": time.time(), "kind": kind, "route": route, "detail": orjson.dumps(detail).decode()}
        self.events.append(event)
        del self.events[:-100]
        self._record("events", event)

    def _record(self, table: str, row: dict[str, Any]) -> None:
        ledger = self.ctx.ledger if self.ctx is not None else None
        if ledger is not None:
            ledger.write(row, table=table)

    # -- status endpoint --------------------------------------------------------------------------------------
    async def status(self, request: Request) -> JSONResponse:
        out = {}
        for name, r in self.routes.items():
            entry: dict[str, Any] = {"policy": r.policy, "cheap": r.cheap, "strong": r.strong}
            if r.drift is not None:
                entry["drift"] = dataclasses.asdict(r.drift.status())
            if r.shadow is not None:
                entry["shadow"] = {"runs": r.shadow.runs, "spent_today_usd": round(r.shadow.spent_today, 6),
                                   "cap_usd_per_day": r.shadow.policy.max_usd_per_day,
                                   "skipped_for_cap": r.shadow.skipped_for_cap}
            out[name] = entry
        return JSONResponse({"routes": out, "events": self.events[-20:]})

    async def reset(self, request: Request) -> JSONResponse:
        name = request.path_params["route"]
        route = self.routes.get(name)
        if route is None or route.drift is None:
            return JSONResponse({"error": {"message": f"no route {name!r} with a drift guard"}}, status_code=404)
        route.drift.reset()
        self.record_event("drift_guard_reset", name, {})
        return JSONResponse({"route": name, "tripped": False})

    def metrics(self) -> list[Sample]:
        """For GET /metrics: what an alert on routing would watch."""
        out = [Sample("scrimp_router_calls_total", "counter", "Calls routed, by route and the model chosen.", n,
                      {"route": route, "model": model}) for (route, model), n in sorted(self.routed.items())]
        for name, r in self.routes.items():
            lab = {"route": name}
            if r.drift is not None:
                st = r.drift.status()
                nan = float("nan")
                out += [
                    Sample("scrimp_router_drift_tripped", "gauge", "1 while the drift guard holds the route on its "
                           "strong model.", int(st.tripped), lab),
                    Sample("scrimp_router_drift_trips_total", "counter", "Times the drift guard tripped.",
                           self.trips[name], lab),
                    Sample("scrimp_router_drift_quality", "gauge", "Mean shadow score of the cheap model (window).",
                           nan if st.mean is None else st.mean, lab),
                    Sample("scrimp_router_drift_quality_upper", "gauge", "Upper confidence bound of that mean.",
                           nan if st.upper is None else st.upper, lab),
                    Sample("scrimp_router_drift_target", "gauge", "The route's quality target.", st.target, lab),
                    Sample("scrimp_router_drift_samples", "gauge", "Shadow samples in the window.", st.samples, lab)]
            if r.shadow is not None:
                out += [
                    Sample("scrimp_router_shadow_runs_total", "counter", "Shadow evaluations run.", r.shadow.runs, lab),
                    Sample("scrimp_router_shadow_skipped_for_cap_total", "counter", "Shadow evaluations skipped "
                           "because the day's spend cap was reached.", r.shadow.skipped_for_cap, lab),
                    Sample("scrimp_router_shadow_spent_today_usd", "gauge", "Shadow spend today (UTC).",
                           r.shadow.spent_today, lab),
                    Sample("scrimp_router_shadow_cap_usd_per_day", "gauge", "The route's daily shadow spend cap.",
                           r.shadow.policy.max_usd_per_day, lab)]
        return out

    def http_routes(self) -> list[HttpRoute]:  # type: ignore[override]  # the gateway mounts these
        return [HttpRoute("/v1/scrimp/router/status", self.status, methods=["GET"]),
                HttpRoute("/v1/scrimp/router/routes/{route}/reset", self.reset, methods=["POST"])]

    async def drain(self) -> None:
        for r in self.routes.values():
            if r.shadow is not None:
                await r.shadow.drain()

    async def start(self) -> None:
        from scrimp.blas_threads import serve_with_one_blas_thread

        learned = [r for r in self.routes.values() if r.router is not None]
        if learned:
            serve_with_one_blas_thread()
            for route in learned:  # load the embedder now, not on the first request
                await asyncio.to_thread(route.router.p_cheap_ok, ["warm up"])

    async def close(self) -> None:
        await self.drain()


async def _on_done(stream: AsyncIterator[StreamEvent], fn: Any) -> AsyncIterator[StreamEvent]:
    async for event in stream:
        if event.kind == "done" and event.response is not None:
            fn(event.response)
        yield event


def from_options(options: RouterOptions, ctx: StageContext) -> RouterStage:
    models = set(ctx.models)
    providers = {n: s.provider for n, s in ctx.models.items()}
    stage = RouterStage({}, ctx, providers)
    try:
        for name, raw in options.routes.items():
            spec = _parse_route(str(name), raw, models)
            if raw.shadow is not None:
                spec.shadow = ShadowRunner(spec.name, raw.shadow, ctx.upstream, providers, stage._record,
                                           lambda score, served, s=spec: stage.on_score(s, score, served),
                                           seed=raw.shadow.seed)
            if raw.drift is not None:
                spec.drift = DriftGuard(**dataclasses.asdict(raw.drift))
            stage.routes[spec.name] = spec
    except (RouteConfigError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    return stage
