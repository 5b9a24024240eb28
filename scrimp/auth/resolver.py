"""From a presented key to the key's record: the config's keys first, then the database, through an in-process
cache with a short TTL (`auth.key_cache_ttl_s`, 5 s by default).

A key looked up in the database is trusted for that long, and so is an unknown one (so a flood of bad keys
costs one query per key per TTL): a revoke takes effect on every replica within the TTL, the replica that
revoked it at once. Concurrent requests with the same uncached key share one query."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from scrimp.auth.keys import PREFIX, SHOWN, KeyRecord, KeyStore, config_key_id, sha256_hex
from scrimp.auth.options import AuthOptions

log = logging.getLogger("scrimp.auth")


class KeyStoreUnavailable(RuntimeError):
    """The database holding the keys could not be read: the request is refused (503), never let through."""


class KeyResolver:
    max_cached = 10_000  # keys (known or not) remembered per process

    def __init__(self, options: AuthOptions, store: KeyStore | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.store = store
        self.clock = clock
        self.config_keys: dict[str, KeyRecord] = {}
        for k in options.keys:
            digest = k.key_sha256 or sha256_hex(k.key or "")
            self.config_keys[digest] = KeyRecord(
                id=k.id or config_key_id(digest), key_sha256=digest,
                prefix=k.key[:SHOWN] if k.key and k.key.startswith(PREFIX) else "", tenant=k.tenant, name=k.name, feature=k.feature,
                may_set_tenant=k.may_set_tenant, budget_usd=k.budget_usd, budget_period=k.period, source="config")
        admin = options.admin_key_sha256 or (sha256_hex(options.admin_key) if options.admin_key else None)
        self._admin_digest = admin.encode() if admin else None
        self._cache: OrderedDict[str, tuple[float, KeyRecord | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._generation = 0  # bumped by forget(): a lookup begun before it does not cache its result
        self.lookups = 0  # database queries made (the tests and /metrics-minded readers)

    @property
    def has_admin(self) -> bool:
        return self._admin_digest is not None

    def is_admin(self, secret: str) -> bool:
        return self._admin_digest is not None and hmac.compare_digest(sha256_hex(secret).encode(),
                                                                       self._admin_digest)

    async def resolve(self, secret: str) -> KeyRecord | None:
        """The key's record (a revoked one included: the caller tells it apart), or None for an unknown key.
        Raises KeyStoreUnavailable when the database cannot be read."""
        digest = sha256_hex(secret)
        rec = self.config_keys.get(digest)
        if rec is not None or self.store is None:
            return rec
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        pending = self._inflight.get(digest)
        if pending is None:
            # one lookup per key at a time, owned by no request: a caller that hangs up (its task cancelled)
            # cannot leave the others waiting on a lookup that never ends
            pending = self._inflight[digest] = asyncio.ensure_future(self._lookup(digest, self._generation))
        return await asyncio.shield(pending)

    async def _lookup(self, digest: str, generation: int) -> KeyRecord | None:
        assert self.store is not None
        try:
            self.lookups += 1
            rec = await asyncio.to_thread(self.store.lookup, digest)
        except Exception as exc:
            log.error("gateway keys could not be read from %s: %s: %s", self.store.where, type(exc).__name__, exc)
            raise KeyStoreUnavailable("the gateway's key store cannot be read") from exc
        finally:
            self._inflight.pop(digest, None)
        if generation == self._generation:  # not read before a forget(): a revoke here takes effect at once
            self._remember(digest, rec)
        return rec

    def _remember(self, digest: str, rec: KeyRecord | None) -> None:
        self._cache[digest] = (self.clock() + self.options.key_cache_ttl_s, rec)
        self._cache.move_to_end(digest)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)

    def forget(self, digest: str | None = None) -> None:
        """Drop a cached key (this replica revoked or created it), or every cached key."""
        self._generation += 1  # a lookup already under way does not cache what it read
        if digest is None:
            self._cache.clear()
        else:
            self._cache.pop(digest, None)

    def listed(self) -> list[KeyRecord]:
        """Every key: the database's, then the config's."""
        stored = self.store.list() if self.store is not None else []
        return stored + list(self.config_keys.values())

    async def start(self) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.check)  # fail fast on a database the keys cannot live in

    async def close(self) -> None:
        if self.store is not None:
            self.store.close()
