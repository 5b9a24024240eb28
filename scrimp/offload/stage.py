"""The offload stage: per feature, answer a call locally when the feature's classifier is confident enough.

A call of an offloaded feature whose last turn is a plain user question (one choice, no tools) is embedded and
classified; when the confidence clears the model's calibrated threshold the stage answers with the label rendered as
the LLM renders it, in whatever API and streaming mode the client asked for, marks it `x-scrimp-offload: <label>`
and `x-scrimp-offload-confidence`, and declares the LLM call it replaced as a saving. Otherwise the call goes on.

A share of the offloaded calls is also asked of the LLM (shadow.py, within a daily spend cap): the agreement of the
two answers feeds a drift guard (the router's, scrimp.router.drift) that sends the feature back to the LLM when
agreement falls below the model's target with confidence. A model directory replaced by `scrimp offload retrain` is
picked up within `reload_every_s`, with a fresh guard; a feature whose model directory does not exist yet is
passed on until one is written there (configure first, train from the logged traffic later).

Place it after the caches (a cached answer is cheaper still) and before the router."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scrimp import pricing
from scrimp.canonical import ChatResponse, Usage
from scrimp.metrics import Sample
from scrimp.offload.labels import label_of
from scrimp.offload.model import OffloadModel, version
from scrimp.offload.shadow import ShadowBudget, ShadowOptions
from scrimp.options import ConfigError, Where
from scrimp.pipeline import Call, Next, Reply
from scrimp.router.drift import DriftGuard
from scrimp.stage import Stage, StageContext
from scrimp.tokens import count_tokens, request_input_tokens

log = logging.getLogger("scrimp.offload")
LEVER = "offload"


@dataclasses.dataclass
class DriftOptions:
    target: float | None = None  # agreement to hold (default: the model's calibrated target)
    confidence: float = 0.95
    min_samples: int = 30
    window: int = 200

    def check(self, where: Where) -> None:
        if self.target is not None and not 0 < self.target <= 1:
            raise where.key("target").error(f"must be in (0, 1], got {self.target}")
        if not 0.5 <= self.confidence < 1:
            raise where.key("confidence").error(f"must be in [0.5, 1), got {self.confidence}")
        if self.min_samples < 1 or self.window < self.min_samples:
            raise where.key("window").error("window must be at least min_samples, and min_samples at least 1")


@dataclasses.dataclass
class FeatureOptions:
    model: str  # a directory written by `scrimp offload train`
    threshold: float | None = None  # overrides the model's calibrated threshold
    enabled: bool = True
    tenant: str | None = None  # offload only this tenant's calls (and retrain on its log alone)
    shadow: ShadowOptions = dataclasses.field(default_factory=ShadowOptions)
    drift: DriftOptions = dataclasses.field(default_factory=DriftOptions)
    reload_every_s: float = 5.0  # how often to look for a retrained model in `model`

    def check(self, where: Where) -> None:
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise where.key("threshold").error(f"must be between 0 and 1, got {self.threshold}")


@dataclasses.dataclass
class OffloadOptions:
    features: dict[str, FeatureOptions] = dataclasses.field(default_factory=dict)

    def check(self, where: Where) -> None:
        if not self.features:
            raise where.key("features").error("expected a mapping of feature name to {model: DIR} (a directory "
                                              "from scrimp offload train)")


@dataclasses.dataclass
class Feature:
    name: str
    options: FeatureOptions
    model: OffloadModel | None  # None until a model is written to options.model
    version: tuple[int, int] | None
    guard: DriftGuard
    shadow: ShadowBudget
    checked_at: float = 0.0
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {"offloaded": 0, "passed": 0,
                                                                        "drift_guard": 0})
    agreed: int = 0
    disagreed: int = 0
    saved_usd: float = 0.0

    @property
    def threshold(self) -> float:
        if self.options.threshold is not None:
            return self.options.threshold
        return self.model.threshold if self.model is not None else float("inf")


def _guard(options: DriftOptions, model: OffloadModel | None) -> DriftGuard:
    default = model.target if model is not None else 0.98
    target = options.target if options.target is not None else default
    return DriftGuard(target, options.confidence, options.min_samples, options.window)


def plain_question(call: Call) -> str | None:
    """The last user turn's text, when the request is a plain question a label answers."""
    req = call.request
    if req.n != 1 or req.tools or not req.messages or req.messages[-1]["role"] != "user":
        return None
    blocks = req.messages[-1]["content"]
    if not blocks or any(b.get("type") != "text" for b in blocks):
        return None
    text = "\n".join(b.get("text", "") for b in blocks)
    return text if text.strip() else None


