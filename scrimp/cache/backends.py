"""Key-value stores for the exact cache: SQLite (embedded default) and Redis (shared by replicas).

Both keep a TTL per entry and a maximum number of entries, evicting the least recently used; optionally also a
maximum per tenant (keys start with the tenant's slug and ':'), so that one tenant filling the cache evicts its
own entries, not its neighbours'."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol


class CacheBackend(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...
    async def delete_prefix(self, prefix: str) -> int: ...
    async def close(self) -> None: ...


class SQLiteBackend:
    """One table; calls are sub-millisecond point queries, so they run inline on the event loop. A small
    in-process tier keeps the hottest entries (a repeated prompt is the common case) so a hit usually costs
    no SQL at all; it honours each entry's expiry and is cleared with the table."""

    HOT_ENTRIES = 4096

    def __init__(self, path: str | Path, max_entries: int = 100_000, max_per_tenant: int | None = None) -> None:
        self._hot: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._touched: dict[str, float] = {}  # hot-tier hits since the last eviction: key -> time used
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.max_entries = max_entries
        self.max_per_tenant = max_per_tenant
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS exact_cache (key TEXT PRIMARY KEY, value BLOB NOT NULL, "
                         "expires REAL NOT NULL, used REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS exact_cache_used ON exact_cache (used)")
        self._lock = threading.Lock()
        self._writes = 0

    def _remember(self, key: str, value: bytes, expires: float) -> None:
        self._hot[key] = (value, expires)
        self._hot.move_to_end(key)
        if len(self._hot) > self.HOT_ENTRIES:
            self._hot.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        now = time.time()
        hot = self._hot.get(key)
        if hot is not None:
            if hot[1] > now:
                self._hot.move_to_end(key)
                self._touched[key] = now  # written to the table before the next eviction reads `used`
                return hot[0]
            del self._hot[key]
        with self._lock:
            row = self._db.execute("SELECT value, expires FROM exact_cache WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            if row[1] <= now:
                self._db.execute("DELETE FROM exact_cache WHERE key = ?", (key,))
                return None
            self._db.execute("UPDATE exact_cache SET used = ? WHERE key = ?", (now, key))
        value = bytes(row[0])
        self._remember(key, value, row[1])
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO exact_cache (key, value, expires, used) VALUES (?, ?, ?, ?)",
                             (key, value, now + ttl_s, now))
            self._remember(key, value, now + ttl_s)
            self._writes += 1
            if self._writes % 64 == 0 or self.max_entries < 1000:
                self._evict(now)
            if self.max_per_tenant is not None and (self._writes % 16 == 0 or self.max_per_tenant < 1000):
                self._evict_tenant(key)

    def _evict_tenant(self, key: str) -> None:
        """Past the tenant's share: its own least recently used entries go (a key range: the primary key's index)."""
        assert self.max_per_tenant is not None
        self._write_touched()
        lo, hi = _tenant_range(key)
        (count,) = self._db.execute("SELECT COUNT(*) FROM exact_cache WHERE key >= ? AND key < ?", (lo, hi)).fetchone()
        if count <= self.max_per_tenant:
            return
        old = [k for (k,) in self._db.execute("SELECT key FROM exact_cache WHERE key >= ? AND key < ? ORDER BY used "
                                              "LIMIT ?", (lo, hi, count - self.max_per_tenant))]
        self._db.executemany("DELETE FROM exact_cache WHERE key = ?", [(k,) for k in old])
        for k in old:
            self._hot.pop(k, None)

    def _write_touched(self) -> None:
        if self._touched:
            self._db.executemany("UPDATE exact_cache SET used = ? WHERE key = ?",
                                 [(t, k) for k, t in self._touched.items()])
            self._touched.clear()

    def _evict(self, now: float) -> None:
        self._write_touched()
        self._db.execute("DELETE FROM exact_cache WHERE expires <= ?", (now,))
        (count,) = self._db.execute("SELECT COUNT(*) FROM exact_cache").fetchone()
        if count > self.max_entries:
            self._hot.clear()  # evicted rows must not live on here
            self._db.execute("DELETE FROM exact_cache WHERE key IN (SELECT key FROM exact_cache ORDER BY used "
                             "LIMIT ?)", (count - self.max_entries,))

    async def delete_prefix(self, prefix: str) -> int:
        for key in [k for k in self._hot if k.startswith(prefix)]:
            del self._hot[key]
        with self._lock:
            cur = self._db.execute("DELETE FROM exact_cache WHERE key LIKE ? ESCAPE '\\'",
                                   (prefix.replace("%", "\\%").replace("_", "\\_") + "%",))
            return cur.rowcount

    async def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM exact_cache").fetchone()[0]

    async def close(self) -> None:
        self._db.close()


class RedisBackend:
    """Entries as keys with an expiry; a sorted set of last-use times gives LRU eviction past max_entries."""

    def __init__(self, url: str, prefix: str = "scrimp:exact:", max_entries: int = 100_000,
                 max_per_tenant: int | None = None) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)
        self.prefix = prefix
        self.max_entries = max_entries
        self.max_per_tenant = max_per_tenant
        self._lru = prefix + "__lru__"

    def _tenant_lru(self, key: str) -> str:
        return f"{self._lru}:{key.split(':', 1)[0]}"

    async def get(self, key: str) -> bytes | None:
        full = self.prefix + key
        pipe = self._redis.pipeline()
        pipe.get(full)
        pipe.zadd(self._lru, {full: time.time()}, xx=True)
        if self.max_per_tenant is not None:
            pipe.zadd(self._tenant_lru(key), {full: time.time()}, xx=True)
        value, *_ = await pipe.execute()
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        full = self.prefix + key
        now = time.time()
        pipe = self._redis.pipeline()
        pipe.set(full, value, px=max(1, int(ttl_s * 1000)))
        if self.max_per_tenant is not None:
            pipe.zadd(self._tenant_lru(key), {full: now})
            pipe.zcard(self._tenant_lru(key))
        pipe.zadd(self._lru, {full: now})
        pipe.zcard(self._lru)
        *out, size = await pipe.execute()
        if self.max_per_tenant is not None and out[-2] > self.max_per_tenant:
            evicted = await self._redis.zpopmin(self._tenant_lru(key), out[-2] - self.max_per_tenant)
            if evicted:
                keys = [k for k, _ in evicted]
                await self._redis.delete(*keys)
                await self._redis.zrem(self._lru, *keys)
        if size > self.max_entries:
            evicted = await self._redis.zpopmin(self._lru, size - self.max_entries)
            if evicted:
                await self._redis.delete(*[k for k, _ in evicted])

    async def delete_prefix(self, prefix: str) -> int:
        n = 0
        async for key in self._redis.scan_iter(match=self.prefix + prefix + "*", count=500):
            n += await self._redis.delete(key)
            await self._redis.zrem(self._lru, key)
            if self.max_per_tenant is not None:
                plain = (key.decode() if isinstance(key, bytes) else key)[len(self.prefix):]
                await self._redis.zrem(self._tenant_lru(plain), key)
        return n

    async def count(self) -> int:
        return int(await self._redis.zcard(self._lru))

    async def close(self) -> None:
        await self._redis.aclose()


def _tenant_range(key: str) -> tuple[str, str]:
    """The keys of `key`'s tenant: from '<slug>:' up to (not including) '<slug>;' (';' follows ':')."""
    slug = key.split(":", 1)[0]
    return slug + ":", slug + ";"
