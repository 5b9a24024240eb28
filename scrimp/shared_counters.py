"""Reserve-then-settle counters shared by every replica: budget spend (scrimp.budgets) and rate limits
(scrimp.ratelimit) both count with them.

Amounts are integers (nano-dollars for budgets, so they add exactly in Redis's Lua, doubles exact to 2**53:
$9M; requests or tokens for rate limits). A counter is one limit for one scope (a tenant, a key...) in one
period: a calendar counter (`day`, `month`: the period is part of its name) holds a running total; a rolling
counter (`window_s`) holds its entries with their times and sums those inside the window.

Each step is atomic across replicas: in Redis one Lua script per step (reserve, settle, read), in SQLite one
`BEGIN IMMEDIATE` transaction under a process lock. A reservation carries an expiry: one left behind by a
crash between reserve and settle stops counting once it expires, and is removed by the next step that sees it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from scrimp.formats.errors import APIError

log = logging.getLogger("scrimp.counters")

NANO = 1_000_000_000


def to_nano(usd: float) -> int:
    return round(usd * NANO)


@dataclass(frozen=True)
class Counter:
    """One budget counter: its storage key, hard limit (nano-USD; None: no hard limit), and for a rolling
    counter the window in seconds (None: a calendar period). `key_ttl_s` is how long the state is kept."""

    key: str
    hard_limit: int | None
    window_s: float | None
    key_ttl_s: int


@dataclass
class Reserved:
    ok: bool
    refused: int | None  # index of the counter that refused (ok False)
    used: list[tuple[int, int]]  # per counter (spent, reserved) before this reservation
    # a refusing rolling counter: seconds until enough of its spend leaves the window for this amount to fit
    # (None: a calendar counter, or spend leaving cannot make room: reservations in flight or too large an amount)
    retry_after_s: float | None = None


_LIVE = """
local function live_reserved(rk, now)
  local total = 0
  local all = redis.call('HGETALL', rk)
  for i = 1, #all, 2 do
    local sep = string.find(all[i + 1], ':', 1, true)
    local amount = tonumber(string.sub(all[i + 1], 1, sep - 1))
    local expires = tonumber(string.sub(all[i + 1], sep + 1))
    if expires <= now then redis.call('HDEL', rk, all[i]) else total = total + amount end
  end
  return total
end
-- seconds until enough entries leave the window to free `need`, or -1 when leaving cannot free that much
local function frees_in(sk, window, now, need)
  local entries = redis.call('ZRANGE', sk, 0, -1, 'WITHSCORES')
  local freed = 0
  for i = 1, #entries, 2 do
    local sep = string.find(entries[i], ':', 1, true)
    freed = freed + tonumber(string.sub(entries[i], 1, sep - 1))
    if freed >= need then return tonumber(entries[i + 1]) + window - now end
  end
  return -1
end
local function spent_of(sk, window, now)
  if window > 0 then
    redis.call('ZREMRANGEBYSCORE', sk, '-inf', now - window)
    local total = 0
    local entries = redis.call('ZRANGE', sk, 0, -1)
    for i = 1, #entries do
      local sep = string.find(entries[i], ':', 1, true)
      total = total + tonumber(string.sub(entries[i], 1, sep - 1))
    end
    return total
  end
  return tonumber(redis.call('GET', sk) or '0')
