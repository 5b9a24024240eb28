"""Gateway configuration (YAML). A broken config is refused at start with the bad key named."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scrimp.auth.options import AuthOptions
from scrimp.models import ModelSpec
from scrimp.options import ConfigError, Where, line_map, parse_options
from scrimp.stage import check_section, stage_class


@dataclass
class UpstreamPolicy:
    timeout_s: float = 120.0  # a non-streamed call's total deadline
    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float | None = None  # a stream: request sent -> first event (None: timeout_s)
    idle_timeout_s: float | None = None  # a stream: longest silence between events (None: timeout_s)
    retries: int = 2
    backoff_s: float = 0.25
    max_backoff_s: float = 20.0


@dataclass
class GatewayConfig:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    upstream: UpstreamPolicy = field(default_factory=UpstreamPolicy)
    # Ordered stage list: [{"name": "ledger", ...section}, {"name": "exact_cache", ...}]
    stages: list[dict[str, Any]] = field(default_factory=list)
    stage_wheres: list[Where] = field(default_factory=list)  # where each section is, for errors at build
    max_body_bytes: int = 16 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8080
    auth: AuthOptions | None = None  # gateway keys and tenancy (docs/auth.md); None: no auth, as before

    def model(self, name: str) -> ModelSpec | None:
        return self.models.get(name)


# With no `stages` in the config: every lever that never changes an answer.
DEFAULT_STAGES: list[dict[str, Any]] = [
    {"name": "ledger", "path": "scrimp-ledger.db"},
    {"name": "exact_cache", "backend": "sqlite", "path": "scrimp-cache.db"},
    {"name": "prompt_cache"},
]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, where: Where) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) in os.environ:
                return os.environ[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise where.error(f"environment variable {m.group(1)} is not set")
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, where.key(str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where.item(i)) for i, v in enumerate(value)]
    return value


def _check(data: dict[str, Any], where: Where, types: dict[str, type | tuple[type, ...]],
           required: set[str]) -> None:
    for key in sorted(required):
        if key not in data:
            raise where.error(f"missing required key '{key}'")
    for key, value in data.items():
        if key not in types:
            raise where.key(str(key)).error(f"unknown key (accepted: {', '.join(types)})")
        if value is not None and not isinstance(value, types[key]) or isinstance(value, bool) and types[key] in (
                int, float, (int, float)):
            raise where.key(str(key)).error(f"expected {_tname(types[key])}, got {value!r}")


def _tname(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return {"str": "a string", "int": "an integer", "float": "a number", "list": "a list",
            "dict": "a mapping", "bool": "true/false"}.get(t.__name__, t.__name__)


_MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "provider": str, "base_url": str, "api_key": str, "tier": str, "upstream_name": str,
    "fallbacks": list, "max_tokens_field": str, "rejects": list, "responses_api": bool}
_UPSTREAM_KEYS: dict[str, type | tuple[type, ...]] = {
    "timeout_s": (int, float), "connect_timeout_s": (int, float), "first_byte_timeout_s": (int, float),
    "idle_timeout_s": (int, float), "retries": int, "backoff_s": (int, float), "max_backoff_s": (int, float)}
_TOP_KEYS: dict[str, type | tuple[type, ...]] = {
    "models": list, "upstream": dict, "stages": list, "max_body_bytes": int, "host": str, "port": int,
    "auth": dict}


def parse(data: Any, *, source: str = "config", lines: dict[str, int] | None = None,
          models_required: bool = True) -> GatewayConfig:
    top = Where(source, "", "", lines)
    if not isinstance(data, dict):
        raise top.error("expected a mapping at the top level")
    data = _expand(data, top)
    _check(data, top, _TOP_KEYS, {"models"} if models_required else set())
    cfg = GatewayConfig(max_body_bytes=data.get("max_body_bytes", 16 * 1024 * 1024),
                        host=data.get("host", "127.0.0.1"), port=data.get("port", 8080))
    for i, entry in enumerate(data.get("models") or []):
        where = top.key("models").item(i)
        if not isinstance(entry, dict):
            raise where.error("expected a mapping")
        _check(entry, where, _MODEL_KEYS, {"name", "provider", "base_url"})
        if entry["provider"] not in ("openai", "anthropic"):
            raise where.key("provider").error(f"must be 'openai' or 'anthropic', got {entry['provider']!r}")
        if entry.get("tier", "mid") not in ("premium", "mid", "cheap"):
            raise where.key("tier").error("must be premium, mid or cheap")
        if entry["name"] in cfg.models:
            raise where.key("name").error(f"duplicate model {entry['name']!r}")
        cfg.models[entry["name"]] = ModelSpec(**{**entry, "base_url": entry["base_url"].rstrip("/")})
    for i, spec in enumerate(cfg.models.values()):
        for fb in spec.fallbacks:
            if fb not in cfg.models:
                raise top.key("models").item(i).key("fallbacks").error(f"unknown model {fb!r}")
    if "upstream" in data:
        _check(data["upstream"], top.key("upstream"), _UPSTREAM_KEYS, set())
        cfg.upstream = UpstreamPolicy(**data["upstream"])
    if data.get("auth") is not None:
        cfg.auth = parse_options(AuthOptions, data["auth"], top.key("auth"))
    stages = data.get("stages", DEFAULT_STAGES)
    if not isinstance(stages, list):
        raise top.key("stages").error("expected a list of stages (leave the key out for the default ones)")
    seen: set[str] = set()
    for i, entry in enumerate(stages):
        raw = f"stages[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        elif isinstance(entry, dict) and len(entry) == 1 and "name" not in entry:
            (name, section), = entry.items()
            raw = f"stages[{i}].{name}"
            entry = {"name": name, **(section or {})} if isinstance(section, dict | None) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise Where(source, f"stages[{i}]", raw, lines).error(
                f"expected a stage name, or a mapping of a stage name to its options; got {entry!r}")
        stage_class(entry["name"], Where(source, f"stages[{i}]", raw, lines))
        if entry["name"] in seen:
            raise Where(source, f"stages[{i}]", raw, lines).error(f"stage {entry['name']!r} is listed twice")
        seen.add(entry["name"])
        where = Where(source, f"stages.{entry['name']}", raw, lines)
        check_section(entry["name"], {k: v for k, v in entry.items() if k != "name"}, where)
        cfg.stages.append(entry)
        cfg.stage_wheres.append(where)
    return cfg


def load(path: str | Path, *, models_required: bool = True) -> GatewayConfig:
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
    return parse(data, source=str(path), lines=line_map(text), models_required=models_required)


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


def with_stages(config: GatewayConfig, other: GatewayConfig) -> GatewayConfig:
    """`config`'s models with everything else from `other` (`scrimp serve --simulate --config FILE`: the
    simulator's models, the file's stages, upstream policy, body limit, host, port and auth)."""
    config.stages, config.stage_wheres = other.stages, other.stage_wheres
    config.upstream, config.max_body_bytes = other.upstream, other.max_body_bytes
    config.host, config.port = other.host, other.port
    config.auth = other.auth
    return config
