"""`scrimp simulate`: the request log's calls of a period replayed, in their order and at their original times,
through another config's pipeline, the gateway's own, whose models all answer from the provider simulator in
this process (no provider is called). The simulator answers each logged prompt with its logged answer, so token
counts match what happened; prices are the ledger's.

Every store a stage keeps (SQLite paths, PostgreSQL, Redis) is a fresh temporary SQLite file: nothing of the
real caches, budgets or ledger is read or written, and caches start cold, as a newly switched-on lever would.
The stages' clock (budgets, rate limits) reads each call's original time. The batch lane is not replayed
(its answers arrive hours later): its features' replayed cost is halved and declared as the lever `batch`."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scrimp.audit.findings import answered
from scrimp.canonical import ChatResponse
from scrimp.ledger.rollup import by_lever
from scrimp.ledger.store import LedgerStore, SQLiteLedger
from scrimp.pipeline import Attribution, Call, collect
from scrimp.pricing import BATCH_DISCOUNT
from scrimp.requestlog.bodies import request_from_json
from scrimp.requestlog.store import RequestLogStore

NOT_REPLAYED = {"request_log": "replayed calls are not logged again",
                "batch": "its answers come hours later: deferred features are priced at the batch rate instead"}
TIER_CAPABILITY = {"premium": 0.9, "mid": 0.7, "cheap": 0.5}


class ReplayClock:
    """The stages' clock during a replay: the original time of the call being replayed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def isolated(config: Any, sim_url: str, tmp: Path) -> tuple[Any, dict[str, Any]]:
    """The config with every model at the simulator and every stage's store in `tmp`; also the batch lane's
    section, if any (replaced by pricing), with `_replaced`: what else the replay does differently."""
    from scrimp.options import Where
    from scrimp.stage import stage_class

    pairs, batch, dropped = [], {}, []
    for i, section in enumerate(config.stages):
        name = section["name"]
        where = config.stage_wheres[i] if i < len(config.stage_wheres) else Where(path=f"stages.{name}")
        if name in NOT_REPLAYED:
            if name == "batch":
                batch = dict(section)
            continue
        section = dict(section)
        fields = {f.name for f in dataclasses.fields(stage_class(name).Options)}
        if name == "ledger":
            section = {"name": "ledger", "path": str(tmp / "ledger.db")}
        else:
            if "path" in fields:
                section["path"] = str(tmp / f"{name}.db")
            if "index_dir" in fields:
                section["index_dir"] = ""  # no graph files written beside the real ones
            if section.pop("embeddings", None) is not None:  # a remote embedding API is a provider call
                dropped.append(f"{name}: embeddings from the local model, not the configured endpoint")
            for key in ("dsn", "redis_url"):
                section.pop(key, None)
            if section.get("backend") == "redis":
                section["backend"] = "sqlite"
        pairs.append((section, where))
    if not any(s["name"] == "ledger" for s, _ in pairs):
        pairs.insert(0, ({"name": "ledger", "path": str(tmp / "ledger.db")}, Where(path="stages.ledger")))
    models = {name: dataclasses.replace(spec, base_url=sim_url + "/v1" if spec.provider == "openai" else sim_url,
                                        api_key="sim")
              for name, spec in config.models.items()}
    batch["_replaced"] = dropped
    return dataclasses.replace(config, models=models, stages=[s for s, _ in pairs],
                               stage_wheres=[w for _, w in pairs], auth=None), batch


def sim_config(config: Any, entries: list[dict[str, Any]], base: Any = None) -> Any:
    """The simulator for a replay: the config's models (the simulator's own settings for names it knows, or
    `base`'s), and each logged prompt answered with its logged answer by every model."""
    from scrimp.sim.config import ModelConfig, SimConfig, default_models, normalise_prompt

    known = {m.name: m for m in default_models()}
    if base is not None:
        known.update(base.models)
    cfg = SimConfig()
    cfg.models = {}
    for spec in config.models.values():
        m = known.get(spec.remote_name) or known.get(spec.name)
        m = dataclasses.replace(m, name=spec.remote_name) if m is not None else ModelConfig(
            spec.remote_name, spec.provider, spec.tier if spec.tier in TIER_CAPABILITY else "mid",
            capability=TIER_CAPABILITY.get(spec.tier, 0.7), context_window=1_000_000)
        cfg.models[m.name] = m
    for entry in reversed(entries):  # oldest first: the newest answer of a prompt wins
        if entry["answer_text"] and entry["prompt_text"]:
            cfg.workload[normalise_prompt(entry["prompt_text"])] = {"answer": entry["answer_text"], "difficulty": 0.0}
    return cfg


