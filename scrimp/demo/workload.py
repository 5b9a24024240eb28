"""The demo's built-in workload: a support assistant, an agent loop and a nightly summarisation job.

Deterministic (seeded), with reference answers and difficulties so the simulator's quality model can tell
whether an answer is right."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FAQ = [
    ("How do I reset my password?", "Use the 'Forgot password' link on the sign-in page.", 0.2),
    ("What is your refund policy?", "Refunds are available within 30 days of purchase.", 0.3),
    ("Can I change my plan later?", "Yes, you can change plans at any time from Billing.", 0.2),
    ("Do you offer an annual discount?", "Annual plans are 20% cheaper than monthly.", 0.3),
    ("How do I export my data?", "Go to Settings > Data > Export and choose CSV or JSON.", 0.4),
    ("Is there an API rate limit?", "The API allows 600 requests per minute per key.", 0.5),
    ("Which regions do you host data in?", "Data is hosted in the EU and the US; you choose at sign-up.", 0.5),
    ("How do I add a team member?", "Invite them from Settings > Team with their email.", 0.2),
    ("Why was my card declined?", "Check the card's expiry and billing address, then retry.", 0.6),
    ("Can I get an invoice with my VAT number?", "Add your VAT number in Billing; invoices include it.", 0.4),
    ("How do I delete my account?", "Settings > Account > Delete; it takes effect after 7 days.", 0.3),
    ("What happens when I exceed my quota?", "Requests are queued until the next hour; nothing is lost.", 0.7),
]
# Other ways users ask the same questions: one paid answer should serve them all (semantic cache).
PARAPHRASES = {
    "How do I reset my password?": ["How can I reset my password?", "how do i reset my password"],
    "What is your refund policy?": ["What's your refund policy?"],
    "Can I change my plan later?": ["Can I change my plan at a later time?"],
    "How do I export my data?": ["How can I export my data?"],
    "How do I add a team member?": ["How can I add a team member?"],
    "How do I delete my account?": ["How can I delete my account?"],
}
SUPPORT_SYSTEM = "You are the support assistant of Acme Cloud. Answer briefly and accurately."
AGENT_SYSTEM = (
    "You are an operations agent for Acme Cloud. Follow the runbook below exactly. " +
    " ".join(f"Runbook step {i}: check the service health, read the logs, compare with the baseline, "
             f"and escalate when the error rate exceeds the threshold for region {i % 7}." for i in range(120))
)
AGENT_TOOLS = [
    {"name": "get_metrics", "description": "Fetch service metrics for a region and window.",
     "input_schema": {"type": "object", "properties": {"region": {"type": "string"}, "window_minutes": {
         "type": "integer"}}, "required": ["region"]}},
    {"name": "read_logs", "description": "Read the latest log lines of a service.",
     "input_schema": {"type": "object", "properties": {"service": {"type": "string"}, "lines": {"type": "integer"}},
                      "required": ["service"]}},
    {"name": "page_oncall", "description": "Page the on-call engineer with a summary.",
     "input_schema": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}},
]


@dataclass
class DemoCall:
    workload: str  # support | agent | nightly
    provider: str  # the API the client speaks
    body: dict[str, Any]
    reference: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def reference_workload() -> list[dict[str, Any]]:
    """What the simulator's quality model needs: prompt, reference answer, difficulty."""
    return [{"prompt": p, "answer": a, "difficulty": d} for q, a, d in FAQ for p in [q, *PARAPHRASES.get(q, [])]]


def build(seed: int = 7) -> list[DemoCall]:
    rng = random.Random(seed)
    calls: list[DemoCall] = []
    # A support assistant: popular questions asked again and again (deterministic answers: temperature 0).
    weights = [1 / (i + 1) for i in range(len(FAQ))]
    for _ in range(60):
        q, a, _d = rng.choices(FAQ, weights)[0]
        q = rng.choice([q, *PARAPHRASES.get(q, [])])
        calls.append(DemoCall("support", "openai", {
            "model": "gpt-4o", "temperature": 0, "max_tokens": 120,
            "messages": [{"role": "system", "content": SUPPORT_SYSTEM}, {"role": "user", "content": q}]},
            reference=a, headers={"x-scrimp-feature": "support"}))
    # An agent loop: a long system prompt and tools re-sent on every turn.
    for session in range(3):
        history: list[dict[str, Any]] = []
        for turn in range(6):
            history.append({"role": "user", "content": f"Session {session} turn {turn}: status of region {turn}?"})
            calls.append(DemoCall("agent", "anthropic", {
                "model": "claude-sonnet-4-6", "max_tokens": 200, "system": AGENT_SYSTEM, "tools": AGENT_TOOLS,
                "messages": list(history)}, headers={"x-scrimp-feature": "agent"}))
            history.append({"role": "assistant", "content": f"Region {turn} looks healthy; error rate nominal."})
    # A nightly summarisation job: long documents, nobody waiting for the answer.
    for doc in range(12):
        text = " ".join(f"Ticket {doc}-{i}: customer reports slow exports in region {i % 5}." for i in range(60))
        calls.append(DemoCall("nightly", "openai", {
            "model": "gpt-4o", "max_tokens": 150, "temperature": 0.3,
            "messages": [{"role": "user", "content": f"Summarise these tickets:\n{text}"}]},
            headers={"x-scrimp-feature": "nightly-summary"}))
    return calls
