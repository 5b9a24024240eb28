"""Prices from the maintained `genai-prices` table, for canonical usage.

genai-prices counts `input_tokens` as *all* input tokens, cache reads and writes included (OpenAI's
convention), and prices the cached parts at their own rates; canonical Usage keeps the parts apart, so this is
the one place the two conventions meet.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from scrimp.canonical import Usage

BATCH_DISCOUNT = 0.5  # both providers' Batch APIs bill half price


class UnknownPrice(LookupError):
    pass


@dataclass(frozen=True)
class PriceOverride:
    """USD per million tokens, for models the table does not know (self-hosted, fine-tunes)."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


_overrides: dict[str, PriceOverride] = {}


def set_override(model: str, price: PriceOverride) -> None:
    _overrides[model] = price


@lru_cache(maxsize=4096)
def _price(model: str, provider: str | None, inp: int, out: int, read: int, w5: int, w1: int) -> float:
    usage = PriceUsage(input_tokens=inp + read + w5 + w1, output_tokens=out, cache_read_tokens=read or None,
                       cache_write_tokens=(w5 + w1) or None, cache_write_1h_tokens=w1 or None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = calc_price(usage, model_ref=model, provider_id=provider, genai_request_timestamp=datetime.now(UTC))
    except LookupError as exc:
        raise UnknownPrice(f"no price known for model {model!r}; set a price override in the config") from exc
    return float(result.total_price)


def cost(model: str, provider: str | None, usage: Usage, *, batch: bool = False) -> float:
    """What a call with this usage costs, in USD."""
    override = _overrides.get(model)
    if override is not None:
        read_rate = override.cache_read if override.cache_read is not None else override.input
        write_rate = override.cache_write if override.cache_write is not None else override.input
        total = (usage.input * override.input + usage.output * override.output + usage.cache_read * read_rate
                 + usage.cache_write * write_rate) / 1e6
    else:
        try:
            total = _price(model, provider, usage.input, usage.output, usage.cache_read, usage.cache_write_5m,
                           usage.cache_write_1h)
        except UnknownPrice:
            if provider is None:
                raise
            total = _price(model, None, usage.input, usage.output, usage.cache_read, usage.cache_write_5m,
                           usage.cache_write_1h)
    return total * (BATCH_DISCOUNT if batch else 1.0)


def uncached(usage: Usage) -> Usage:
    """The same call with every input token at the full input price (no prompt caching)."""
    return Usage(input=usage.total_input, output=usage.output, reasoning=usage.reasoning)