def summarise(store: LedgerStore, request_ids: set[str] | None, since: float | None, until: float | None
              ) -> dict[str, Any]:
    """Cost, per-lever savings, cache hit rates, share routed and latency of a ledger's calls (those in
    `request_ids`, and shadow evaluations, when given)."""
    import orjson

    clauses, params = [], []
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    if until is not None:
        clauses.append("ts < ?")
        params.append(until)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = store.query("SELECT request_id, feature, requested_model, served_model, provider, cost_usd, cache, "
                       f"decisions, input_tokens, cache_read_tokens, latency_ms, status FROM calls {where}", params)
    cost, features = 0.0, defaultdict(float)
    calls = hits = routed = paid = succeeded = 0
    inp = read = 0
    latencies = []
    for rid, feature, requested, served, provider, usd, cache, decisions, i, r, lat, status in rows:
        d = orjson.loads(decisions) if decisions else {}
        shadow = "shadow" in d and isinstance(d.get("shadow"), str) and len(d) == 1
        if request_ids is not None and rid not in request_ids and not shadow:
            continue
        cost += float(usd or 0)
        features[feature or "-"] += float(usd or 0)
        if shadow:
            continue
        calls += 1
        succeeded += status == "ok"
        hits += cache in ("exact", "semantic")
        routed += bool(served) and bool(requested) and served != requested and cache in (None, "miss")
        if answered({"cache": cache, "served_model": served, "provider": provider}):
            paid += 1
            inp += int(i or 0) + int(r or 0)
            read += int(r or 0)
        if lat is not None:
            latencies.append(float(lat))
    if request_ids is None:
        levers = {lever["lever"]: lever["saved_usd"] for lever in by_lever(store, since)}
    else:  # per-lever figures of the logged calls only
        levers = defaultdict(float)
        for rid, kind, lever, usd in store.query(f"SELECT request_id, kind, lever, usd FROM savings {where}", params):
            if rid in request_ids:
                levers[lever] += float(usd or 0) * (1 if kind == "saving" else -1)
    return {"cost_usd": cost, "calls": calls, "succeeded": succeeded,
            "cost_per_success_usd": cost / succeeded if succeeded else None,
            "by_feature": dict(features), "by_lever": dict(levers),
            "cache_hit_rate": hits / calls if calls else 0.0,
            "prompt_cache_read_share": read / inp if inp else 0.0,
            "routed_share": routed / paid if paid else 0.0,
            "latency_p50_ms": statistics.median(latencies) if latencies else None}


async def _replay(gateway: Any, clock: ReplayClock, entries: list[dict[str, Any]],
                  tick: Callable[[], None]) -> list[dict[str, Any]]:
    outcomes = []
    for entry in entries:
        clock.now = entry["ts"]
        req = request_from_json(entry["request_json"])
        call = Call(req, Attribution(tenant=entry["tenant"], user=entry["user_id"], feature=entry["feature"]))
        outcome: dict[str, Any] = {"request_id": entry["request_id"], "feature": entry["feature"] or "-"}
        try:
            reply = await gateway.pipeline(call)
            resp: ChatResponse = await collect(reply)
            outcome.update(ok=True, text=resp.text(), served=reply.served_model, cache=call.decisions.get("cache"),
                           decisions=dict(call.decisions), cost=call.cost_usd or 0.0)
        except Exception as exc:  # noqa: BLE001 - a call the other pipeline refuses or fails is a result too
            outcome.update(ok=False, error=str(exc)[:200], decisions=dict(call.decisions), cost=call.cost_usd or 0.0)
        outcomes.append(outcome)
        tick()
    return outcomes