end
"""

# KEYS: per counter, its spent key and reservations key. ARGV: now, reservation id, expiry, amount, n, then per
# counter: hard limit (-1: none), window (0: calendar), key ttl.
_RESERVE = _LIVE + """
local now, rid, expires, amount, n = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local used = {}
for i = 1, n do
  local base = 5 + (i - 1) * 3
  local limit, window = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local spent = spent_of(KEYS[2 * i - 1], window, now)
  local reserved = live_reserved(KEYS[2 * i], now)
  used[#used + 1] = spent
  used[#used + 1] = reserved
  if limit >= 0 and spent + reserved + amount > limit then
    local retry = -1
    if window > 0 and reserved + amount <= limit then
      retry = frees_in(KEYS[2 * i - 1], window, now, spent + reserved + amount - limit)
    end
    -- Lua numbers come back as integers: milliseconds
    return {0, i, math.ceil(retry * 1000), unpack(used)}
  end
end
for i = 1, n do
  local ttl = tonumber(ARGV[5 + (i - 1) * 3 + 3])
  redis.call('HSET', KEYS[2 * i], rid, ARGV[4] .. ':' .. expires)
  redis.call('EXPIRE', KEYS[2 * i], ttl)
end
return {1, 0, 0, unpack(used)}
"""

# KEYS as for reserve. ARGV: now, reservation id, actual amount, n, then per counter: window, key ttl.
_SETTLE = _LIVE + """
local now, rid, amount, n = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, n do
  local window, ttl = tonumber(ARGV[4 + (i - 1) * 2 + 1]), tonumber(ARGV[4 + (i - 1) * 2 + 2])
  redis.call('HDEL', KEYS[2 * i], rid)
  if amount > 0 then
    if window > 0 then
      redis.call('ZADD', KEYS[2 * i - 1], now, ARGV[3] .. ':' .. rid)
    else
      redis.call('INCRBY', KEYS[2 * i - 1], ARGV[3])
    end
    redis.call('EXPIRE', KEYS[2 * i - 1], ttl)
  end
end
return 1
"""

# KEYS as for reserve. ARGV: now, n, then per counter: window.
_READ = _LIVE + """
local now, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, n do
  out[#out + 1] = spent_of(KEYS[2 * i - 1], tonumber(ARGV[2 + i]), now)
  out[#out + 1] = live_reserved(KEYS[2 * i], now)
end
return out
"""


def _pairs(flat: list[Any]) -> list[tuple[int, int]]:
    return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]


class RedisCounterStore:
    """Counters in Redis under `prefix`: `{prefix}{counter}:s` (spent) and `{prefix}{counter}:r` (reservations)."""

    def __init__(self, url: str, prefix: str = "scrimp:budget:") -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self._redis: Any = redis.from_url(url)
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)
        self._read = self._redis.register_script(_READ)

    def _keys(self, counters: list[Counter]) -> list[str]:
        keys = []
        for c in counters:
            keys += [f"{self.prefix}{c.key}:s", f"{self.prefix}{c.key}:r"]
        return keys

    async def reserve(self, counters: list[Counter], rid: str, amount: int, now: float, ttl_s: float) -> Reserved:
        args: list[Any] = [repr(now), rid, repr(now + ttl_s), amount, len(counters)]
        for c in counters:
            args += [c.hard_limit if c.hard_limit is not None else -1, c.window_s or 0, c.key_ttl_s]
        out = await self._reserve(keys=self._keys(counters), args=args)
        if int(out[0]):
            return Reserved(True, None, _pairs(out[3:]))
        retry_ms = int(out[2])
        return Reserved(False, int(out[1]) - 1, _pairs(out[3:]), retry_ms / 1000 if retry_ms >= 0 else None)

    async def settle(self, counters: list[Counter], rid: str, amount: int, now: float) -> None:
        args: list[Any] = [repr(now), rid, amount, len(counters)]
        for c in counters:
            args += [c.window_s or 0, c.key_ttl_s]
        await self._settle(keys=self._keys(counters), args=args)

    async def read(self, counters: list[Counter], now: float) -> list[tuple[int, int]]:
        if not counters:
            return []
        out = await self._read(keys=self._keys(counters), args=[repr(now), len(counters)]
                               + [c.window_s or 0 for c in counters])
        return _pairs(out)

    async def claim(self, key: str, ttl_s: float) -> bool:
        """True for the first caller of any replica to claim `key` within `ttl_s` (an alert sent once)."""
        return bool(await self._redis.set(f"{self.prefix}once:{key}", 1, nx=True, ex=max(1, int(ttl_s))))

    async def scan(self) -> list[str]:
        """The counter keys present (for listing), without the prefix."""
        found = set()
        async for key in self._redis.scan_iter(match=self.prefix + "*", count=500):
            key = key.decode() if isinstance(key, bytes) else key
            if not key.startswith(self.prefix + "once:"):
                found.add(key[len(self.prefix):].rsplit(":", 1)[0])
        return sorted(found)

    async def close(self) -> None:
        await self._redis.aclose()


_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS budget_spent (counter TEXT PRIMARY KEY, nano INTEGER NOT NULL, expires REAL)",
    "CREATE TABLE IF NOT EXISTS budget_window (counter TEXT NOT NULL, ts REAL NOT NULL, nano INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS budget_window_ct ON budget_window (counter, ts)",
    ("CREATE TABLE IF NOT EXISTS budget_reservations (counter TEXT NOT NULL, rid TEXT NOT NULL, "
    "nano INTEGER NOT NULL, expires REAL NOT NULL, PRIMARY KEY (counter, rid))"),
    "CREATE TABLE IF NOT EXISTS budget_once (key TEXT PRIMARY KEY, expires REAL NOT NULL)",
]


class SQLiteCounterStore:
    """Counters in a SQLite file: one transaction (`BEGIN IMMEDIATE`) per step under a lock, so the steps are
    atomic between the threads of this process and between processes sharing the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        for sql in _SCHEMA:
            self._conn.execute(sql)

    def _used(self, c: Counter, now: float) -> tuple[int, int]:
        db = self._conn
        db.execute("DELETE FROM budget_reservations WHERE counter = ? AND expires <= ?", (c.key, now))
        if c.window_s:
            db.execute("DELETE FROM budget_window WHERE counter = ? AND ts <= ?", (c.key, now - c.window_s))
            spent = db.execute("SELECT COALESCE(SUM(nano), 0) FROM budget_window WHERE counter = ?",
                               (c.key,)).fetchone()[0]
        else:
            row = db.execute("SELECT nano FROM budget_spent WHERE counter = ?", (c.key,)).fetchone()
            spent = row[0] if row else 0
        reserved = db.execute("SELECT COALESCE(SUM(nano), 0) FROM budget_reservations WHERE counter = ?",
                              (c.key,)).fetchone()[0]
        return int(spent), int(reserved)

    def _frees_in(self, c: Counter, now: float, need: int) -> float | None:
        freed = 0
        for ts, nano in self._conn.execute("SELECT ts, nano FROM budget_window WHERE counter = ? ORDER BY ts",
                                           (c.key,)):
            freed += nano
            if freed >= need:
                return ts + (c.window_s or 0) - now
        return None

    def _tx(self, fn: Any) -> Any:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return out

    async def reserve(self, counters: list[Counter], rid: str, amount: int, now: float, ttl_s: float) -> Reserved:
        def step() -> Reserved:
            used = []
            for i, c in enumerate(counters):
                spent, reserved = self._used(c, now)
                used.append((spent, reserved))
                if c.hard_limit is not None and spent + reserved + amount > c.hard_limit:
                    retry = None
                    if c.window_s and reserved + amount <= c.hard_limit:
                        retry = self._frees_in(c, now, spent + reserved + amount - c.hard_limit)
                    return Reserved(False, i, used, retry)
            for c in counters:
                self._conn.execute("INSERT OR REPLACE INTO budget_reservations VALUES (?, ?, ?, ?)",
                                   (c.key, rid, amount, now + ttl_s))
            return Reserved(True, None, used)

        return self._tx(step)

    async def settle(self, counters: list[Counter], rid: str, amount: int, now: float) -> None:
        def step() -> None:
            for c in counters:
                self._conn.execute("DELETE FROM budget_reservations WHERE counter = ? AND rid = ?", (c.key, rid))
                if amount <= 0:
                    continue
                if c.window_s:
                    self._conn.execute("INSERT INTO budget_window VALUES (?, ?, ?)", (c.key, now, amount))
                else:
                    self._conn.execute(
                        "INSERT INTO budget_spent VALUES (?, ?, ?) ON CONFLICT (counter) DO UPDATE SET "
                        "nano = nano + excluded.nano, expires = excluded.expires",
                        (c.key, amount, now + c.key_ttl_s))
            self._conn.execute("DELETE FROM budget_spent WHERE expires <= ?", (now,))

        self._tx(step)

    async def read(self, counters: list[Counter], now: float) -> list[tuple[int, int]]:
        return self._tx(lambda: [self._used(c, now) for c in counters])

    async def claim(self, key: str, ttl_s: float) -> bool:
        def step() -> bool:
            now = time.time()
            self._conn.execute("DELETE FROM budget_once WHERE expires <= ?", (now,))
            cur = self._conn.execute("INSERT OR IGNORE INTO budget_once VALUES (?, ?)", (key, now + ttl_s))
            return cur.rowcount == 1

        return self._tx(step)

    async def scan(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT counter FROM budget_spent UNION SELECT counter FROM budget_window "
                                      "UNION SELECT counter FROM budget_reservations").fetchall()
        return sorted(r[0] for r in rows)

    async def close(self) -> None:
        with self._lock:
            self._conn.close()


CounterStore = RedisCounterStore | SQLiteCounterStore


def open_counter_store(redis_url: str | None, prefix: str, path: str) -> CounterStore:
    """Redis when a URL is configured (replicas share it), else the SQLite file at `path`."""
    return RedisCounterStore(redis_url, prefix) if redis_url else SQLiteCounterStore(path)


OnStoreError = Literal["refuse", "allow"]


def _store_errors() -> tuple[type[Exception], ...]:
    from redis.exceptions import RedisError

    return (OSError, sqlite3.Error, RedisError)


# what a store that cannot be reached raises (a refused connection, a timeout, a locked or unreadable file)
STORE_ERRORS = _store_errors()


def store_failed(exc: Exception, what: str, policy: OnStoreError) -> None:
    """The counters' store could not be reached before a call. `refuse` (the default: a limit nobody can check
    is not a limit) answers 503 in the caller's shape; `allow` logs it and returns, and the call goes on
    unchecked."""
    if policy == "allow":
        log.warning("%s unavailable (%s: %s): the call goes on unchecked", what, type(exc).__name__, exc)
        return
    log.error("%s unavailable (%s: %s): the call is refused", what, type(exc).__name__, exc)
    raise APIError(503, f"The {what} could not be checked ({type(exc).__name__}), so the call was not sent; "
                        "retry shortly.", code=what.replace(" ", "_") + "_unavailable",
                   headers={"retry-after": "1"}) from exc


class CountingStore:
    """The counters' store of a stage whose options say where they live (`redis_url`, `prefix`, `path`): the
    budgets and the rate limits. Opened on first use (or at start), closed once."""

    options: Any
    store: CounterStore | None = None

    def new_store(self) -> CounterStore:
        o = self.options
        return open_counter_store(o.redis_url, o.prefix, o.path)

    def open_store(self) -> CounterStore:
        if self.store is None:
            self.store = self.new_store()
        return self.store

    async def close_store(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None
