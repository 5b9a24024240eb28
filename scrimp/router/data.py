"""Labelled routing data: JSON lines `{"prompt": str, "scores": {"<model>": number, ...}}`, a score being
the quality (0..1) of that model's answer to the prompt."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataError(ValueError):
    pass


@dataclass
class Labelled:
    prompts: list[str]
    cheap: np.ndarray  # quality of the cheap model's answers
    strong: np.ndarray

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, idx: np.ndarray) -> Labelled:
        return Labelled([self.prompts[i] for i in idx], self.cheap[idx], self.strong[idx])


def read(path: str | Path, cheap: str, strong: str) -> Labelled:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    prompts, c, s = [], [], []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                prompt, scores = row["prompt"], row["scores"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{path}:{n}: expected {{\"prompt\": str, \"scores\": {{model: number}}}} "
                                f"({exc.__class__.__name__}: {exc})") from exc
            missing = [m for m in (cheap, strong) if m not in scores]
            if missing:
                raise DataError(f"{path}:{n}: no score for {', '.join(missing)} "
                                f"(this line has: {', '.join(scores) or 'none'})")
            try:
                cs, ss = float(scores[cheap]), float(scores[strong])
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path}:{n}: scores must be numbers") from exc
            if not (0 <= cs <= 1 and 0 <= ss <= 1) or not isinstance(prompt, str):
                raise DataError(f"{path}:{n}: prompt must be a string and scores between 0 and 1")
            prompts.append(prompt)
            c.append(cs)
            s.append(ss)
    if not prompts:
        raise DataError(f"{path}: no examples")
    return Labelled(prompts, np.asarray(c), np.asarray(s))
