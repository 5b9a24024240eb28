"""A generated week of traffic written to a ledger and its request log, with planted waste:

- faq: 12 support questions asked again and again at temperature 0 on gpt-4o (cacheable, paid every time)
- assistant: claude-sonnet-4-6 with a ~1,500-token system prompt that starts with the current time (volatile)
- reports: gpt-4o answers sent without max_tokens (long, uncapped); shadow checks show gpt-4o-mini agreeing
  on 19 of 20 of them (a cheaper model, tested)
- nightly: a gpt-4o job that is never streamed and runs between 02:00 and 03:00 UTC (batchable)
- greeting: 5 prompts repeated at temperature 0.9 on gpt-4o-mini (repeats no cache may reuse: sampled)
- agent: claude-haiku-4-5 conversations of 24 turns with long tool outputs (trimmable input)
- chat: the control, none of the above (unique prompts, streamed, capped, stable system prompt, cheapest model;
  a fifth of its calls exact-cache hits)

Every row's cost is priced from its tokens; `expected` keeps the tokens per feature so tests can price them by
hand."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from scrimp import pricing
from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.ledger.schema import NAMES
from scrimp.requestlog.redact import Redactor
from scrimp.requestlog.store import RequestLogStore
from scrimp.requestlog.writer import Limits, Pending, RequestLogWriter
from scrimp.tokens import count_tokens, request_input_tokens

FAQ = [(f"How do I {task}?", f"To {task}, open Settings and follow the {task} guide.") for task in [
    "reset my password", "export my data", "add a team member", "change my plan", "delete my account",
    "get an invoice", "enable two-factor login", "rename a project", "invite a guest", "cancel my trial",
    "change my email", "restore a backup"]]
POLICY = " ".join(f"Rule {i}: answer politely, cite the policy section, never promise refunds beyond 30 days, "
                  "escalate legal questions to a human." for i in range(90))
WORDS = ["the", "quarterly", "usage", "numbers", "for", "our", "team", "show", "growth", "in", "storage", "exports", "and", "api", "calls"]


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def _msg(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def _at(day: datetime, rng: random.Random, hours: range) -> float:
    return (day + timedelta(hours=rng.choice(list(hours)), minutes=rng.randint(0, 59),
                            seconds=rng.randint(0, 59))).timestamp()


def generate(store: Any, end: datetime, seed: int = 3) -> dict[str, Any]:
    """Write a week ending at `end` into a ledger store and its request log; returns per-feature token totals
    and call counts."""
    rng = random.Random(seed)
    log = RequestLogWriter(RequestLogStore.of_ledger(store), Redactor(), Limits(retention_s=None,
                                                                                  max_rows_per_tenant=None))
    log.start()
    expected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    start = (end - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
    n = 0

    def call(feature: str, ts: float, model: str, req: ChatRequest, answer: str, stream: bool,
             out_tokens: int | None = None, cached: bool = False) -> None:
        nonlocal n
        n += 1
        provider = "anthropic" if model.startswith("claude") else "openai"
        usage = Usage(input=request_input_tokens(req), output=out_tokens or count_tokens(answer))
        cost = pricing.cost(model, provider, usage)
        paid = 0.0 if cached else cost  # an exact-cache hit: nothing billed, the answer's cost saved
        row = dict.fromkeys(NAMES)
        row.update(ts=ts, request_id=f"req_{seed}_{n:06d}", tenant="acme", feature=feature, inbound="openai",
                   requested_model=model, served_model=model, provider="cache" if cached else provider,
                   input_tokens=usage.input, output_tokens=usage.output, cache_read_tokens=0,
                   cache_write_5m_tokens=0, cache_write_1h_tokens=0, reasoning_tokens=0, cost_usd=paid,
                   baseline_usd=cost, saved_usd=cost - paid, cache="exact" if cached else "miss", decisions="{}",
                   latency_ms=400.0, stream=int(stream), status="ok")
        store.write(row)
        resp = ChatResponse(id=row["request_id"], model=model, content=[{"type": "text", "text": answer}],
                            usage=usage)
        log.submit(Pending({k: row[k] for k in ("ts", "request_id", "tenant", "feature", "inbound",
                                                "requested_model", "served_model", "cache", "stream", "status")},
                           req, resp))
        e = expected[feature]
        e["calls"] += 1
        e["hits"] += int(cached)
        if not cached:  # tokens a provider billed
            e["input"] += usage.input
            e["output"] += usage.output

    shadows: list[dict[str, Any]] = []
    weights = [1 / (i + 1) for i in range(len(FAQ))]
    for d in range(7):
        day = start + timedelta(days=d)
        for _ in range(40):
            q, a = rng.choices(FAQ, weights)[0]
            req = ChatRequest(model="gpt-4o", messages=[_msg(q)], system=[{"type": "text", "text": "Support bot."}],
                              temperature=0, max_tokens=100, stream=rng.random() < 0.3)
            call("faq", _at(day, rng, range(8, 20)), "gpt-4o", req, a, req.stream)
        for _ in range(12):
            ts = _at(day, rng, range(8, 20))
            now = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
            req = ChatRequest(model="claude-sonnet-4-6", system=[{"type": "text", "text": f"Current time: {now}. "
                                                                  f"You are the assistant. {POLICY}"}],
                              messages=[_msg("Please help: " + _text(rng, 12))], max_tokens=300, stream=True)
            call("assistant", ts, "claude-sonnet-4-6", req, _text(rng, 60), True)
        for _ in range(8):
            req = ChatRequest(model="gpt-4o", messages=[_msg("Write the report on " + _text(rng, 10))],
                              stream=rng.random() < 0.5)
            out = int(min(rng.lognormvariate(6.5, 0.6), 4000))
            ts = _at(day, rng, range(9, 18))
            call("reports", ts, "gpt-4o", req, _text(rng, 40), req.stream, out)
            if len(shadows) < 20:
                shadows.append({"ts": ts, "request_id": f"req_{seed}_{n:06d}", "route": "reports", "tenant": "acme",
                                "feature": "reports", "prompt": "report", "cheap_model": "gpt-4o-mini",
                                "strong_model": "gpt-4o", "served": "strong", "score": 0.0 if len(shadows) == 7
                                else 1.0, "scorer": "judge", "cost_usd": 0.0})
        for _ in range(10):
            req = ChatRequest(model="gpt-4o", messages=[_msg("Summarise: " + _text(rng, 300))], max_tokens=200,
                              temperature=0.2)
            call("nightly", _at(day, rng, range(2, 3)), "gpt-4o", req, _text(rng, 80), False)
        for _ in range(8):
            hello = rng.choice(["Say hello to Ann", "Say hello to Bob", "Greet the team", "Welcome a new user",
                                "Wish a good weekend"])
            req = ChatRequest(model="gpt-4o-mini", messages=[_msg(hello)], max_tokens=60, temperature=0.9,
                              stream=True)
            call("greeting", _at(day, rng, range(8, 20)), "gpt-4o-mini", req, f"{hello}! " + _text(rng, 8), True)
        for _ in range(6):
            turns = []
            for t in range(12):
                turns.append(_msg(f"Step {t}: " + _text(rng, 40)))
                turns.append({"role": "assistant", "content": [{"type": "text", "text": _text(rng, 80)}]})
            turns.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                       "content": _text(rng, 1500)}]})
            req = ChatRequest(model="claude-haiku-4-5", messages=turns, max_tokens=300, temperature=0.5,
                              stream=True)
            call("agent", _at(day, rng, range(8, 20)), "claude-haiku-4-5", req, _text(rng, 40), True)
        for _ in range(15):
            req = ChatRequest(model="claude-haiku-4-5", system=[{"type": "text", "text": "Chat helper."}],
                              messages=[_msg(_text(rng, 15) + f" #{rng.randint(0, 10**9)}")], max_tokens=500,
                              temperature=0.7, stream=True)
            call("chat", _at(day, rng, range(7, 23)), "claude-haiku-4-5", req, _text(rng, 50), True,
                 cached=rng.random() < 0.2)
    for row in shadows:
        store.write(row, table="shadow")
    store.flush()
    log.flush()
    log.close()
    return {"start": start.timestamp(), "features": {k: dict(v) for k, v in expected.items()}}
