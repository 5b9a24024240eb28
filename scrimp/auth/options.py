"""The `auth:` section of scrimp.yaml, checked like a stage's options (a misspelt key is refused with its line)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from scrimp.auth.keys import check_name, config_key_id, sha256_hex
from scrimp.options import Where

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class ConfigKey:
    """A gateway key listed in the config (for deployments without a database): its SHA-256, or the key itself
    (usually `${ENV_VAR}`), and what it is bound to."""

    tenant: str
    key: str | None = None  # the key itself, e.g. ${SCRIMP_KEY_BILLING}
    key_sha256: str | None = None  # or its SHA-256, hex (`scrimp keys generate` prints both)
    id: str | None = None  # what the ledger records (default: "cfg_" + the first 12 hex digits of the hash)
    name: str | None = None
    feature: str | None = None  # every call with this key is attributed to this feature
    may_set_tenant: bool = False  # an application server serving many tenants may name them per request
    budget_usd: float | None = None  # enforced by the budgets stage (its key_budgets option)
    period: Literal["day", "month"] | None = None

    def check(self, where: Where) -> None:
        for what in ("tenant", "feature"):
            try:
                if getattr(self, what) is not None:
                    check_name(getattr(self, what), what)
            except ValueError as exc:
                raise where.key(what).error(str(exc)) from exc
        if (self.key is None) == (self.key_sha256 is None):
            raise where.error("give either 'key' (e.g. ${ENV_VAR}) or 'key_sha256', not both and not neither")
        if self.key is not None and len(self.key) < 16:
            raise where.key("key").error("too short to be a key (at least 16 characters)")
        if self.key_sha256 is not None:
            self.key_sha256 = self.key_sha256.strip().lower()
            if not _SHA256.fullmatch(self.key_sha256):
                raise where.key("key_sha256").error("expected 64 hex digits (the SHA-256 of the key)")
        if (self.budget_usd is None) != (self.period is None):
            raise where.error("budget_usd and period go together")


@dataclass
class AuthOptions:
    """`auth:` in scrimp.yaml (docs/auth.md)."""

    required: bool = False  # refuse (401) every request without a valid gateway key
    admin_key: str | None = None  # for the admin endpoints (router status and reset, key management, /metrics)
    admin_key_sha256: str | None = None  # or its SHA-256
    protect_metrics: bool = False  # GET /metrics needs the admin key too
    key_cache_ttl_s: float = 5.0  # how long a key looked up in the database is trusted (a revoke takes this long)
    keys: list[ConfigKey] = field(default_factory=list)

    def check(self, where: Where) -> None:
        if self.admin_key is not None and len(self.admin_key) < 16:
            raise where.key("admin_key").error("too short for an admin key (at least 16 characters; is its "
                                               "environment variable empty?)")
        if self.admin_key is not None and self.admin_key_sha256 is not None:
            raise where.key("admin_key_sha256").error("give admin_key or admin_key_sha256, not both")
        if self.admin_key_sha256 is not None:
            self.admin_key_sha256 = self.admin_key_sha256.strip().lower()
            if not _SHA256.fullmatch(self.admin_key_sha256):
                raise where.key("admin_key_sha256").error("expected 64 hex digits (the SHA-256 of the key)")
        if self.protect_metrics and self.admin_key is None and self.admin_key_sha256 is None:
            raise where.key("protect_metrics").error("needs an admin_key: /metrics would be closed to everyone")
        if not 0 <= self.key_cache_ttl_s <= 3600:
            raise where.key("key_cache_ttl_s").error("expected 0 to 3600 seconds")
        seen: dict[str, int] = {}
        ids: dict[str, int] = {}
        for i, k in enumerate(self.keys):
            digest = k.key_sha256 or sha256_hex(k.key or "")
            if digest in seen:
                raise where.key("keys").item(i).error(f"the same key as keys[{seen[digest]}]")
            seen[digest] = i
            kid = k.id or config_key_id(digest)
            if kid in ids:
                raise where.key("keys").item(i).key("id").error(f"id {kid!r} is already keys[{ids[kid]}]'s")
            ids[kid] = i
