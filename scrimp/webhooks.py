"""Webhooks scrimp posts (budget alerts, finished batch jobs): a JSON body signed with an HMAC-SHA256 of the body,
`x-scrimp-signature: sha256=<hex>`, so the receiver can check it came from its gateway, retried with backoff
until a 2xx answer or the attempts run out."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

import aiohttp
import orjson

log = logging.getLogger("scrimp.webhooks")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver(url: str, payload: dict[str, Any], secret: str | None, *, attempts: int = 5,
                  backoff_s: float = 1.0, timeout_s: float = 10.0) -> bool:
    """POST `payload` to `url` until a 2xx answer (True) or `attempts` failures (False, logged)."""
    body = orjson.dumps(payload)
    headers = {"content-type": "application/json"}
    if secret:
        headers["x-scrimp-signature"] = signature(secret, body)
    error = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
    log.error("webhook %s not delivered after %d attempts (%s)", url, attempts, error)
    return False
