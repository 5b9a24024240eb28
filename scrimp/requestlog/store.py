"""The `request_log` table beside the ledger (same SQLite file or PostgreSQL schema), and its readers.

    store = RequestLogStore.from_ledger_config("scrimp-ledger.db")      # or a DSN, a ledger section, a store
    for prompt, answer in store.pairs(feature="intent"): ...           # newest first, ok calls with a text answer
    store.entries(feature="faq", limit=100, after_id=None)             # dict rows, newest first, paginated

Every read can name a tenant, and the log's own readers (audit, simulate, offload training) pass the tenant
they serve. Writes go through `RequestLogWriter` (a background thread), never on the request's path."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from scrimp.db import Database

COLUMNS = ["id", "ts", "request_id", "tenant", "feature", "user_id", "key_id", "inbound", "requested_model",
           "served_model", "cache", "stream", "status", "prompt_text", "answer_text", "request_json",
           "response_json", "bytes", "truncated"]
INSERT_COLUMNS = COLUMNS[1:]


def ddl(placeholder: str) -> list[str]:
    ident = "BIGSERIAL PRIMARY KEY" if placeholder == "%s" else "INTEGER PRIMARY KEY AUTOINCREMENT"
    return [
        f"""CREATE TABLE IF NOT EXISTS request_log (
            id {ident}, ts DOUBLE PRECISION NOT NULL, request_id TEXT NOT NULL, tenant TEXT NOT NULL,
            feature TEXT, user_id TEXT, key_id TEXT, inbound TEXT, requested_model TEXT, served_model TEXT,
            cache TEXT, stream INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL, prompt_text TEXT,
            answer_text TEXT, request_json TEXT NOT NULL, response_json TEXT, bytes INTEGER NOT NULL DEFAULT 0,
            truncated INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX IF NOT EXISTS request_log_scope ON request_log (tenant, feature, ts)",
        "CREATE INDEX IF NOT EXISTS request_log_ts ON request_log (ts)",
        "CREATE INDEX IF NOT EXISTS request_log_request ON request_log (request_id)",
    ]


class RequestLogStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def of_ledger(cls, ledger: Any) -> RequestLogStore:
        """The log in a ledger store's database (SQLiteLedger / PostgresLedger)."""
        db = Database.of_ledger(ledger, ddl(ledger.placeholder))
        if db is None:
            raise ValueError("the request log needs a ledger in a file or PostgreSQL, not in memory")
        return cls(db)

    @classmethod
    def from_ledger_config(cls, ledger: Any) -> RequestLogStore:
        """From a SQLite path, a postgresql:// DSN, a ledger section (dict or LedgerOptions: path / dsn /
        schema) or a ledger store."""
        from scrimp.ledger.store import LedgerStore, PostgresLedger, SQLiteLedger

        if isinstance(ledger, LedgerStore):
            return cls.of_ledger(ledger)
        if isinstance(ledger, str | Path):
            text = str(ledger)
            if text.startswith(("postgresql://", "postgres://")):
                return cls.of_ledger(PostgresLedger(text))
            return cls.of_ledger(SQLiteLedger(text))
        get = ledger.get if isinstance(ledger, dict) else lambda k, d=None: getattr(ledger, k, d)
        if get("dsn"):
            return cls.of_ledger(PostgresLedger(get("dsn"), get("schema") or "public"))
        return cls.of_ledger(SQLiteLedger(get("path") or "scrimp-ledger.db"))

    @property
    def placeholder(self) -> str:
        return self.db.placeholder

    def close(self) -> None:
        self.db.close()

    # -- reading -----------------------------------------------------------------------------------------------
    def _where(self, feature: str | None, tenant: str | None, since: float | None, until: float | None,
               after_id: int | None = None, extra: Sequence[str] = ()) -> tuple[str, list[Any]]:
        clauses, params = list(extra), []
        for column, value in (("feature", feature), ("tenant", tenant)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        if until is not None:
            clauses.append("ts < ?")
            params.append(until)
        if after_id is not None:
            clauses.append("id < ?")  # newest first: the next page holds older rows
            params.append(after_id)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    def entries(self, feature: str | None = None, tenant: str | None = None, since: float | None = None,
                until: float | None = None, after_id: int | None = None, limit: int | None = 100,
                *, bodies: bool = True) -> list[dict[str, Any]]:
        """Rows as dicts, newest first; pass the last row's `id` as `after_id` for the next page. Bodies are
        decoded (`request_json`, `response_json` as dicts) unless `bodies=False`."""
        where, params = self._where(feature, tenant, since, until, after_id)
        sql = f"SELECT {', '.join(COLUMNS)} FROM request_log {where} ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for row in self.db.execute(sql, params, "all"):
            item = dict(zip(COLUMNS, row, strict=True))
            if bodies:
                item["request_json"] = orjson.loads(item["request_json"]) if item["request_json"] else None
                item["response_json"] = orjson.loads(item["response_json"]) if item["response_json"] else None
            else:
                item.pop("request_json")
                item.pop("response_json")
            out.append(item)
        return out

    def iter_entries(self, feature: str | None = None, tenant: str | None = None, since: float | None = None,
                     until: float | None = None, page: int = 500, **kw: Any) -> Iterator[dict[str, Any]]:
        """Every matching row, newest first, read a page at a time (bounded memory per read)."""
        after = None
        while True:
            rows = self.entries(feature, tenant, since, until, after, page, **kw)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1]["id"]

    def pairs(self, feature: str | None = None, tenant: str | None = None, since: float | None = None,
              limit: int | None = None) -> Iterator[tuple[str, str]]:
        """(prompt, answer) of successful calls with a text answer, newest first (offload training)."""
        where, params = self._where(feature, tenant, since, None, None,
                                    ["status = 'ok'", "answer_text IS NOT NULL", "answer_text <> ''"])
        sql = f"SELECT prompt_text, answer_text FROM request_log {where} ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for prompt, answer in self.db.execute(sql, params, "all"):
            yield prompt or "", answer

    def count(self, tenant: str | None = None, feature: str | None = None) -> int:
        where, params = self._where(feature, tenant, None, None)
        return int(self.db.execute(f"SELECT COUNT(*) FROM request_log {where}", params, "one")[0])

    # -- keeping it bounded --------------------------------------------------------------------------------------
    def purge(self, now: float, retention_s: float | None, max_rows_per_tenant: int | None) -> int:
        """Delete rows older than the retention period, then each tenant's oldest rows beyond the cap (a tenant
        never pushes out another's). Returns the rows deleted."""
        deleted = 0
        if retention_s is not None:
            deleted += max(0, self.db.execute("DELETE FROM request_log WHERE ts < ?", [now - retention_s]))
        if max_rows_per_tenant is not None:
            over = self.db.execute("SELECT tenant FROM request_log GROUP BY tenant HAVING COUNT(*) > ?",
                                   [max_rows_per_tenant], "all")
            for (tenant,) in over:
                # the newest kept row's id; everything older goes
                (edge,) = self.db.execute("SELECT id FROM request_log WHERE tenant = ? ORDER BY id DESC LIMIT 1 "
                                          f"OFFSET {int(max_rows_per_tenant) - 1}", [tenant], "one")
                deleted += max(0, self.db.execute("DELETE FROM request_log WHERE tenant = ? AND id < ?",
                                                  [tenant, edge]))
        return deleted
