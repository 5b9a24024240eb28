"""Training data for offload: JSON lines `{"prompt": str, "answer": str}`, the prompts a feature received and the
answers its LLM gave (a file, or the feature's logged traffic)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    pass


@dataclass
class Pairs:
    prompts: list[str]
    answers: list[str]

    def __len__(self) -> int:
        return len(self.prompts)


def read(path: str | Path) -> Pairs:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    prompts: list[str] = []
    answers: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                prompt, answer = row["prompt"], row["answer"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{path}:{n}: expected {{\"prompt\": str, \"answer\": str}} "
                                f"({exc.__class__.__name__}: {exc})") from exc
            if not isinstance(prompt, str) or not isinstance(answer, str):
                raise DataError(f"{path}:{n}: 'prompt' and 'answer' must be strings")
            prompts.append(prompt)
            answers.append(answer)
    if not prompts:
        raise DataError(f"{path}: no examples")
    return Pairs(prompts, answers)
