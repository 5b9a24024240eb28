"""Top prompts by spend: the request log's prompts of the period grouped by their template (the normaliser
`scrimp audit` groups by, scrimp/requestlog/template.py), each group with its calls' spend from the ledger.

Bounded like every other dashboard read: one query takes the newest SCAN_ROWS rows of the log in the period (the
`request_log_scope` index when both a tenant and a feature are chosen, else the `ts` index, the other filter then
applied here), each joined to its ledger row by `request_id`, and only the first PROMPT_CHARS characters of
each prompt. When the cap is hit the answer says so, and from when its rows are."""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from typing import Any

from scrimp.requestlog.template import template
from scrimp.stage import LedgerWriter

SCAN_ROWS = 5_000  # request-log rows read per overview (templating costs ~0.1 ms a prompt)
PROMPT_CHARS = 500  # of each prompt, templated (a template keeps its first 240 characters; its cost grows with length)
TOP = 20
HINT_FEATURES = 5  # features named in "turn on the request log for these features"


def _name(value: Any) -> str:
    return str(value) if value not in (None, "") else "-"


def has_log(store: LedgerWriter) -> bool:
    """Whether the ledger's database has a `request_log` table (created by the request_log stage)."""
    if getattr(store, "placeholder", "?") == "%s":
        return bool(store.query("SELECT to_regclass('request_log') IS NOT NULL")[0][0])
    return bool(store.query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'request_log'")[0][0])


# a ledger call's logged prompt, as much of it as is templated here, in a SELECT over `calls`
PROMPT_OF_CALL = (f"(SELECT substr(r.prompt_text, 1, {PROMPT_CHARS}) FROM request_log r "
                  "WHERE r.request_id = calls.request_id ORDER BY r.id LIMIT 1)")


@lru_cache(maxsize=16_384)  # prompts repeat across calls and page loads; templating is the costly part
def template_of(prompt: str | None) -> str:
    return template(prompt or "")


def top_prompts(store: LedgerWriter, since: float, until: float, tenant: str, feature: str,
                spend_usd: float, features_by_spend: list[str]) -> dict[str, Any]:
    """Templates by spend over the view (tenant / feature '' = all). `spend_usd` is the view's whole spend (the
    share's denominator); `features_by_spend` the view's features, largest first (for the hint)."""
    out: dict[str, Any] = {"logged": False, "rows": [], "scanned": 0, "scan_cap": SCAN_ROWS, "capped": False,
                           "covered_since": since, "calls": 0, "cost_usd": 0.0, "unlogged_features": []}
    if has_log(store):
        where, args = "ts >= ? AND ts <= ?", [since, until]
        if tenant and feature and feature != "-":  # one index range of request_log_scope
            where, args = "tenant = ? AND feature = ? AND " + where, [tenant, feature, *args]
        rows = store.query(
            f"SELECT r.ts, r.tenant, r.feature, substr(r.prompt_text, 1, {PROMPT_CHARS}), "
            "(SELECT SUM(c.cost_usd) FROM calls c WHERE c.request_id = r.request_id), "
            "(SELECT COUNT(*) FROM calls c WHERE c.request_id = r.request_id) "
            f"FROM (SELECT ts, request_id, tenant, feature, prompt_text FROM request_log WHERE {where} "
            f"ORDER BY ts DESC LIMIT {SCAN_ROWS}) r", args)
        out["logged"] = bool(rows) or bool(store.query("SELECT 1 FROM request_log LIMIT 1"))
        out["scanned"] = len(rows)
        if len(rows) == SCAN_ROWS:
            out["capped"] = True
            out["covered_since"] = min(r[0] for r in rows)
        groups: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
        seen_features: set[str] = set()
        for _ts, row_tenant, row_feature, prompt, cost, calls in rows:
            if (tenant and row_tenant != tenant) or (feature and _name(row_feature) != feature) or not calls:
                continue  # not in the view, or its ledger row is not written yet
            seen_features.add(_name(row_feature))
            g = groups[(_name(row_feature), template_of(prompt or ""))]
            g[0] += calls
            g[1] += float(cost or 0.0)
        out["calls"] = int(sum(g[0] for g in groups.values()))
        out["cost_usd"] = round(sum(g[1] for g in groups.values()), 9)
        ranked = sorted(groups.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))[:TOP]
        out["rows"] = [{"feature": feat, "template": tmpl, "calls": int(n), "cost_usd": round(usd, 9),
                        "share": usd / spend_usd if spend_usd else None}
                       for (feat, tmpl), (n, usd) in ranked]
    else:
        seen_features = set()
    # the view's largest features with no logged call read (all of them when nothing is logged)
    out["unlogged_features"] = [k for k in features_by_spend if k not in seen_features and k != "-"][:HINT_FEATURES]
    return out
