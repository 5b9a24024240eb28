"""What a prompt costs with the provider's prompt cache, in units of the model's plain input-token price.

The rates come from the prompt-cache planner's per-model profiles (scrimp/promptcache/profiles.yaml): on
Anthropic models the planner puts a breakpoint on the end of the conversation, so what is not read from the
cache is written at the write premium (1.25x for the 5-minute entry); OpenAI caches automatically with no
premium. Below the model's minimum cacheable length nothing is cached.
"""

from __future__ import annotations

from dataclasses import dataclass

from scrimp.promptcache.profiles import Profiles


@dataclass(frozen=True)
class CacheRates:
    read: float = 1.0
    write: float = 1.0
    min_tokens: int = 0

    def cost(self, tokens: int, cached: int) -> float:
        """A prompt of `tokens` whose first `cached` tokens are in the provider's cache."""
        if tokens < self.min_tokens or self.min_tokens == 0 and self.read == self.write == 1.0:
            return float(tokens)
        cached = min(cached, tokens)
        return cached * self.read + (tokens - cached) * self.write


NO_CACHE = CacheRates()


def rates_for(profiles: Profiles, provider: str | None, model: str) -> CacheRates:
    if provider == "anthropic":
        p = profiles.for_model("anthropic", model)
        return CacheRates(p.read, p.write_5m, p.min_tokens)
    if provider == "openai":
        p = profiles.for_model("openai", model)
        return CacheRates(p.read, 1.0, p.min_tokens)
    return NO_CACHE
