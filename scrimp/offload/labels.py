"""Answers as labels: two answers are the same label when they say the same thing in the same words, up to case,
spacing, quotes and a final full stop; a JSON answer is its parsed value (key order and spacing do not matter).

A feature is a label-set feature when its answers fall in few labels that each recur: `check` says why not
otherwise (free text, too many labels), in words a user can act on."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass

_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)
_EDGES = "\"'`*_ \t\n"


def label_of(answer: str) -> str:
    """The label an answer stands for."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    if text[:1] in "{[":
        try:
            return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except ValueError:
            pass
    text = " ".join(text.strip(_EDGES).split())
    text = text.rstrip(".").strip(_EDGES)
    return text.casefold()


class NotALabelSet(ValueError):
    """The answers are not a small label set (free text, or too many labels): nothing to offload."""


@dataclass
class LabelStats:
    examples: int
    labels: int  # distinct labels
    frequent_labels: int  # labels seen at least `min_per_label` times
    frequent_share: float  # share of the examples whose label is a frequent one
    top: list[tuple[str, int]]  # the commonest labels with their counts

    def to_dict(self) -> dict:
        return asdict(self)


def stats(labels: list[str], min_per_label: int) -> LabelStats:
    counts = Counter(labels)
    frequent = {lab: n for lab, n in counts.items() if n >= min_per_label}
    share = sum(frequent.values()) / len(labels) if labels else 0.0
    return LabelStats(len(labels), len(counts), len(frequent), share, counts.most_common(5))


def check(labels: list[str], *, max_labels: int, min_per_label: int, min_share: float,
          min_examples: int) -> LabelStats:
    """The label statistics, or NotALabelSet with the reason this is no label-set feature."""
    s = stats(labels, min_per_label)
    if s.examples < min_examples:
        raise NotALabelSet(f"only {s.examples} examples: offloading needs at least {min_examples} answers to "
                           "learn from and to calibrate on")
    if s.frequent_share < min_share:
        raise NotALabelSet(
            f"the answers are not a small label set: {s.labels} distinct answers among {s.examples} examples, and "
            f"only {s.frequent_share:.1%} of the examples have an answer seen at least {min_per_label} times (a "
            f"label set needs {min_share:.0%}); this looks like free text, which a classifier cannot give")
    if s.frequent_labels > max_labels:
        raise NotALabelSet(f"the answers are {s.frequent_labels} recurring labels, more than the limit of "
                           f"{max_labels} (--max-labels)")
    if s.frequent_labels < 2:
        raise NotALabelSet(f"every answer is the same label ({s.top[0][0]!r}): there is nothing to classify; "
                           "a fixed reply does not need a model")
    return s


def renderings(answers: list[str], labels: list[str]) -> dict[str, str]:
    """Per label, the answer text the LLM gave most often for it: what an offloaded call answers with."""
    by_label: dict[str, Counter[str]] = {}
    for answer, label in zip(answers, labels):
        by_label.setdefault(label, Counter())[answer] += 1
    return {label: texts.most_common(1)[0][0] for label, texts in by_label.items()}
