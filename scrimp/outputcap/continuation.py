"""Continuing an answer stopped at a cap scrimp set: the same request with the partial answer as the start of
the assistant turn (a prefill), and the two answers joined into one with their usage summed."""

from __future__ import annotations

import dataclasses

from scrimp.canonical import ChatRequest, ChatResponse, Usage


def continuation_request(req: ChatRequest, partial: ChatResponse, max_tokens: int | None) -> ChatRequest:
    """`req` asked again with `partial`'s text as the start of the reply. Trailing whitespace is left out of the
    prefill (Anthropic refuses it); a request that already ended with an assistant prefill has it extended."""
    new = req.copy()
    text = partial.text().rstrip()
    last = new.messages[-1] if new.messages else None
    if last is not None and last["role"] == "assistant":
        before = "".join(b.get("text", "") for b in last["content"] if b.get("type") == "text")
        new.messages[-1] = {**last, "content": [{"type": "text", "text": (before + text).rstrip()}]}
    else:
        new.messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
    new.max_tokens = max_tokens
    new.native = None
    return new


def add_usage(a: Usage, b: Usage) -> Usage:
    return Usage(input=a.input + b.input, output=a.output + b.output, cache_read=a.cache_read + b.cache_read,
                 cache_write_5m=a.cache_write_5m + b.cache_write_5m, cache_write_1h=a.cache_write_1h + b.cache_write_1h,
                 reasoning=a.reasoning + b.reasoning)


def last_text_index(resp: ChatResponse) -> int:
    """Where a continuation's text goes: the partial answer's last text block (a new one if it has none)."""
    for i in range(len(resp.content) - 1, -1, -1):
        if resp.content[i].get("type") == "text":
            return i
    return len(resp.content)


def join(first: ChatResponse, rest: ChatResponse) -> ChatResponse:
    """One answer: `first`'s blocks with `rest`'s text appended to its last text block, `rest`'s stop reason, and
    both calls' usage."""
    content = list(first.content)
    at = last_text_index(first)
    more = list(rest.content)
    if more and more[0].get("type") == "text":
        head = content[at]["text"].rstrip() if at < len(content) else ""
        block = {**(content[at] if at < len(content) else {"type": "text"}), "text": head + more.pop(0)["text"]}
        if at < len(content):
            content[at] = block
        else:
            content.append(block)
    content.extend(more)
    return dataclasses.replace(first, content=content, stop_reason=rest.stop_reason, stop_sequence=rest.stop_sequence,
                               usage=add_usage(first.usage, rest.usage))


def without_continuation(usage: Usage, extra_input: Usage) -> Usage:
    """`usage` less the input a continuation call paid (`extra_input`'s input fields, each taken from its own
    field, what is missing there from the uncached input): the one call it would have been."""
    out = dataclasses.replace(usage)
    short = 0
    for name in ("cache_write_1h", "cache_write_5m", "cache_read", "input"):
        want = getattr(extra_input, name) + (short if name == "input" else 0)
        have = getattr(out, name)
        take = min(have, want)
        setattr(out, name, have - take)
        short += getattr(extra_input, name) - take if name != "input" else 0
    return out
