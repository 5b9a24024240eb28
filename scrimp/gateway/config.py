"""Gateway configuration (YAML). A broken config is refused at start with the bad key named."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class ModelSpec:
    name: str  # what clients ask for
    provider: str  # "openai" | "anthropic"
    base_url: str  # OpenAI: ".../v1"; Anthropic: without "/v1" (the SDKs' conventions)
    api_key: str | None = None  # None: forward the client's own key
    tier: str = "mid"
    upstream_name: str | None = None  # the provider's name for it, when different
    fallbacks: list[str] = field(default_factory=list)
    max_tokens_field: str = "max_tokens"  # o-series / gpt-5 models want "max_completion_tokens"
    # request parameters the model refuses (dropped before sending, e.g. temperature for reasoning models;
    # "temperature+top_p" drops top_p when both are set, as recent Claude models require)
    rejects: list[str] = field(default_factory=list)

    @property
    def remote_name(self) -> str:
        return self.upstream_name or self.name


@dataclass
class UpstreamPolicy:
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.25
    max_backoff_s: float = 20.0


@dataclass
class GatewayConfig:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    upstream: UpstreamPolicy = field(default_factory=UpstreamPolicy)
    # Ordered stage list: [{"name": "ledger", ...section}, {"name": "exact_cache", ...}]
    stages: list[dict[str, Any]] = field(default_factory=list)
    max_body_bytes: int = 16 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8080

    def model(self, name: str) -> ModelSpec | None:
        return self.models.get(name)


DEFAULT_STAGES: list[dict[str, Any]] = [
    {"name": "ledger", "path": "scrimp-ledger.db"},
    {"name": "exact_cache", "backend": "sqlite", "path": "scrimp-cache.db"},
]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) in os.environ:
                return os.environ[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _check(data: dict[str, Any], where: str, types: dict[str, type | tuple[type, ...]], required: set[str]) -> None:
    for key in required:
        if key not in data:
            raise ConfigError(f"{where}: missing required key '{key}'")
    for key, value in data.items():
        if key not in types:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(types))})")
        if value is not None and not isinstance(value, types[key]) or isinstance(value, bool) and types[key] in (
                int, float, (int, float)):
            raise ConfigError(f"{where}.{key}: expected {_tname(types[key])}, got {value!r}")


def _tname(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return {"str": "a string", "int": "an integer", "float": "a number", "list": "a list",
            "dict": "a mapping", "bool": "true/false"}.get(t.__name__, t.__name__)


_MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "provider": str, "base_url": str, "api_key": str, "tier": str, "upstream_name": str,
    "fallbacks": list, "max_tokens_field": str, "rejects": list}
_UPSTREAM_KEYS: dict[str, type | tuple[type, ...]] = {
    "timeout_s": (int, float), "connect_timeout_s": (int, float), "retries": int, "backoff_s": (int, float),
    "max_backoff_s": (int, float)}
_TOP_KEYS: dict[str, type | tuple[type, ...]] = {
    "models": list, "upstream": dict, "stages": list, "max_body_bytes": int, "host": str, "port": int}


def parse(data: Any, *, source: str = "config") -> GatewayConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    data = _expand(data, source)
    _check(data, source, _TOP_KEYS, {"models"})
    cfg = GatewayConfig(max_body_bytes=data.get("max_body_bytes", 16 * 1024 * 1024),
                        host=data.get("host", "127.0.0.1"), port=data.get("port", 8080))
    for i, entry in enumerate(data["models"]):
        where = f"{source}: models[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping")
        _check(entry, where, _MODEL_KEYS, {"name", "provider", "base_url"})
        if entry["provider"] not in ("openai", "anthropic"):
            raise ConfigError(f"{where}.provider: must be 'openai' or 'anthropic', got {entry['provider']!r}")
        if entry.get("tier", "mid") not in ("premium", "mid", "cheap"):
            raise ConfigError(f"{where}.tier: must be premium, mid or cheap")
        if entry["name"] in cfg.models:
            raise ConfigError(f"{where}.name: duplicate model {entry['name']!r}")
        cfg.models[entry["name"]] = ModelSpec(**{**entry, "base_url": entry["base_url"].rstrip("/")})
    for spec in cfg.models.values():
        for fb in spec.fallbacks:
            if fb not in cfg.models:
                raise ConfigError(f"{source}: models[{spec.name}].fallbacks: unknown model {fb!r}")
    if "upstream" in data:
        _check(data["upstream"], f"{source}: upstream", _UPSTREAM_KEYS, set())
        cfg.upstream = UpstreamPolicy(**data["upstream"])
    stages = data.get("stages", DEFAULT_STAGES)
    from scrimp.gateway.stages import REGISTRY

    for i, entry in enumerate(stages):
        if isinstance(entry, str):
            entry = {"name": entry}
        elif isinstance(entry, dict) and len(entry) == 1 and "name" not in entry:
            (name, section), = entry.items()
            entry = {"name": name, **(section or {})}
        if not isinstance(entry, dict) or entry.get("name") not in REGISTRY:
            raise ConfigError(f"{source}: stages[{i}]: unknown stage {entry!r} (known: {', '.join(REGISTRY)})")
        cfg.stages.append(entry)
    return cfg


def load(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    return parse(data, source=str(path))


def simulated(sim_url: str, *, stages: list[dict[str, Any]] | None = None) -> GatewayConfig:
    """Every default simulator model, upstream at `sim_url` (for `scrimp serve --simulate`, the demo, tests)."""
    from scrimp.sim.config import default_models

    models = []
    for m in default_models():
        if m.kind != "chat":
            continue
        base = sim_url + "/v1" if m.provider == "openai" else sim_url
        models.append({"name": m.name, "provider": m.provider, "base_url": base, "api_key": "sim", "tier": m.tier})
    models.append({"name": "text-embedding-3-small", "provider": "openai", "base_url": sim_url + "/v1",
                   "api_key": "sim", "tier": "cheap"})
    data: dict[str, Any] = {"models": models}
    if stages is not None:
        data["stages"] = stages
    return parse(data, source="simulated")
