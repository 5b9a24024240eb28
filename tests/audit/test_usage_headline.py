"""`scrimp usage` leads with the cost per successful request, per feature, with its trend."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from scrimp.cli import main
from scrimp.ledger.schema import NAMES
from scrimp.ledger.store import SQLiteLedger


def _row(ts: float, feature: str, cost: float, status: str = "ok", stage: str | None = None) -> dict:
    row = dict.fromkeys(NAMES)
    row.update(ts=ts, request_id=f"r{ts}", tenant="t", feature=feature, status=status, cost_usd=cost,
               baseline_usd=cost, saved_usd=0.0, input_tokens=10, output_tokens=5, cache_read_tokens=0,
               cache_write_5m_tokens=0, cache_write_1h_tokens=0, reasoning_tokens=0, stream=0, cache="miss",
               saving_stage=stage)
    return row


def test_cost_per_successful_request_and_its_trend(tmp_path):
    now = time.time()
    store = SQLiteLedger(tmp_path / "ledger.db")
    day = 86400
    # 'search', first half of a 4-day period: 3 ok calls at $0.01 and an error that cost $0.01
    for i in range(3):
        store.write(_row(now - 3.5 * day + i, "search", 0.01))
    store.write(_row(now - 3.4 * day, "search", 0.01, status="error"))
    # second half: 2 ok calls at $0.01, a cancelled stream at $0.005, a router shadow call at $0.002
    for i in range(2):
        store.write(_row(now - 1 * day + i, "search", 0.01))
    store.write(_row(now - 0.5 * day, "search", 0.005, status="client_cancelled"))
    store.write(_row(now - 0.4 * day, "search", 0.002, stage="router_shadow"))
    store.close()
    result = CliRunner().invoke(main, ["usage", "--db", str(tmp_path / "ledger.db"), "--since", "4d", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["rows"]
    first, second = 0.04 / 3, 0.027 / 2  # spend over successes in each half (the shadow call is spend, no request)
    assert abs(row["cost_per_success_usd"] - 0.067 / 5) < 1e-12 and row["succeeded"] == 5
    assert abs(row["trend"] - (second - first) / first) < 1e-9
    table = CliRunner().invoke(main, ["usage", "--db", str(tmp_path / "ledger.db"), "--since", "4d"]).output
    assert table.startswith("cost per successful request: $0.013400 (trend +1%")
    assert "$/success" in table and "0.013400" in table
