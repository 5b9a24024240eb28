"""The structured stage's options: one policy for every feature, and per-feature overrides."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StructuredPolicy:
    enabled: bool = True
    repair: bool = True  # one more call with the validation error, on the same model
    fallback_model: str | None = None  # then the original request on this model
    tools: bool = True  # check forced tool calls' arguments too (tool_choice naming a tool, or any/required)
    json_object: bool = True  # check that a json_object answer is a JSON object


@dataclass
class StructuredOptions:
    default: StructuredPolicy = field(default_factory=StructuredPolicy)
    features: dict[str, StructuredPolicy] = field(default_factory=dict)

    def policy(self, feature: str | None) -> StructuredPolicy:
        return self.features.get(feature or "", self.default)