def changed_answers(entries: list[dict[str, Any]], outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """Calls whose answer would change under the other pipeline, and why: answered from a cache, by another
    model, from an edited (trimmed) request, offloaded, or refused."""
    causes: dict[str, int] = defaultdict(int)
    changed = 0
    for entry, out in zip(entries, outcomes, strict=True):
        was_cached = entry["cache"] in ("exact", "semantic")
        if not out.get("ok"):
            causes["failed"] += 1
            changed += 1
            continue
        d = out["decisions"]
        cause = None
        if out["cache"] in ("exact", "semantic") and not was_cached:
            cause = "cached"
        elif "offload" in d:  # the offload stage's label (a local model answered)
            cause = "offloaded"
        elif out["served"] and entry["served_model"] and out["served"] != entry["served_model"] \
                and out["cache"] in (None, "miss") and not was_cached:
            cause = "routed"
        elif any(k.startswith("trim") for k in d):
            cause = "trimmed"
        elif entry["cache"] == "semantic" and out["cache"] in (None, "miss"):
            cause = "uncached"  # it got another question's cached answer; now the model answers it afresh
        if cause is not None:
            causes[cause] += 1
        if cause is not None or (out["text"] or "") != (entry["answer_text"] or ""):
            changed += 1
    return {"changed": changed, "share": changed / len(entries) if entries else 0.0, "by_cause": dict(causes)}


def simulate(source: LedgerStore, config: Any, since: float | None, until: float | None = None,
             tenant: str | None = None, sim_base: Any = None, progress: bool = False, *,
             gateway: Callable[[Any], Any]) -> dict[str, Any]:
    """`gateway(config)` builds the pipeline the calls are replayed through: the gateway's own
    (scrimp.gateway.app.Gateway, passed in by the command), so a saving shown here is the gateway's."""
    from tqdm import tqdm

    from scrimp.sim.testing import run_simulator

    log = RequestLogStore.of_ledger(source)
    try:
        entries = list(log.iter_entries(tenant=tenant, since=since, until=until))
    finally:
        log.close()
    entries = [e for e in reversed(entries) if e["request_json"] and "omitted" not in e["request_json"]]
    ids = {e["request_id"] for e in entries}
    recorded = summarise(source, ids, since, until)
    bar = tqdm(total=len(entries), desc="replaying", unit="call", disable=not progress, leave=False)
    with tempfile.TemporaryDirectory(prefix="scrimp-simulate-") as tmp, \
            run_simulator(sim_config(config, entries, sim_base)) as (sim_url, _app):
        other, batch = isolated(config, sim_url, Path(tmp))
        clock = ReplayClock()

        async def run() -> list[dict[str, Any]]:
            pipeline = gateway(other)
            pipeline.ctx.clock = clock  # budgets and rate limits see the calls' original times
            await pipeline.start()
            try:
                return await _replay(pipeline, clock, entries, lambda: bar.update(1))
            finally:
                await pipeline.close()

        outcomes = asyncio.run(run())
        bar.close()
        store = SQLiteLedger(Path(tmp) / "ledger.db")
        simulated = summarise(store, None, None, None)
    _batch(simulated, batch, outcomes)
    return {
        "calls": {"replayed": len(entries), "failed": sum(1 for o in outcomes if not o.get("ok")),
                  "truncated_bodies": sum(1 for e in entries if e.get("truncated"))},
        "recorded": recorded, "simulated": simulated,
        "saving_usd": recorded["cost_usd"] - simulated["cost_usd"],
        "quality_risk": changed_answers(entries, outcomes),
        "not_replayed": {k: v for k, v in NOT_REPLAYED.items() if any(s["name"] == k for s in config.stages)},
        "replaced": batch.get("_replaced", []),
    }


def _batch(simulated: dict[str, Any], batch: dict[str, Any], outcomes: list[dict[str, Any]]) -> None:
    """The batch lane's saving, priced: its deferred (or flex) features' provider-answered calls at half price."""
    features = batch.get("features") or {}
    deferred = {f for f, p in features.items() if (p or {}).get("defer") or (p or {}).get("flex")}
    if not deferred:
        return
    usd = sum(o["cost"] for o in outcomes if o["feature"] in deferred and o.get("ok")
              and o.get("cache") in (None, "miss")) * (1 - BATCH_DISCOUNT)
    simulated["cost_usd"] -= usd
    if simulated["succeeded"]:
        simulated["cost_per_success_usd"] = simulated["cost_usd"] / simulated["succeeded"]
    simulated["by_lever"]["batch"] = simulated["by_lever"].get("batch", 0.0) + usd
    for f in deferred:
        part = sum(o["cost"] for o in outcomes if o["feature"] == f and o.get("ok")
                   and o.get("cache") in (None, "miss")) * (1 - BATCH_DISCOUNT)
        simulated["by_feature"][f] = simulated["by_feature"].get(f, 0.0) - part
