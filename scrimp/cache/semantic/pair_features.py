"""Features of a (cached question, new question) pair for the verifier.

A cosine sees topic, not detail: "safe for dogs" and "safe for cats" embed almost alike. These features
name the details a different answer hides in: words one side has and the other lacks, numbers, negation,
proper names, units, question type and word order (swapped roles). The embedding interaction terms
(u*v, |u-v|) let the classifier learn which directions of meaning matter."""

from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATIONS = {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "isn't",
              "aren't", "wasn't", "weren't", "don't", "doesn't", "didn't", "won't", "wouldn't", "can't",
              "couldn't", "shouldn't", "hasn't", "haven't", "hadn't", "mustn't"}
_QUESTION_WORDS = ("what", "how", "why", "when", "where", "who", "whom", "whose", "which", "is", "are", "can",
                   "could", "should", "would", "will", "do", "does", "did", "was", "were", "has", "have")
_UNITS = {"km", "kilometers", "kilometres", "mile", "miles", "m", "meter", "meters", "metre", "metres", "cm", "mm",
          "inch", "inches", "ft", "feet", "foot", "kg", "kilograms", "g", "grams", "lb", "lbs", "pounds", "oz",
          "ounces", "celsius", "fahrenheit", "c", "f", "kelvin", "usd", "dollars", "dollar", "eur", "euros",
          "euro", "gbp", "rupees", "rs", "inr", "yen", "percent", "%", "hours", "hour", "minutes", "minute",
          "seconds", "second", "days", "day", "weeks", "week", "months", "month", "years", "year", "gb", "mb",
          "tb", "kb", "ghz", "mhz", "mph", "kmh", "liters", "litres", "liter", "litre", "ml", "gallons",
          "gallon"}
_MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
           "dec", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today",
           "tomorrow", "yesterday"}
_STOP = {"a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "is", "are", "was", "were", "be", "been",
         "i", "you", "my", "your", "me", "we", "it", "its", "this", "that", "these", "those", "do", "does", "did",
         "what", "how", "why", "when", "where", "who", "which", "can", "could", "should", "would", "will", "with",
         "at", "by", "from", "as", "about", "into", "there", "their", "they", "them", "he", "she", "his", "her",
         "if", "so", "some", "any", "have", "has", "had", "get", "best", "good", "way", "ways", "much", "many",
         "am", "s", "t", "one", "more", "most", "than", "all", "also", "just", "like", "know", "really"}

NAMES = ["cos", "jaccard", "content_jaccard", "bigram_jaccard", "char3_jaccard", "len_ratio", "len_diff",
         "only_a", "only_b", "only_min", "only_max", "num_mismatch", "num_one_side", "neg_mismatch",
         "proper_mismatch", "unit_mismatch", "date_mismatch", "qword_mismatch", "same_bag_reordered"]


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _stem(w: str) -> str:
    # crude plural/tense folding so "dogs"/"dog" agree; enough for a mismatch signal
    for suffix in ("ies", "es", "s", "ing", "ed"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


class _Parsed:
    __slots__ = (
        "bigrams",
        "char3",
        "content",
        "dates",
        "lower",
        "neg",
        "numbers",
        "proper",
        "qword",
        "units",
        "words",
    )

    def __init__(self, text: str) -> None:
        raw = _WORD.findall(text)
        self.words = [w.lower().replace("’", "'") for w in raw]
        self.lower = " ".join(self.words)
        self.content = {_stem(w) for w in self.words if w not in _STOP}
        self.bigrams = set(zip(self.words, self.words[1:]))
        self.char3 = {self.lower[i:i + 3] for i in range(max(len(self.lower) - 2, 0))}
        self.numbers = {n.replace(",", "") for n in _NUMBER.findall(text)}
        self.neg = sum(w in _NEGATIONS or w.endswith("n't") for w in self.words) % 2
        # capitalised words not opening the sentence: names, places, products
        self.proper = {w.lower() for i, w in enumerate(raw) if i > 0 and w[0].isupper() and w.lower() not in _STOP}
        self.units = {w for w in self.words if w in _UNITS} | ({"%"} if "%" in text else set())
        self.dates = {w for w in self.words if w in _MONTHS}
        self.qword = next((w for w in self.words if w in _QUESTION_WORDS), "")


def lexical(text_a: str, text_b: str) -> list[float]:
    a, b = _Parsed(text_a), _Parsed(text_b)
    la, lb = len(a.words), len(b.words)
    only_a, only_b = len(a.content - b.content), len(b.content - a.content)
    return [
        _jaccard(set(a.words), set(b.words)), _jaccard(a.content, b.content), _jaccard(a.bigrams, b.bigrams),
        _jaccard(a.char3, b.char3), min(la, lb) / max(la, lb, 1), abs(la - lb) / max(la + lb, 1),
        only_a, only_b, min(only_a, only_b), max(only_a, only_b),
        float(bool(a.numbers) and bool(b.numbers) and a.numbers != b.numbers),
        float(bool(a.numbers) != bool(b.numbers)),
        float(a.neg != b.neg),
        len(a.proper ^ b.proper),
        float(a.units != b.units),
        float(a.dates != b.dates),
        float(a.qword != b.qword),
        float(set(a.words) == set(b.words) and a.words != b.words),
    ]


def features(texts_a: list[str], texts_b: list[str], u: np.ndarray, v: np.ndarray, *,
             interactions: bool = True) -> np.ndarray:
    """One row per pair: [cos, lexical..., (u*v, |u-v|)]. u and v are unit rows."""
    cos = np.einsum("ij,ij->i", u, v)[:, None]
    lex = np.asarray([lexical(a, b) for a, b in zip(texts_a, texts_b)], dtype=np.float32).reshape(len(cos), -1)
    parts = [cos.astype(np.float32), lex]
    if interactions:
        parts += [u * v, np.abs(u - v)]
    return np.hstack(parts).astype(np.float32)
