"""GPU presets for `scrimp calc selfhost --gpu NAME`: purchase price (USD) and board power (W). List prices
change; pass --gpu-price / --gpu-watts for yours. The A100 and RTX 5090 figures are those of Pan et al.
(arXiv 2509.18101, Table II), whose break-even table the tests reproduce."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    name: str
    price_usd: float
    watts: float
    memory_gb: int


GPUS = {g.name: g for g in [
    GPU("rtx-5090", 2_000, 575, 32),
    GPU("rtx-4090", 1_600, 450, 24),
    GPU("l40s", 8_000, 350, 48),
    GPU("a100-80gb", 15_000, 400, 80),
    GPU("h100-80gb", 30_000, 700, 80),
]}
