"""Simulator configuration: which models exist and how each behaves (latency, limits, faults, quality)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad simulator config; the message names the offending key."""


@dataclass
class Faults:
    """Shares (0..1) of requests that fail or misbehave, drawn deterministically from the seed."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_529: float = 0.0  # Anthropic "overloaded"; OpenAI models answer 503 instead
    drop_stream: float = 0.0  # a stream cut off halfway (connection closed, no final event)
    stall_stream: float = 0.0  # a stream that goes silent halfway for slow_ms (connection open), then goes on
    slow: float = 0.0  # responses delayed by slow_ms extra
    slow_ms: float = 2000.0
    # Anthropic models asked for JSON in their prompt: replies that wrap the JSON in prose ("Here is the JSON…"),
    # as instruction-following models sometimes do (OpenAI's JSON mode is constrained and never does)
    bad_json: float = 0.0
    # JSON-schema answers and forced tool calls whose JSON does not fit the schema (a required key left out or a
    # wrong type), as models without constrained decoding sometimes answer
    bad_schema: float = 0.0


@dataclass
class ModelConfig:
    name: str
    provider: str  # "openai" | "anthropic"
    tier: str = "mid"  # "premium" | "mid" | "cheap"
    kind: str = "chat"  # "chat" | "embedding"
    capability: float = 0.5  # 0..1: answers a workload prompt correctly when capability >= its difficulty
    context_window: int = 128_000
    max_output_tokens: int = 16_384
    ttft_ms: float = 0.0  # time to first token
    per_token_ms: float = 0.0  # time per output token
    rpm: int = 0  # requests per minute, 0 = unlimited
    tpm: int = 0  # tokens per minute, 0 = unlimited
    min_cache_tokens: int = 1024  # Anthropic: minimum cacheable prompt length for this model
    dimensions: int = 1536  # embedding models
    # Request parameters this model refuses with a 400, as real ones do: OpenAI reasoning models refuse
    # "max_tokens" (they want max_completion_tokens), "temperature" and "top_p"; recent Claude models refuse
    # "top_p" together with "temperature" (listed as "temperature+top_p").
    rejects: list[str] = field(default_factory=list)
    # A reasoning model (o-series, gpt-5): spends hidden reasoning tokens before it answers, reported as
    # reasoning_tokens and billed as output; takes `reasoning_effort` / `reasoning.effort`, which others refuse.
    reasoning: bool = False
    faults: Faults = field(default_factory=Faults)


def default_models() -> list[ModelConfig]:
    """Real model names (so the genai-prices table prices them): premium, mid, cheap per provider."""
    return [
        ModelConfig("gpt-4o", "openai", "premium", capability=0.9),
        ModelConfig("gpt-4.1-mini", "openai", "mid", capability=0.7, context_window=1_000_000),
        ModelConfig("gpt-4o-mini", "openai", "cheap", capability=0.5),
        # Minimum cacheable prompt lengths as Anthropic documents them per model (configurable).
        ModelConfig("claude-opus-4-7", "anthropic", "premium", capability=0.95, context_window=200_000,
                    min_cache_tokens=4096),
        ModelConfig("claude-sonnet-4-6", "anthropic", "mid", capability=0.85, context_window=200_000,
                    min_cache_tokens=1024),
        ModelConfig("claude-haiku-4-5", "anthropic", "cheap", capability=0.6, context_window=200_000,
                    min_cache_tokens=4096),
        ModelConfig("text-embedding-3-small", "openai", "cheap", kind="embedding", context_window=8191),
    ]


@dataclass
class SimConfig:
    models: dict[str, ModelConfig] = field(default_factory=lambda: {m.name: m for m in default_models()})
    require_api_key: bool = False
    openai_cache_idle_s: float = 600.0  # OpenAI evicts cached prefixes after 5-10 minutes idle
    batch_delay_s: float = 2.0  # time a batch takes from submission to completion
    batch_error_rate: float = 0.0  # share of batch lines answered with an error (a 500 in that line's result)
    batch_expire_rate: float = 0.0  # share of batch lines reported expired (not run within the window)
    flex_extra_ms: float = 0.0  # OpenAI service_tier "flex": added latency per call
    flex_429_rate: float = 0.0  # share of flex calls refused with 429 "resource unavailable"
    max_body_bytes: int = 32 * 1024 * 1024
    seed: int = 0
    workload: dict[str, dict[str, Any]] = field(default_factory=dict)  # prompt -> {"answer", "difficulty"}

    def model(self, name: str) -> ModelConfig | None:
        return self.models.get(name)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")
        if key == "faults":
            value = Faults(**_build(Faults, value, f"{where}.faults"))
        else:
            default = known[key].default
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
            elif isinstance(default, bool) and not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
            elif isinstance(default, str) and not isinstance(value, str):
                raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
            if cls is Faults and key != "slow_ms" and not 0 <= value <= 1:
                raise ConfigError(f"{where}.{key}: a share of requests, between 0 and 1, got {value!r}")
        kwargs[key] = value
    return kwargs


def load_workload(path: str | Path) -> dict[str, dict[str, Any]]:
    """A workload file: JSON lines or YAML list of {"prompt", "answer", "difficulty"}."""
    text = Path(path).read_text()
    items: list[dict[str, Any]]
    if str(path).endswith((".yaml", ".yml")):
        items = yaml.safe_load(text) or []
    else:
        import orjson

        items = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "prompt" not in item or "answer" not in item:
            raise ConfigError(f"workload {path} item {i}: needs 'prompt' and 'answer'")
        out[normalise_prompt(item["prompt"])] = {
            "answer": str(item["answer"]),
            "difficulty": float(item.get("difficulty", 0.5)),
        }
    return out


def normalise_prompt(text: str) -> str:
    return " ".join(text.split()).lower()


def parse_config(data: dict[str, Any], base_dir: Path | None = None) -> SimConfig:
    if not isinstance(data, dict):
        raise ConfigError("config: expected a mapping at the top level")
    cfg = SimConfig()
    for key, value in data.items():
        if key == "models":
            if not isinstance(value, list):
                raise ConfigError("models: expected a list of model entries")
            models = {}
            for i, entry in enumerate(value):
                kwargs = _build(ModelConfig, entry, f"models[{i}]")
                for req in ("name", "provider"):
                    if req not in kwargs:
                        raise ConfigError(f"models[{i}]: missing required key '{req}'")
                if kwargs["provider"] not in ("openai", "anthropic"):
                    raise ConfigError(f"models[{i}].provider: must be 'openai' or 'anthropic'")
                models[kwargs["name"]] = ModelConfig(**kwargs)
            cfg.models = models
        elif key == "workload":
            path = Path(value)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            cfg.workload = load_workload(path)
        elif key in {"require_api_key", "openai_cache_idle_s", "batch_delay_s", "max_body_bytes", "seed"}:
            setattr(cfg, key, value)
        elif key in {"batch_error_rate", "batch_expire_rate", "flex_extra_ms", "flex_429_rate"}:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (
                    key.endswith("_rate") and value > 1):
                raise ConfigError(f"{key}: expected {'a share between 0 and 1' if key.endswith('_rate') else 'a number >= 0'}"
                                  f", got {value!r}")
            setattr(cfg, key, float(value))
        else:
            raise ConfigError(f"{key}: unknown key")
    return cfg


def load_config(path: str | Path | None) -> SimConfig:
    if path is None:
        return SimConfig()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(data, path.parent)
