"""The output_cap stage's options: one policy for every feature, and per-feature overrides."""

from __future__ import annotations

from dataclasses import dataclass, field

from scrimp.options import Where


@dataclass
class CapPolicy:
    enabled: bool = True
    quantile: float = 0.95  # of the feature's complete answers' output tokens
    headroom: float = 1.25  # the cap is that quantile times this, so most answers finish under it
    min_samples: int = 50  # no learned cap before this many complete answers were seen
    window: int = 1000  # the latest complete answers the quantile is taken over
    ceiling: int = 4096  # never a learned cap above this
    floor: int = 64  # nor below this
    continue_truncated: bool = True  # an answer stopped at scrimp's cap is continued (a second call)
    # A client's own max_tokens above the learned cap is lowered to it (an answer stopped there is continued up
    # to the client's cap). Anthropic clients always send max_tokens, so only this caps them.
    lower_client_caps: bool = False
    length_instruction: str | None = None  # e.g. "Answer in at most 3 sentences." (appended to the system prompt)

    def check(self, where: Where) -> None:
        if not 0 < self.quantile <= 1:
            raise where.key("quantile").error("a quantile between 0 and 1 (0.95: the 95th percentile)")
        if self.headroom < 1:
            raise where.key("headroom").error("a factor of at least 1")
        if self.min_samples < 1:
            raise where.key("min_samples").error("at least 1")
        if self.window < self.min_samples:
            raise where.key("window").error(f"at least min_samples ({self.min_samples})")
        if self.floor < 1:
            raise where.key("floor").error("at least 1 token")
        if self.ceiling < self.floor:
            raise where.key("ceiling").error(f"at least floor ({self.floor})")


@dataclass
class OutputCapOptions:
    default: CapPolicy = field(default_factory=CapPolicy)  # every feature (and calls naming none)
    features: dict[str, CapPolicy] = field(default_factory=dict)  # a feature's own policy, in full
    refresh_s: float = 10.0  # how often the learned caps are re-read from the shared table (0: every request)

    def check(self, where: Where) -> None:
        if self.refresh_s < 0:
            raise where.key("refresh_s").error("0 or more seconds")

    def policy(self, feature: str | None) -> CapPolicy:
        return self.features.get(feature or "", self.default)
