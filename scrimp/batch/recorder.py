"""Each line's ledger row, written exactly once: the row and the line's `recorded` mark go in one transaction, so
a line is billed once whether the request waiting for it, the worker (nobody waits any more), or a retry gets
there first, and however often the gateway was killed on the way.

A line is priced at the provider's batch rate; the lever "batch" declares the other half as its saving (priced
from the answer's usage at the model that answered, so the levers inside it add up as usual). A line that
shared an identical line's answer was not billed at all: its saving is that answer's whole standard price."""

from __future__ import annotations

import time
from typing import Any

import orjson

from scrimp import pricing
from scrimp.canonical import ChatRequest, ChatResponse
from scrimp.ledger.schema import TABLES
from scrimp.ledger.stage import record_call
from scrimp.pipeline import Attribution, Call, CallerKey, Counterfactual

LEVER = "batch"


class _Rows:
    """A ledger writer that keeps the rows, to be written in the lane's own transaction."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def write(self, row: dict[str, Any], table: str = "calls") -> None:
        self.rows.append((table, row))

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def flush(self) -> None:
        pass


def who_of(call: Call) -> dict[str, Any]:
    """What a line's row needs of its call, kept with the line (the call itself is gone after a restart)."""
    key = call.key
    return {"tenant": call.attribution.tenant, "user": call.attribution.user, "feature": call.attribution.feature,
            "tags": call.attribution.tags, "inbound": call.request.inbound, "requested_model": call.requested_model,
            "target_model": call.target_model, "stream": call.request.stream,
            # the key's budget too: a job line run through the pipeline later is held to it like a direct call
            "key": [key.id, key.tenant, key.name, key.feature, key.budget_usd, key.budget_period]
            if key is not None else None,
            "decisions": {k: v for k, v in call.decisions.items() if not k.startswith("_")},
            "started": time.time() - (time.perf_counter() - call.started)}


def call_of(line_id: str, who: dict[str, Any], req: ChatRequest | None = None) -> Call:
    """The call a line came from, rebuilt from what was kept (its levers' priced savings are not: after a
    restart a line's row carries the batch saving only)."""
    req = req or ChatRequest(model=who.get("requested_model") or "", messages=[],
                             inbound=who.get("inbound") or "openai", stream=bool(who.get("stream")))
    call = Call(req, Attribution(who.get("tenant") or "default", who.get("user"), who.get("feature"),
                                 dict(who.get("tags") or {})),
                requested_model=who.get("requested_model") or "", target_model=who.get("target_model") or "",
                request_id=line_id)
    key = who.get("key")
    if key:
        call.key = CallerKey(id=key[0], tenant=key[1], name=key[2], feature=key[3],
                             budget_usd=key[4] if len(key) > 4 else None, budget_period=key[5] if len(key) > 5 else None)
    call.decisions.update(who.get("decisions") or {})
    call.started = time.perf_counter() - (time.time() - float(who.get("started") or time.time()))
    return call


def _batch_saving(cf: Counterfactual) -> tuple[float, Counterfactual]:
    full = pricing.cost(cf.model, cf.provider, cf.usage)
    return full * (1 - pricing.BATCH_DISCOUNT), cf


def rows_for(call: Call, resp: ChatResponse | None, served: str, provider: str, *, shared: bool,
             error: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """The ledger rows of one finished line (and the call's cost_usd / baseline_usd set for its headers)."""
    if error is not None:
        call.status, call.error = "error", str(error.get("message", ""))[:500]
        resp = None
    elif shared and resp is not None:
        try:
            full = pricing.cost(served, provider or None, resp.usage)
        except pricing.UnknownPrice:
            full = 0.0
        call.save(LEVER, "an identical line in flight, answered once", full)
    elif resp is not None:
        call.save(LEVER, "the same call at the provider's standard rate", priced=_batch_saving)
    out = _Rows()
    record_call(out, call, resp, served if resp is not None else "", provider, billed=not shared, batch=True)
    return out.rows


def insert_rows(store: Any, cur: Any, rows: list[tuple[str, dict[str, Any]]], ledger: Any) -> None:
    """The rows, in the caller's transaction: through the ledger store when it can (its roll-ups follow), else as
    plain inserts."""
    if hasattr(ledger, "insert_now"):
        ledger.insert_now(cur, rows)
        return
    for table, row in rows:
        cols = [name for name, _ in TABLES[table]]
        cur.execute(store.q(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"),
                    tuple(row.get(c) for c in cols))


def committed(ledger: Any, rows: list[tuple[str, dict[str, Any]]]) -> None:
    if hasattr(ledger, "committed"):
        ledger.committed(rows)


def write_once(store: Any, line_id: str, rows: list[tuple[str, dict[str, Any]]], ledger: Any) -> Any:
    """The work (for `store.group` or `store.tx`) that marks the line recorded and writes its rows, together;
    it returns False when the line was recorded already. Call `committed` after a True."""
    def work(cur: Any) -> bool:
        cur.execute(store.q("UPDATE batch_lines SET recorded = 1 WHERE id = ? AND recorded = 0"), (line_id,))
        if cur.rowcount != 1:
            return False
        insert_rows(store, cur, rows, ledger)
        return True
    return work


def error_of(raw: str | None) -> dict[str, Any] | None:
    return orjson.loads(raw) if raw else None
