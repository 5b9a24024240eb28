"""The batch lane's config section (`- batch: {...}` in `stages`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from scrimp.options import Where

_WINDOW = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def window_seconds(text: str) -> float | None:
    """'90s', '30m', '1h', '24h', '1d' -> seconds; None when it is not such a duration."""
    m = _WINDOW.fullmatch(text.strip().lower())
    return float(m.group(1)) * _UNIT[m.group(2)] if m else None


@dataclass
class FeaturePolicy:
    """What the lane does with every call of one feature (x-scrimp-feature), whatever its headers say."""

    defer: str | None = None  # a window such as "1h": queued for the provider's Batch API
    flex: bool = False  # OpenAI models: sent now at the flex service tier (batch price, slower)
    on_flex_busy: Literal["standard", "batch"] = "standard"  # flex answered 429: the standard tier, or the queue

    def check(self, where: Where) -> None:
        if self.defer is not None and window_seconds(self.defer) is None:
            raise where.key("defer").error(f"expected a duration such as '1h' or '24h', got {self.defer!r}")
        if self.defer is not None and self.flex:
            raise where.key("flex").error("a feature is either deferred (defer) or sent at the flex tier, not both")


@dataclass
class BatchOptions:
    max_wait_s: float = 60.0  # a model's queue is flushed once its oldest line has waited this long
    max_lines: int | None = None  # lines per provider batch (default: the provider's limit)
    max_bytes: int | None = None  # bytes per provider batch (default: the provider's limit)
    completion_window: str = "24h"  # asked of the provider (OpenAI accepts only 24h)
    poll_s: float = 10.0  # how often submitted batches are asked for their status
    tick_s: float = 0.5  # the worker's beat: flush checks, webhook retries
    lease_s: float = 30.0  # with several replicas, the one holding the lease submits and polls
    record_grace_s: float = 30.0  # a finished line nobody waits for is recorded by the worker after this
    max_wait_for_answer_s: float = 86400.0  # a held-open request gives up (504) after this; the line still ends
    headers: bool = True  # honour x-scrimp-defer on requests
    # the providers' Batch APIs through the gateway (/v1/files, /v1/batches, /v1/messages/batches): for callers'
    # keys, for the admin key only (budgets and rate limits do not check these batches), or not served
    passthrough: Literal["callers", "admin", "off"] = "callers"
    webhook_secret: str | None = None  # signs webhook bodies (HMAC-SHA256); required for webhooks
    webhook_attempts: int = 10
    webhook_backoff_s: float = 2.0  # doubled after each failed delivery
    webhook_timeout_s: float = 10.0
    # hosts a job's webhook may name (exact host names); empty: any. A caller's URL is fetched by the gateway,
    # so deployments with untrusted callers list their receivers here.
    webhook_hosts: list[str] = field(default_factory=list)
    max_job_requests: int = 100_000
    retention_days: float = 7.0  # answered, recorded lines (and finished jobs) are kept this long, then deleted
    features: dict[str, FeaturePolicy] = field(default_factory=dict)

    def check(self, where: Where) -> None:
        if window_seconds(self.completion_window) is None:
            raise where.key("completion_window").error("expected a duration such as '24h'")
        for key in ("max_wait_s", "poll_s", "tick_s", "lease_s"):
            if getattr(self, key) <= 0:
                raise where.key(key).error("must be above 0")
        if self.lease_s <= self.tick_s:
            raise where.key("lease_s").error("must be longer than tick_s (the lease is renewed every tick)")
        for key in ("max_lines", "max_bytes"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise where.key(key).error("must be at least 1")
