"""A finding: one lever a team could turn on, for one feature, with the dollars it would save over the audited
period (and per 30 days), the config line or command that turns it on, and the evidence behind the figure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scrimp import pricing
from scrimp.canonical import Usage


@dataclass
class Finding:
    check: str  # cacheable_prompts | temperature | volatile_prefix | cheaper_model | untested_model |
    #             trimmable_input | no_max_tokens | batchable | offload
    feature: str
    title: str
    saving_usd: float  # over the audited period
    saving_month_usd: float  # projected to 30 days
    lever: str  # the stage that makes the saving
    how: str  # the config line or command that turns it on
    confidence: str = "measured"  # measured (from this traffic) | estimate | untested (an upper bound)
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def usage_of(row: dict[str, Any]) -> Usage:
    return Usage(input=int(row["input_tokens"] or 0), output=int(row["output_tokens"] or 0),
                 cache_read=int(row["cache_read_tokens"] or 0), cache_write_5m=int(row["cache_write_5m_tokens"] or 0),
                 cache_write_1h=int(row["cache_write_1h_tokens"] or 0))


def price(model: str | None, provider: str | None, usage: Usage) -> float:
    """USD for this usage; 0 for a model with no known price (the audit says so rather than fail)."""
    if not model:
        return 0.0
    try:
        return pricing.cost(model, provider or None, usage)
    except pricing.UnknownPrice:
        return 0.0


def provider_of(model: str) -> str | None:
    return "anthropic" if model.startswith("claude") else "openai" if model.startswith(("gpt", "o1", "o3", "o4")) \
        else None


def answered(row: dict[str, Any]) -> bool:
    """A provider answered it (not a cache hit, not an offloaded answer, not a failure before any answer)."""
    return (row["cache"] in (None, "miss") and bool(row["served_model"])
            and row["provider"] not in (None, "cache", "offload"))