class OffloadStage(Stage):
    name = "offload"
    Options = OffloadOptions

    def __init__(self, features: dict[str, Feature], ctx: StageContext | None = None) -> None:
        self.features = features
        self.ctx = ctx
        self.events: list[dict[str, Any]] = []

    @classmethod
    def build(cls, options: OffloadOptions, ctx: StageContext) -> OffloadStage:
        features = {}
        for name, opts in options.features.items():
            model = None
            if Path(opts.model).exists():
                try:
                    model = OffloadModel.load(opts.model)
                except (OSError, ValueError, KeyError) as exc:
                    raise ConfigError(f"features.{name}.model: cannot load {opts.model}: {exc}") from exc
            else:
                log.warning("offload: feature %s has no model in %s yet; its calls go to the LLM until one is "
                            "trained there (scrimp offload retrain)", name, opts.model)
            features[name] = Feature(name, opts, model, version(opts.model), _guard(opts.drift, model),
                                     ShadowBudget(opts.shadow, ctx.clock))
        return cls(features, ctx)

    def _embedder(self) -> Any:
        if self.ctx is not None:
            return self.ctx.embedder(int8=True)
        from scrimp.embedding import shared_minilm

        return shared_minilm(int8=True)

    # -- serving ---------------------------------------------------------------------------------------------
    async def handle(self, call: Call, next: Next) -> Reply:
        feature = self.features.get(call.attribution.feature or "")
        if feature is None or not feature.options.enabled or \
                feature.options.tenant not in (None, call.attribution.tenant):
            return await next(call)
        question = plain_question(call)
        if question is None:
            return await next(call)
        await self._maybe_reload(feature)
        if feature.model is None:
            return await next(call)
        if feature.guard.tripped:
            feature.counts["drift_guard"] += 1
            return await next(call)
        emb = self._embedder()
        memo = (emb.key, question)
        vector = call.embeddings.get(memo)
        if vector is None:
            vector = call.embeddings[memo] = (await asyncio.to_thread(emb.embed, [question]))[0]
        decision = (await asyncio.to_thread(feature.model.decide, [question], vector[None, :], feature.threshold))[0]
        if not decision.served:
            feature.counts["passed"] += 1
            return await next(call)
        feature.counts["offloaded"] += 1
        text = feature.model.rendering(decision.label)
        call.decisions.update(offload=decision.label, offload_confidence=round(decision.confidence, 4))
        usd = self._llm_cost(call, count_tokens(text))
        call.save(LEVER, f"the call to {call.requested_model} it answered in place of (estimated tokens)", usd)
        feature.saved_usd += usd
        await self._shadow(feature, call, decision.label, text)
        answer = ChatResponse(id=call.request_id.removeprefix("req_"), model=call.requested_model,
                              content=[{"type": "text", "text": text}], stop_reason="end_turn", usage=Usage())
        return Reply(response=answer, served_model=call.requested_model, served_provider=LEVER, billed=False,
                     headers={"x-scrimp-offload": _header_safe(decision.label),
                              "x-scrimp-offload-confidence": f"{decision.confidence:.4f}"})

    def _llm_cost(self, call: Call, output_tokens: int) -> float:
        model = call.requested_model
        provider = self.ctx.provider_of(model) if self.ctx is not None else None
        usage = Usage(input=request_input_tokens(call.request), output=output_tokens)
        try:
            return pricing.cost(model, provider, usage)
        except pricing.UnknownPrice:
            return 0.0

    # -- shadow checks and the drift guard -------------------------------------------------------------------
    async def _shadow(self, feature: Feature, call: Call, label: str, text: str) -> None:
        if self.ctx is None:
            return
        assert feature.model is not None
        longest = max((count_tokens(t) for t in feature.model.renderings.values()), default=16)
        worst = self._llm_cost(call, call.request.max_tokens or 4 * longest + 64)
        if not feature.shadow.take(worst):
            return
        sub = call.fork(request=dataclasses.replace(call.request, stream=False), request_id=call.request_id + "-shadow",
                        target_model=call.requested_model)
        spent = 0.0
        try:
            reply = await self.ctx.upstream(sub)
            resp = reply.response
            assert resp is not None
            try:
                spent = pricing.cost(reply.served_model, reply.served_provider or None, resp.usage)
            except pricing.UnknownPrice:
                spent = 0.0
            spent += sum(c.usd for c in sub.costs)
            call.spend(spent, f"offload shadow check by {reply.served_model}", LEVER, reply.served_model)
            agreed = label_of(resp.text()) == label
            call.decisions["offload_shadow"] = "agreed" if agreed else "disagreed"
            self._score(feature, agreed, resp.text())
        except Exception as exc:  # noqa: BLE001 - a failed check must not fail the call it checks
            log.warning("offload: shadow check of feature %s failed: %s", feature.name, exc)
            spent += sum(c.usd for c in sub.costs)
            if spent:
                call.spend(spent, "offload shadow check (failed)", LEVER)
        finally:
            feature.shadow.settle(worst, spent)

    def _score(self, feature: Feature, agreed: bool, llm_text: str) -> None:
        if agreed:
            feature.agreed += 1
        else:
            feature.disagreed += 1
        if feature.guard.add(1.0 if agreed else 0.0):
            st = feature.guard.status()
            log.warning("offload drift guard: feature %s goes back to the LLM (agreement %.3f, upper bound %.3f < "
                        "target %.3f over %d shadow checks)", feature.name, st.mean, st.upper, st.target,
                        st.samples)
            self.record_event("offload_drift_guard_tripped", feature.name,
                              {"agreement": st.mean, "upper": st.upper, "target": st.target,
                               "samples": st.samples, "last_llm_answer": llm_text[:200]})

    def record_event(self, kind: str, feature: str, detail: dict[str, Any]) -> None:
        event = {"ts": time.time(), "kind": kind, "route": f"offload:{feature}",
                 "detail": orjson.dumps(detail).decode()}
        self.events.append(event)
        del self.events[:-100]
        ledger = self.ctx.ledger if self.ctx is not None else None
        if ledger is not None:
            ledger.write(event, table="events")

    # -- a retrained model -------------------------------------------------------------------------------------
    async def _maybe_reload(self, feature: Feature, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - feature.checked_at < feature.options.reload_every_s:
            return False
        feature.checked_at = now
        current = await asyncio.to_thread(version, feature.options.model)
        if current is None or (current == feature.version and not force):
            return False
        try:
            model = await asyncio.to_thread(OffloadModel.load, feature.options.model)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("offload: feature %s keeps its model; the new one in %s cannot be loaded: %s",
                        feature.name, feature.options.model, exc)
            return False
        feature.model, feature.version = model, current
        feature.guard = _guard(feature.options.drift, model)  # a new model starts with a clean record
        self.record_event("offload_model_loaded", feature.name,
                          {"model": str(Path(feature.options.model)), "threshold": model.threshold,
                           "trained_on": model.info.get("training", {}).get("examples")})
        return True

    # -- visibility --------------------------------------------------------------------------------------------
    def status_of(self, feature: Feature) -> dict[str, Any]:
        st = feature.guard.status()
        labels = len(feature.model.labels) if feature.model is not None else None
        threshold = None if math.isinf(feature.threshold) else feature.threshold
        return {"model": feature.options.model, "labels": labels, "threshold": threshold,
                "calls": dict(feature.counts), "saved_usd": round(feature.saved_usd, 8),
                "shadow": {"runs": feature.shadow.runs, "agreed": feature.agreed, "disagreed": feature.disagreed,
                           "spent_today_usd": round(feature.shadow.spent_today, 8),
                           "cap_usd_per_day": feature.shadow.options.max_usd_per_day,
                           "skipped_for_cap": feature.shadow.skipped_for_cap},
                "drift": dataclasses.asdict(st)}

    async def status(self, request: Request) -> JSONResponse:
        return JSONResponse({"features": {n: self.status_of(f) for n, f in self.features.items()},
                             "events": self.events[-20:]})

    async def reset(self, request: Request) -> JSONResponse:
        """Back to offloading after a drift trip (also reloads the model directory)."""
        name = request.path_params["feature"]
        feature = self.features.get(name)
        if feature is None:
            return JSONResponse({"error": {"message": f"no offloaded feature {name!r}"}}, status_code=404)
        await self._maybe_reload(feature, force=True)
        feature.guard.reset()
        self.record_event("offload_drift_guard_reset", name, {})
        return JSONResponse({"feature": name, "tripped": False})

    def http_routes(self) -> list[Route]:  # type: ignore[override]
        return [Route("/v1/scrimp/offload/status", self.status, methods=["GET"]),
                Route("/v1/scrimp/offload/features/{feature}/reset", self.reset, methods=["POST"])]

    def metrics(self) -> list[Sample]:
        out: list[Sample] = []
        for name, f in self.features.items():
            lab = {"feature": name}
            st = f.guard.status()
            out += [Sample("scrimp_offload_calls_total", "counter", "Eligible calls of an offloaded feature, by "
                           "outcome (offloaded, passed on, held by the drift guard).", n, {**lab, "outcome": k})
                    for k, n in f.counts.items()]
            out += [
                Sample("scrimp_offload_shadow_checks_total", "counter", "Offloaded answers checked against the LLM, "
                       "by result.", f.agreed, {**lab, "result": "agreed"}),
                Sample("scrimp_offload_shadow_checks_total", "counter", "Offloaded answers checked against the LLM, "
                       "by result.", f.disagreed, {**lab, "result": "disagreed"}),
                Sample("scrimp_offload_shadow_spent_today_usd", "gauge", "Shadow-check spend today (UTC).",
                       f.shadow.spent_today, lab),
                Sample("scrimp_offload_drift_tripped", "gauge", "1 while the drift guard sends the feature to the "
                       "LLM.", int(st.tripped), lab),
                Sample("scrimp_offload_drift_agreement", "gauge", "Agreement of the shadow checks (window).",
                       float("nan") if st.mean is None else st.mean, lab)]
        return out

    async def start(self) -> None:
        from scrimp.blas_threads import serve_with_one_blas_thread

        serve_with_one_blas_thread()
        await asyncio.to_thread(self._embedder().embed, ["warm up"])  # load (or export) the model now


def _header_safe(label: str) -> str:
    """A label as an HTTP header value (latin-1, one line)."""
    text = " ".join(label.split())
    return text.encode("latin-1", "replace").decode("latin-1")
