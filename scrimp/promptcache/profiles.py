"""Per-model prompt-cache profiles, loaded from data (profiles.yaml, overridable in config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class CacheProfile:
    provider: str
    min_tokens: int = 1024
    max_breakpoints: int = 4
    lookback_blocks: int = 20
    write_5m: float = 1.25  # multipliers of the base input price
    write_1h: float = 2.0
    read: float = 0.1
    ttls: tuple[str, ...] = ("5m", "1h")
    explicit_breakpoints: bool = True
    prompt_cache_key: bool = False


@dataclass
class Profiles:
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None) -> Profiles:
        text = resources.files("scrimp.promptcache").joinpath("profiles.yaml").read_text()
        data = yaml.safe_load(text)
        for provider, section in (overrides or {}).items():
            base = data.setdefault(provider, {"defaults": {}, "models": []})
            base["defaults"].update(section.get("defaults", {}))
            base["models"] = list(section.get("models", [])) + base["models"]  # overrides first
        return cls(data)

    def for_model(self, provider: str, model: str) -> CacheProfile:
        section = self.data.get(provider, {})
        values = dict(section.get("defaults", {}))
        best = ""
        for entry in section.get("models", []):
            if model.startswith(entry["match"]) and len(entry["match"]) > len(best):
                best = entry["match"]
                chosen = entry
        if best:
            values.update({k: v for k, v in chosen.items() if k != "match"})
        if provider == "openai":
            values.setdefault("explicit_breakpoints", False)
        if "ttls" in values:
            values["ttls"] = tuple(values["ttls"])
        return CacheProfile(provider=provider, **values)
