"""The prompt-cache planner stage: shapes each request so the provider's prompt cache can serve its prefix.

Runs after routing (it plans for the model that will actually answer):
- Anthropic models: `cache_control` breakpoints (planner.py) with the TTL the re-use pattern pays for (ttl.py);
- OpenAI models: a stable `prompt_cache_key` per tenant, feature and model, so requests land where their
  prefix is cached (explicit breakpoints only on models whose profile says they take them);
- both: the cache-buster detector (detector.py) records what keeps changing in a feature's prefix, and with
  `move_volatile: true` lines with timestamps or ids are moved out of the cached system prompt.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from scrimp import pricing
from scrimp.options import Where
from scrimp.pipeline import Call, Counterfactual, Next, Reply
from scrimp.promptcache.detector import CacheBusterDetector, split_volatile
from scrimp.promptcache.planner import plan
from scrimp.promptcache.profiles import Profiles
from scrimp.promptcache.ttl import TTLChooser
from scrimp.stage import Stage, StageContext


@dataclass
class PromptCacheFeaturePolicy:
    enabled: bool = True


@dataclass
class ProfileSettings:
    """Any of a cache profile's settings (scrimp/promptcache/profiles.yaml); unset ones keep the shipped value."""

    min_tokens: int | None = None
    max_breakpoints: int | None = None
    lookback_blocks: int | None = None
    write_5m: float | None = None  # multipliers of the base input price
    write_1h: float | None = None
    read: float | None = None
    ttls: list[Literal["5m", "1h"]] | None = None
    explicit_breakpoints: bool | None = None
    prompt_cache_key: bool | None = None

    def values(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "match"}


@dataclass
class ModelProfile(ProfileSettings):
    match: str = ""  # a model-name prefix; the longest match wins

    def check(self, where: Where) -> None:
        if not self.match:
            raise where.error("each model profile needs a 'match' prefix")


@dataclass
class ProviderProfiles:
    """Overrides of the shipped profiles for one provider: its defaults, and model entries tried before the
    shipped ones."""

    defaults: ProfileSettings = field(default_factory=ProfileSettings)
    models: list[ModelProfile] = field(default_factory=list)


@dataclass
class PromptCacheOptions:
    profiles: dict[Literal["anthropic", "openai"], ProviderProfiles] = field(default_factory=dict)
    move_volatile: bool = False  # move timestamp / id lines out of the cached system prompt
    features: dict[str, PromptCacheFeaturePolicy] = field(default_factory=dict)


class PromptCacheStage(Stage):
    name = "prompt_cache"
    Options = PromptCacheOptions

    def __init__(self, providers: dict[str, tuple[str, str]], profiles: Profiles, *, move_volatile: bool = False,
                 ttl: TTLChooser | None = None, features: dict[str, PromptCacheFeaturePolicy] | None = None) -> None:
        self.providers = providers  # model -> (provider, remote name)
        self.profiles = profiles
        self.move_volatile = move_volatile
        self.ttl = ttl or TTLChooser()
        self.detector = CacheBusterDetector()
        self.features = features or {}

    @classmethod
    def build(cls, options: PromptCacheOptions, ctx: StageContext) -> PromptCacheStage:
        providers = {name: (spec.provider, spec.remote_name) for name, spec in ctx.models.items()}
        overrides = {provider: {"defaults": p.defaults.values(),
                                "models": [{"match": m.match, **m.values()} for m in p.models]}
                     for provider, p in options.profiles.items()}
        return cls(providers, Profiles.load(overrides), move_volatile=options.move_volatile,
                   features=options.features)

    async def handle(self, call: Call, next: Next) -> Reply:
        feature = call.attribution.feature or "-"
        policy = self.features.get(feature)
        if policy is not None and not policy.enabled:
            return await next(call)
        provider, remote = self.providers.get(call.target_model, ("", call.target_model))
        finding = self.detector.observe(f"{call.attribution.tenant}/{feature}", call.request)
        if finding is not None:
            call.decisions["cache_buster"] = finding.as_dict()
        if provider == "anthropic":
            self._plan_anthropic(call, remote, feature)
        elif provider == "openai":
            self._key_openai(call, remote, feature)
        return await next(call)

    def _plan_anthropic(self, call: Call, model: str, feature: str) -> None:
        req = call.edit_request()  # the breakpoints go on this stage's own copy
        profile = self.profiles.for_model("anthropic", model)
        volatile = self._move_volatile(call) if self.move_volatile and req.system else 0
        stable_system = req.system[: len(req.system) - volatile]
        stable = hashlib.sha256(("".join(b.get("text", "") for b in stable_system)
                                 + "".join(t.get("name", "") for t in req.tools)).encode())
        key = f"{call.attribution.tenant}/{feature}/{model}/{stable.hexdigest()[:16]}"
        self.ttl.observe(key)
        ttl = self.ttl.choose(key, profile)
        result = plan(req, profile, stable_ttl=ttl, volatile_system_blocks=volatile)
        if result.added:
            call.decisions["prompt_cache"] = "planned" if result.client == 0 else "augmented"
            call.decisions["breakpoints"] = len(result.added)
            call.decisions["cache_ttl"] = ttl
            if result.client == 0:
                # its first call pays a write premium: a negative saving, recorded as such
                call.save(self.name, "the same input without prompt caching", priced=self._uncached_price)

    @staticmethod
    def _uncached_price(without: Counterfactual) -> tuple[float, Counterfactual]:
        """The same input with no prompt caching, at the model that answered (breakpoints are an Anthropic
        lever: an answer from another provider, a fallback, owes this stage nothing)."""
        if without.provider != "anthropic":
            return 0.0, without
        uncached = pricing.uncached(without.usage)
        try:
            usd = (pricing.cost(without.model, without.provider, uncached)
                   - pricing.cost(without.model, without.provider, without.usage))
        except pricing.UnknownPrice:
            usd = 0.0
        return usd, Counterfactual(uncached, without.model, without.provider)

    def _move_volatile(self, call: Call) -> int:
        """Keep timestamps and ids out of the cached prefix: they go to a last, uncached system block.
        Returns how many such blocks were added (0 or 1)."""
        req = call.request
        moved = []
        blocks = []
        for block in req.system:
            if block.get("type") != "text":
                blocks.append(block)
                continue
            stable, volatile = split_volatile(block["text"])
            blocks.append({**block, "text": stable})
            if volatile:
                moved.append(volatile)
        if moved:
            req.system = blocks + [{"type": "text", "text": "\n".join(moved)}]
            call.decisions["moved_volatile"] = len(moved)
            return 1
        return 0

    def _key_openai(self, call: Call, model: str, feature: str) -> None:
        profile = self.profiles.for_model("openai", model)
        if profile.prompt_cache_key and call.request.prompt_cache_key is None:
            material = f"{call.attribution.tenant}|{feature}|{model}".encode()
            req = call.edit_request()
            req.prompt_cache_key = "scrimp-" + hashlib.sha256(material).hexdigest()[:24]
            call.decisions["prompt_cache_key"] = req.prompt_cache_key

