"""Rule-based routing: ordered conditions on a request, first match picks the model.

A rule is `{"if": {conditions}, "model": NAME}`; every condition in `if` must hold:
  feature: NAME | [NAMES]        tags: {key: value}
  keywords_any: [words]          keywords_none: [words]   (case-insensitive, in the final user turn)
  min_prompt_tokens: N           max_prompt_tokens: N     (the whole prompt, scrimp's token counter)
  tools: true|false              json_schema: true|false  (a response_format json_schema / json_object)
  max_tokens_at_most: N          max_tokens_at_least: N   (the request's max_tokens)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scrimp.pipeline import Call
from scrimp.tokens import count_tokens

CONDITIONS = {"feature", "tags", "keywords_any", "keywords_none", "min_prompt_tokens", "max_prompt_tokens", "tools",
              "json_schema", "max_tokens_at_most", "max_tokens_at_least"}


class RuleError(ValueError):
    pass


@dataclass
class Rule:
    when: dict[str, Any]
    model: str

    @classmethod
    def parse(cls, raw: Any, where: str, models: set[str]) -> Rule:
        if not isinstance(raw, dict) or "model" not in raw:
            raise RuleError(f"{where}: a rule is {{'if': {{...}}, 'model': NAME}}")
        when = raw.get("if") or {}
        if not isinstance(when, dict):
            raise RuleError(f"{where}.if: expected a mapping of conditions")
        unknown = set(when) - CONDITIONS
        if unknown:
            raise RuleError(f"{where}.if: unknown condition(s) {sorted(unknown)} (known: {sorted(CONDITIONS)})")
        if raw["model"] not in models:
            raise RuleError(f"{where}.model: unknown model {raw['model']!r}")
        return cls(when, raw["model"])

    def matches(self, call: Call, prompt_tokens: int | None = None) -> bool:
        req, w = call.request, self.when
        if "feature" in w:
            wanted = w["feature"] if isinstance(w["feature"], list) else [w["feature"]]
            if call.attribution.feature not in wanted:
                return False
        if "tags" in w and any(call.attribution.tags.get(k) != v for k, v in w["tags"].items()):
            return False
        if "keywords_any" in w or "keywords_none" in w:
            text = req.final_user_text().lower()
            if "keywords_any" in w and not any(k.lower() in text for k in w["keywords_any"]):
                return False
            if "keywords_none" in w and any(k.lower() in text for k in w["keywords_none"]):
                return False
        if "min_prompt_tokens" in w or "max_prompt_tokens" in w:
            n = prompt_tokens if prompt_tokens is not None else prompt_size(call)
            if n < w.get("min_prompt_tokens", 0) or n > w.get("max_prompt_tokens", float("inf")):
                return False
        if "tools" in w and bool(req.tools) != bool(w["tools"]):
            return False
        if "json_schema" in w and (req.response_format is not None) != bool(w["json_schema"]):
            return False
        mt = req.max_tokens
        if "max_tokens_at_most" in w and (mt is None or mt > w["max_tokens_at_most"]):
            return False
        return not ("max_tokens_at_least" in w and (mt is None or mt < w["max_tokens_at_least"]))


def prompt_size(call: Call) -> int:
    req = call.request
    parts = [req.system_text()] + [b.get("text", "") for m in req.messages for b in m["content"]
                                   if b.get("type") == "text"]
    return sum(count_tokens(p) for p in parts if p)


def choose(rules: list[Rule], call: Call, default: str) -> tuple[str, int | None]:
    """The first matching rule's model (and its index), else `default` (index None)."""
    size = prompt_size(call) if any({"min_prompt_tokens", "max_prompt_tokens"} & set(r.when) for r in rules) else None
    for i, rule in enumerate(rules):
        if rule.matches(call, size):
            return rule.model, i
    return default, None
