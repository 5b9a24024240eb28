"""Self-hosting against an API, after Pan et al. (arXiv 2509.18101, section VI), with utilisation and
operations cost added:

    hardware        C_hw   = N_gpu * price_gpu                                   (one-time)
    capacity        Q      = throughput_tok_s * 3600 * hours_per_month            (tokens a month the GPUs can make)
    used            V      = min(volume, Q * utilisation)                        (tokens a month actually served)
    electricity     C_el   = N_gpu * watts / 1000 * hours_per_month * usd_per_kwh * pue
    local / month   C_loc  = C_el + ops_usd_per_month
    API / month     C_api  = V * api_usd_per_token                                (the same tokens through the API)
    break-even      t*     = C_hw / (C_api - C_loc)   months                      (never, when C_api <= C_loc)
    break-even volume V*   = (C_hw / amortisation_months + C_loc) / api_usd_per_token   tokens a month

`api_usd_per_token` is the blended price of the API's tokens: from the paper's 1:2 input:output mix by default
(`blended_price`), or the ledger's own mix of uncached input, cached input and output."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


def blended_price(input_usd_per_mtok: float, output_usd_per_mtok: float, input_share: float = 1 / 3,
                  cached_share: float = 0.0, cached_usd_per_mtok: float | None = None) -> float:
    """USD per token for a mix: `input_share` of the tokens are input (of which `cached_share` read from a
    prompt cache), the rest output. Pan et al. use 1/3 input, 2/3 output."""
    cached = cached_usd_per_mtok if cached_usd_per_mtok is not None else input_usd_per_mtok
    per_input = (1 - cached_share) * input_usd_per_mtok + cached_share * cached
    return (input_share * per_input + (1 - input_share) * output_usd_per_mtok) / 1e6


@dataclass
class SelfHost:
    gpus: int
    gpu_price_usd: float
    gpu_watts: float
    throughput_tok_s: float  # the deployment's tokens per second (all GPUs together)
    api_usd_per_token: float
    hours_per_month: float = 176.0  # 8 h a business day, 22 days (Pan et al.'s capacity figures)
    usd_per_kwh: float = 0.15
    pue: float = 1.0  # data-centre overhead on power (cooling); 1.0 = the GPUs' draw only
    ops_usd_per_month: float = 0.0  # staff, hosting, maintenance
    utilisation: float = 1.0  # share of the capacity traffic fills
    volume_tokens_per_month: float | None = None  # your tokens a month (None: the capacity, as in the paper)
    amortisation_months: float = 36.0

    def result(self) -> dict[str, Any]:
        hardware = self.gpus * self.gpu_price_usd
        capacity = self.throughput_tok_s * 3600 * self.hours_per_month
        usable = capacity * self.utilisation
        volume = usable if self.volume_tokens_per_month is None else self.volume_tokens_per_month
        served = min(volume, usable)
        electricity = self.gpus * self.gpu_watts / 1000 * self.hours_per_month * self.usd_per_kwh * self.pue
        local = electricity + self.ops_usd_per_month
        api = served * self.api_usd_per_token
        months = hardware / (api - local) if api > local else None
        monthly_owned = hardware / self.amortisation_months + local
        breakeven_volume = monthly_owned / self.api_usd_per_token if self.api_usd_per_token > 0 else None
        return {"inputs": asdict(self), "hardware_usd": hardware, "capacity_tokens_per_month": capacity,
                "served_tokens_per_month": served, "unserved_tokens_per_month": max(0.0, volume - usable),
                "electricity_usd_per_month": electricity, "local_usd_per_month": local, "api_usd_per_month": api,
                "break_even_months": months, "owned_usd_per_month": monthly_owned,
                "break_even_tokens_per_month": breakeven_volume,
                "break_even_within_capacity": breakeven_volume is not None and breakeven_volume <= usable,
                "saving_usd_per_month_after_amortisation": api - monthly_owned}
