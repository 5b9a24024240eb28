"""Retrieved-chunk pruning on HotpotQA, deciding as the gateway does (the shipped defaults unless --config).

Each question is a request whose user message holds its retrieved paragraphs as `document` blocks; reported:
the share of chunk tokens removed and the share of gold (supporting) paragraphs kept, on the half of the
questions the defaults were tuned on, on the held-out half (split by a hash of the id, bench/trim_split.py),
and on all; and the trim time per request (p50, p99).

    nice -n 10 .venv/bin/python bench/trim_rag.py [--data ../shared/data/trimming/hotpotqa.jsonl] [--config F]

Target: >= 95% of gold chunks kept while removing >= 60% of chunk tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trim_split import half, machine

from scrimp.trim_cli import load_options, read_jsonl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/trimming/hotpotqa.jsonl"))
    ap.add_argument("--config", default=None)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    from scrimp.embedding import shared_minilm
    from scrimp.trim.evaluate import rag_examples, summarise
    from scrimp.trim.relevance import VectorCache
    from scrimp.trim.trimmer import Trimmer

    rows = read_jsonl(args.data)[: args.limit]
    policy = load_options(args.config).policy(None)
    trimmer = Trimmer(policy, VectorCache(shared_minilm()))
    examples = list(rag_examples(rows, policy, trimmer))
    by_half: dict[str, list] = {"tune": [], "held_out": []}
    for row, ex in zip(rows, examples, strict=True):
        by_half[half(str(row["id"]))].append(ex)
    # latency of 20-chunk requests (the chunks of two questions together): with chunks never seen (embedded on
    # the request) and with the same chunks again (their vectors cached, as for a corpus's popular chunks)
    fresh = Trimmer(policy, VectorCache(shared_minilm()))
    twenty = [{"id": f"{a['id']}+{b['id']}", "question": a["question"], "chunks": a["chunks"] + b["chunks"],
               "gold": a["gold"]} for a, b in zip(rows[0:60:2], rows[1:60:2], strict=False)
              if len(a["chunks"]) + len(b["chunks"]) == 20]
    timing = summarise(list(rag_examples(twenty, policy, fresh)))
    warm = summarise(list(rag_examples(twenty, policy, fresh)))  # the same chunks again: their vectors cached
    out = {"machine": machine(), "data": args.data,
           "tune": summarise(by_half["tune"]), "held_out": summarise(by_half["held_out"]), "all": summarise(examples),
           "twenty_chunk_requests_new_chunks": {k: timing[k] for k in ("examples", "latency_ms_p50", "latency_ms_p99")},
           "twenty_chunk_requests_seen_chunks": {k: warm[k] for k in ("examples", "latency_ms_p50", "latency_ms_p99")}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
