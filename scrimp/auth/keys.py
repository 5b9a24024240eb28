"""Gateway keys: made here, stored only as a SHA-256 in the ledger's database (SQLite or PostgreSQL).

A key is `sk-scrimp-` + 43 random URL-safe characters (256 bits from the OS). Only its SHA-256 is kept (a fast
hash is enough for a secret of that strength; nothing to brute-force), with its first characters so that a
person can tell keys apart, and what it is bound to: a tenant, optionally a feature, whether it may name the
tenant per request, and a budget (enforced by the budgets stage). Revoking keeps the row, so the
ledger's `key_id` still says whose calls they were.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from scrimp.db import Database
from scrimp.pipeline import CallerKey

PREFIX = "sk-scrimp-"
SHOWN = len(PREFIX) + 4  # characters of a key kept to tell keys apart ("sk-scrimp-AbCd")

TABLE = """CREATE TABLE IF NOT EXISTS gateway_keys (
    id TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, name TEXT, tenant TEXT NOT NULL,
    feature TEXT, may_set_tenant INTEGER NOT NULL DEFAULT 0, budget_usd DOUBLE PRECISION, budget_period TEXT,
    created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)"""
COLUMNS = ("id", "key_sha256", "prefix", "name", "tenant", "feature", "may_set_tenant", "budget_usd",
           "budget_period", "created_at", "revoked_at")


_NAME = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,198}[\x21-\x7e])?")


def check_name(value: str, what: str) -> str:
    """A tenant or feature a key is bound to: printable ASCII (it travels in a header), 1-200 characters, no
    space at either end. Raises ValueError naming `what`."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"{what} must be 1 to 200 printable ASCII characters with no space at either end, "
                         f"got {value!r}")
    return value


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_id() -> str:
    return "key_" + secrets.token_hex(6)


def config_key_id(digest: str) -> str:
    """The id of a key listed in the config without one: stable across restarts and replicas."""
    return "cfg_" + digest[:12]


@dataclass
class KeyRecord:
    """A key as stored (never the key itself)."""

    id: str
    key_sha256: str
    prefix: str
    tenant: str
    name: str | None = None
    feature: str | None = None
    may_set_tenant: bool = False
    budget_usd: float | None = None
    budget_period: str | None = None
    created_at: float = 0.0
    revoked_at: float | None = None
    source: str = "database"  # or "config"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def caller(self) -> CallerKey:
        """What a call made with this key carries (`Call.key`)."""
        return CallerKey(id=self.id, tenant=self.tenant, name=self.name, feature=self.feature,
                         may_set_tenant=self.may_set_tenant, budget_usd=self.budget_usd,
                         budget_period=self.budget_period)

    def public(self) -> dict[str, Any]:
        """Everything but the hash: what `keys list` and the admin endpoint show."""
        return {"id": self.id, "prefix": self.prefix, "name": self.name, "tenant": self.tenant,
                "feature": self.feature, "may_set_tenant": self.may_set_tenant, "budget_usd": self.budget_usd,
                "period": self.budget_period, "created_at": self.created_at or None, "revoked_at": self.revoked_at,
                "source": self.source}


def _record(row: tuple[Any, ...]) -> KeyRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    values["may_set_tenant"] = bool(values["may_set_tenant"])
    values["created_at"] = float(values["created_at"])
    values["revoked_at"] = float(values["revoked_at"]) if values["revoked_at"] is not None else None
    values["budget_usd"] = float(values["budget_usd"]) if values["budget_usd"] is not None else None
    return KeyRecord(**values)


class KeyStore:
    """The `gateway_keys` table in the ledger's database (one connection, one statement at a time: `Database`;
    callers on the event loop go through a worker thread)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def where(self) -> str:  # for messages: the SQLite file or the PostgreSQL schema
        return self.db.where

    @classmethod
    def of_ledger(cls, ledger: Any) -> KeyStore | None:
        """The store in a ledger store's database (SQLiteLedger / PostgresLedger); None for an in-memory ledger."""
        db = Database.of_ledger(ledger, (TABLE,))
        return cls(db) if db is not None else None

    def _execute(self, sql: str, params: tuple[Any, ...] = (), fetch: str = "") -> Any:
        return self.db.execute(sql, params, fetch)

    def close(self) -> None:
        self.db.close()

    # -- the operations ----------------------------------------------------------------------------------
    def check(self) -> None:
        """Open the table (fail fast on a bad database)."""
        self._execute("SELECT id FROM gateway_keys WHERE key_sha256 = ?", ("",), fetch="one")

    def create(self, tenant: str, *, name: str | None = None, feature: str | None = None,
               may_set_tenant: bool = False, budget_usd: float | None = None,
               budget_period: str | None = None) -> tuple[str, KeyRecord]:
        """A new key: (the key, shown once; its record)."""
        secret = new_secret()
        rec = KeyRecord(id=new_id(), key_sha256=sha256_hex(secret), prefix=secret[:SHOWN], tenant=tenant, name=name,
                        feature=feature, may_set_tenant=may_set_tenant, budget_usd=budget_usd,
                        budget_period=budget_period, created_at=time.time())
        self._execute(f"INSERT INTO gateway_keys ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                      (rec.id, rec.key_sha256, rec.prefix, rec.name, rec.tenant, rec.feature, int(rec.may_set_tenant),
                       rec.budget_usd, rec.budget_period, rec.created_at, None))
        return secret, rec

    def lookup(self, digest: str) -> KeyRecord | None:
        """The key with this SHA-256 (revoked ones included), or None."""
        row = self._execute(f"SELECT {', '.join(COLUMNS)} FROM gateway_keys WHERE key_sha256 = ?", (digest,),
                            fetch="one")
        return _record(row) if row is not None else None

    def get(self, key_id: str) -> KeyRecord | None:
        row = self._execute(f"SELECT {', '.join(COLUMNS)} FROM gateway_keys WHERE id = ?", (key_id,), fetch="one")
        return _record(row) if row is not None else None

    def list(self) -> list[KeyRecord]:
        rows = self._execute(f"SELECT {', '.join(COLUMNS)} FROM gateway_keys ORDER BY created_at", fetch="all")
        return [_record(r) for r in rows]

    def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke a key (kept, marked revoked; revoking twice keeps the first time). None for an unknown id."""
        self._execute("UPDATE gateway_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                      (time.time(), key_id))
        return self.get(key_id)

