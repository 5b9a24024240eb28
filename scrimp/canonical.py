"""The one request/response model every stage sees; wire formats are translated at the edges.

Shapes follow Anthropic's Messages API (the richer of the two: system apart, content blocks,
tool_use / tool_result blocks, cache_control on blocks); OpenAI-only knobs are fields of their own.
Content blocks stay plain dicts so stages can add keys (e.g. `cache_control`) without a schema change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

Format = Literal["openai", "anthropic", "responses"]  # Chat Completions, Messages, OpenAI Responses
# Canonical stop reasons (Anthropic names); the OpenAI edge maps them to finish_reason.
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]  # {"role": "user"|"assistant", "content": [block, ...]}
    system: list[dict[str, Any]] = field(default_factory=list)  # text blocks
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"name", "description", "input_schema"}
    tool_choice: dict[str, Any] | None = None  # {"type": "auto"|"any"|"tool"|"none", "name"?}
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: int | None = None
    response_format: dict[str, Any] | None = None  # OpenAI shape: {"type": "json_object"|"json_schema", ...}
    stream: bool = False
    include_usage: bool = False  # what the *client* asked for (OpenAI stream_options.include_usage)
    user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    prompt_cache_key: str | None = None  # OpenAI prompt-cache routing hint
    extra: dict[str, Any] = field(default_factory=dict)  # unknown params, passed to a same-format upstream
    inbound: Format = "openai"  # the wire format the client spoke
    # The client's own request for an upstream that speaks its API natively (a Responses request to an OpenAI
    # model: scrimp.formats.responses.Native), sent with the levers' edits applied; None for the others.
    native: Any = field(default=None, repr=False, compare=False)

    def copy(self) -> ChatRequest:
        """A copy whose lists (system, tools, messages and each message's content) can be changed without
        touching this request. Blocks are shared: replace a block, never change one in place."""
        return replace(self, system=list(self.system), tools=list(self.tools), stop=list(self.stop),
                       messages=[{**m, "content": list(m["content"])} for m in self.messages],
                       metadata=dict(self.metadata), extra=dict(self.extra))

    def final_user_text(self) -> str:
        """Text of the last user turn (what semantic caching and routing look at)."""
        for msg in reversed(self.messages):
            if msg["role"] == "user":
                return "\n".join(b.get("text", "") for b in msg["content"] if b.get("type") == "text")
        return ""

    def system_text(self) -> str:
        return "\n".join(b.get("text", "") for b in self.system if b.get("type") == "text")


@dataclass
class Usage:
    """Token counts with no overlap between fields (unlike either wire format).

    OpenAI prompt_tokens = input + cache_read (+ writes, which OpenAI does not report separately);
    Anthropic input_tokens = input only, cache tokens are on top.
    """

    input: int = 0  # uncached input tokens
    output: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0  # part of output, reported for information

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def total_input(self) -> int:
        return self.input + self.cache_read + self.cache_write


@dataclass
class ChatResponse:
    id: str
    model: str
    content: list[dict[str, Any]]  # text and tool_use blocks
    stop_reason: StopReason | None = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    # Further choices when the client asked for n > 1 (OpenAI only): each a list of blocks + stop reason.
    extra_choices: list[tuple[list[dict[str, Any]], StopReason | None]] = field(default_factory=list)
    # The upstream's own Responses API output items, when it answered through that API: what the Responses wire
    # renders, hosted tool calls (web_search_call, ...) and annotations included. `content` holds what the
    # canonical model can (text, function calls) for every other stage and wire.
    output_items: list[dict[str, Any]] | None = None

    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")
