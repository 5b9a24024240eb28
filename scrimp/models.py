"""What scrimp knows about a configured model: who serves it, where, under which name."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelSpec:
    name: str  # what clients ask for
    provider: str  # "openai" | "anthropic"
    base_url: str  # OpenAI: ".../v1"; Anthropic: without "/v1" (the SDKs' conventions)
    api_key: str | None = None  # None: forward the client's own key
    tier: str = "mid"
    upstream_name: str | None = None  # the provider's name for it, when different
    fallbacks: list[str] = field(default_factory=list)
    max_tokens_field: str = "max_tokens"  # o-series / gpt-5 models want "max_completion_tokens"
    # request parameters the model refuses (dropped before sending, e.g. temperature for reasoning models;
    # "temperature+top_p" drops top_p when both are set, as recent Claude models require)
    rejects: list[str] = field(default_factory=list)
    # OpenAI-compatible servers without OpenAI's Responses API (vLLM, Ollama, ...): false sends Responses-API
    # clients' requests as Chat Completions (and refuses what only OpenAI runs, such as hosted tools)
    responses_api: bool = True

    @property
    def remote_name(self) -> str:
        return self.upstream_name or self.name

    @property
    def native_responses(self) -> bool:
        """Takes a Responses-API request as it is (OpenAI's own API, hosted tools included)."""
        return self.provider == "openai" and self.responses_api
