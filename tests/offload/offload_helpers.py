"""Shared by the offload tests: a small generated intent data set, the simulator answering its labels, gateway
configs over it."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

from scrimp.gateway.config import parse
from scrimp.sim.config import SimConfig, normalise_prompt

INTENTS = {
    "refund_request": (["I want my money back for", "Please refund", "How do I get a refund for",
                        "Can I be reimbursed for", "I was charged twice, refund"],
                       ["the shoes I returned", "my last order", "the broken lamp", "order 4411", "the jacket"]),
    "track_shipment": (["Where is", "When will I receive", "Has my parcel shipped for", "Track the delivery of",
                        "The courier has not delivered"],
                       ["my package", "the order I placed Monday", "parcel 88-231", "my new phone", "the sofa"]),
    "reset_password": (["I forgot the password for", "How can I reset the password of", "I am locked out of",
                        "Send me a password reset link for", "My login does not work for"],
                       ["my account", "the mobile app", "my profile", "the website", "my work login"]),
    "cancel_subscription": (["Cancel", "I want to stop", "How do I end", "Please terminate",
                             "Unsubscribe me from"],
                            ["my monthly plan", "the premium membership", "my subscription", "the yearly plan",
                             "the newsletter service"]),
}
# How the LLM words each label (the stage must answer with exactly this text)
RENDER = {label: f"Intent: {label}" for label in INTENTS}


def examples(per_label: int = 25, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, (heads, tails) in INTENTS.items():
        combos = list(itertools.product(heads, tails))
        rng.shuffle(combos)
        for head, tail in combos[:per_label]:
            rows.append({"prompt": f"{head} {tail}?", "answer": RENDER[label]})
    rng.shuffle(rows)
    return rows


def write(path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def sim_config(rows: list[dict[str, str]]) -> SimConfig:
    cfg = SimConfig()
    cfg.workload = {normalise_prompt(r["prompt"]): {"answer": r["answer"], "difficulty": 0.0} for r in rows}
    return cfg


def gateway_config(sim_url: str, stages: list[dict[str, Any]]):
    models = []
    for m in SimConfig().models.values():
        if m.kind != "chat":
            continue
        base = sim_url + "/v1" if m.provider == "openai" else sim_url
        models.append({"name": m.name, "provider": m.provider, "base_url": base, "api_key": "sim", "tier": m.tier})
    return parse({"models": models, "stages": stages})
