"""Shared by the router tests: the workload, the simulator and gateway configs, labelled data."""

from __future__ import annotations

import json
from typing import Any

from scrimp.gateway.config import parse
from scrimp.sim.config import ModelConfig, SimConfig, normalise_prompt

EASY = [f"What is {a} plus {b}?" for a, b in zip(range(1, 41), range(7, 47))]
HARD = [f"Prove that the sequence x_{n} = {n}^n / n! converges and find the limit of its ratio of terms."
        for n in range(2, 42)]


def answer_of(prompt: str) -> str:
    return "B" if prompt in HARD else str(sum(int(t.rstrip("?")) for t in prompt.split() if t.rstrip("?").isdigit()))


def sim_config() -> SimConfig:
    cfg = SimConfig()
    cfg.models["o4-mini"] = ModelConfig("o4-mini", "openai", "cheap", capability=0.6,
                                        rejects=["max_tokens", "temperature", "top_p"])
    cfg.models["claude-haiku-4-5"].rejects = ["temperature+top_p"]
    cfg.workload = {normalise_prompt(p): {"answer": answer_of(p), "difficulty": 0.8 if p in HARD else 0.3}
                    for p in EASY + HARD}
    return cfg


def gateway_config(sim_url: str, stages: list[dict[str, Any]], **model_overrides: dict[str, Any]):
    models = []
    for m in sim_config().models.values():
        if m.kind != "chat":
            continue
        base = sim_url + "/v1" if m.provider == "openai" else sim_url
        entry = {"name": m.name, "provider": m.provider, "base_url": base, "api_key": "sim", "tier": m.tier}
        entry.update(model_overrides.get(m.name, {}))
        models.append(entry)
    return parse({"models": models, "stages": stages})


def write_labelled(path, n_each: int = 40) -> str:
    """Labelled routing data in the documented format: the cheap model fails the hard prompts."""
    rows = [{"prompt": p, "scores": {"gpt-4o-mini": 1.0, "gpt-4o": 1.0}} for p in EASY[:n_each]]
    rows += [{"prompt": p, "scores": {"gpt-4o-mini": 0.0, "gpt-4o": 1.0}} for p in HARD[:n_each]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)
