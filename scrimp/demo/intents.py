"""The demo's intent-classification feature: customer messages whose answer is one of a few intent labels. Its
calls go to the LLM while the request log collects them (the warm-up); then one retrain from the log, and the offload
stage answers the rest locally, shadow-checking a share of them.

Run on a gateway of its own (ledger, request log, offload) against the demo's simulator, whose workload knows each
message's label (`workload()`), so agreement is graded against what the LLM answers."""

from __future__ import annotations

import itertools
import random
import tempfile
from pathlib import Path
from typing import Any

import openai
from tqdm import tqdm

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import serve_app

INTENTS = {
    "billing_issue": (["I was charged twice for", "Why is there an extra charge on", "My invoice is wrong for",
                       "I don't recognise a payment for", "Please explain the fee on"],
                      ["my last month", "the March invoice", "my card", "the team plan", "my account"]),
    "login_problem": (["I can't sign in to", "The password reset fails for", "I'm locked out of",
                       "Two-factor codes never arrive for", "My session keeps expiring on"],
                      ["the dashboard", "my account", "the mobile app", "the admin console", "the API portal"]),
    "cancel_plan": (["I want to cancel", "How do I stop", "Please end", "Don't renew", "Close"],
                    ["my subscription", "the pro plan", "our team plan", "the trial", "my membership"]),
    "bug_report": (["There is an error when I open", "Something crashes in", "A blank page shows up in",
                    "I get a 500 error from", "The export button does nothing in"],
                   ["the reports page", "the editor", "the settings screen", "the billing page", "the search"]),
    "feature_request": (["It would be great to have dark mode in", "Could you add CSV import to",
                         "Please support SSO for", "I'd love keyboard shortcuts in", "Can you add an API for"],
                        ["the editor", "the dashboard", "our workspace", "the mobile app", "the reports"]),
}
SYSTEM = ("Classify the customer's message into one intent: billing_issue, login_problem, cancel_plan, bug_report "
          "or feature_request. Answer with the intent only.")
MODEL = "gpt-4o-mini"
WARMUP = 200


def messages(seed: int = 11) -> list[tuple[str, str]]:
    """(message, intent): every template of every intent, twice over with varied punctuation, shuffled."""
    rng = random.Random(seed)
    rows = []
    for intent, (heads, tails) in INTENTS.items():
        for head, tail in itertools.product(heads, tails):
            rows += [(f"{head} {tail}.", intent), (f"{head} {tail}?", intent), (f"{head} {tail}!", intent)]
    rng.shuffle(rows)
    return rows


def workload() -> list[dict[str, Any]]:
    """For the simulator: each message's label is the LLM's answer (every model gets it right)."""
    return [{"prompt": m, "answer": intent, "difficulty": 0.0} for m, intent in messages()]


def run(sim_url: str, progress: bool = True) -> dict[str, Any]:
    from scrimp.offload.logged import open_log, pairs
    from scrimp.offload.training import TrainSettings, train

    rows = messages()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(Path(tmp) / "intent-model")
        ledger = {"name": "ledger", "path": str(Path(tmp) / "ledger.db")}
        stages = [ledger, {"name": "request_log", "features": ["intent"]},
                  {"name": "offload", "features": {"intent": {
                      "model": model_dir, "reload_every_s": 0,
                      "shadow": {"share": 0.1, "max_usd_per_day": 0.01, "seed": 3}}}}]
        app = create_app(simulated(sim_url, stages=stages))
        with serve_app(app) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="demo-key", max_retries=2)

            def ask(message: str) -> tuple[str, str | None]:
                r = client.chat.completions.with_raw_response.create(
                    model=MODEL, max_tokens=10, temperature=0, extra_headers={"x-scrimp-feature": "intent"},
                    messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": message}])
                return r.parse().choices[0].message.content or "", r.headers.get("x-scrimp-offload")

            for message, _ in tqdm(rows[:WARMUP], desc="intent warm-up (LLM)", disable=not progress, leave=False):
                ask(message)
            stage = next(s for s in app.state.gateway.stages if s.name == "request_log")
            stage.flush()
            logged = pairs(open_log(ledger), "intent")
            trained = train(logged.prompts, logged.answers, TrainSettings(), progress=progress,
                            source="the demo's request log")
            trained.model.save(model_dir)  # what `scrimp offload retrain` does
            offloaded = agreed = 0
            rest = rows[WARMUP:]
            for message, intent in tqdm(rest, desc="intent (offloaded)", disable=not progress, leave=False):
                text, label = ask(message)
                if label is not None:
                    offloaded += 1
                    agreed += text == intent
            store = app.state.gateway.ledger
            store.flush()
            (saved, spent), = store.query("SELECT COALESCE(SUM(CASE WHEN kind = 'saving' THEN usd END), 0), "
                                          "COALESCE(SUM(CASE WHEN kind = 'cost' THEN usd END), 0) FROM savings "
                                          "WHERE lever = 'offload'")
            (cost,), = store.query("SELECT SUM(cost_usd) FROM calls WHERE feature = 'intent'")
    cal = trained.calibration
    line = (f"offload (intent): after a warm-up of {WARMUP} calls to {MODEL} and one retrain from the request log "
            f"(threshold calibrated for {cal.target_agreement:.0%} agreement), {offloaded} of {len(rest)} later calls "
            f"({offloaded / len(rest):.0%}) were answered locally, agreeing with the LLM on "
            f"{agreed}/{offloaded}; saved ${saved:.5f}, less ${spent:.5f} of shadow checks")
    return {"line": line, "warmup": WARMUP, "calls": len(rest), "offloaded": offloaded, "agreed": agreed,
            "saved_usd": saved, "shadow_usd": spent, "cost_usd": cost, "calibration": cal.to_dict()}
