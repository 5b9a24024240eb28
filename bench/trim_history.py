"""History trimming on LoCoMo, deciding as the gateway does (the shipped defaults unless --config).

Each question becomes the last user turn of its whole conversation (speaker A as user, B as assistant); reported:
the share of history tokens kept (summary counted at its cap, recent turns, quoted excerpts) and the share of
evidence turns kept verbatim, on the conversations the defaults were tuned on, on the held-out ones (split by a
hash of the conversation id, bench/trim_split.py) and on all, with evidence recall per question category; and
the trim time of a 50-turn conversation's request (p50, p99; the turns' vectors cached as they are in the
gateway after the first turn, the question embedded each time).

    nice -n 10 .venv/bin/python bench/trim_history.py [--data ../shared/data/trimming/locomo.jsonl] [--config F]

Target: >= 90% of evidence turns kept while keeping <= 10% of the history tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trim_split import half, machine

from scrimp.trim_cli import load_options, read_jsonl


def latency_50_turns(conv: dict, policy, trimmer, runs: int = 200) -> dict:
    from scrimp.canonical import ChatRequest
    from scrimp.trim.evaluate import history_messages

    history = history_messages(conv)[:50]
    questions = list(dict.fromkeys(q["question"] for q in conv["questions"]))
    warm = ChatRequest(model="claude-sonnet-4-6", messages=[*history, {"role": "user", "content": [
        {"type": "text", "text": "warm-up"}]}])
    trimmer.build(trimmer.prepare(warm), trimmer.prepare(warm).wanted, summary="s")  # the turns' vectors, once
    times = []
    for q in questions[:runs]:
        req = ChatRequest(model="claude-sonnet-4-6",
                          messages=[*history, {"role": "user", "content": [{"type": "text", "text": q}]}])
        t0 = time.perf_counter()
        prepared = trimmer.prepare(req)
        trimmed = trimmer.build(prepared, prepared.wanted, summary="a stand-in summary of the earlier turns")
        times.append(time.perf_counter() - t0)
        kept = sum(trimmed.message_tokens)
    times.sort()
    from scrimp.trim.history import message_tokens

    return {"requests": len(times), "history_tokens": sum(message_tokens(m) for m in history),
            "sent_tokens_last": kept, "checkpoint_last": trimmed.levels.checkpoint,
            "quoted_last": len(trimmed.plan.excerpts),
            "latency_ms_p50": round(times[len(times) // 2] * 1000, 2),
            "latency_ms_p99": round(times[min(len(times) - 1, int(0.99 * len(times)))] * 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/trimming/locomo.jsonl"))
    ap.add_argument("--config", default=None)
    ap.add_argument("--latency-only", action="store_true", help="only the 50-turn latency (two conversations)")
    args = ap.parse_args()
    from scrimp.embedding import shared_minilm
    from scrimp.trim.evaluate import history_examples, summarise
    from scrimp.trim.relevance import VectorCache
    from scrimp.trim.trimmer import Trimmer

    convs = read_jsonl(args.data)
    policy = load_options(args.config).policy(None)
    trimmer = Trimmer(policy, VectorCache(shared_minilm()))
    out: dict = {"machine": machine(), "data": args.data, "halves": {}}
    if args.latency_only:
        convs = convs[:2]
    every = []
    by_category: dict[str, list] = {}
    for name in () if args.latency_only else ("tune", "held_out"):
        part = [c for c in convs if half(str(c["id"])) == name]
        examples = list(history_examples(part, policy, trimmer))
        every += examples
        for conv in part:
            for n, q in enumerate(conv["questions"]):
                ex = next(e for e in examples if e.id == f"{conv['id']}#{n}")
                by_category.setdefault(str(q.get("category")), []).append(ex)
        out["halves"][name] = {"conversations": [c["id"] for c in part], **summarise(examples)}
    out["all"] = summarise(every) if every else {}
    out["evidence_recall_by_category"] = {k: summarise(v)["evidence_recall"] for k, v in sorted(by_category.items())}
    # the latency runs on a fresh vector cache: each question is new (embedded on the request), the turns are not
    fresh = Trimmer(policy, VectorCache(shared_minilm()))
    out["fifty_turn_request"] = latency_50_turns(convs[0], policy, fresh)
    # the same with the history trimmed (50 LoCoMo turns are ~2,000 tokens, under the default trigger): trigger at
    # 500 tokens, keep 800 (summary, recent turns and quoted ones, scored by BM25 and MiniLM)
    import dataclasses

    trimming = dataclasses.replace(policy, history=dataclasses.replace(policy.history, trigger_tokens=500,
                                                                       min_keep_tokens=800))
    out["fifty_turn_request_trimmed"] = latency_50_turns(convs[1], trimming,
                                                         Trimmer(trimming, VectorCache(shared_minilm())))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
