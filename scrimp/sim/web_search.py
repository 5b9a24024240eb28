"""The Responses API's hosted `web_search` tool, simulated (no network).

A model offered `web_search` (or `web_search_preview`, or their dated names) searches once before it answers,
unless `tool_choice` is `none` or forces a function: the output starts with a `web_search_call` item
(`action: {"type": "search", "query": <the last user message>, "sources": [...]}`), then the answer's message,
whose `output_text` carries a `url_citation` annotation for the one simulated source. The search adds no tokens
(the reply and usage are the chat path's); each search is counted as endpoint `responses.web_search`.
"""

from __future__ import annotations

import re
from typing import Any

from scrimp.sim.errors import invalid

TYPES = ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11")
CONTEXT_SIZES = ("low", "medium", "high")


def tool(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A web search tool checked, as the Response echoes it."""
    size = raw.get("search_context_size")
    if size is not None and size not in CONTEXT_SIZES:
        raise invalid(f"Invalid value: {size!r}. Supported values are: 'low', 'medium', and 'high'.",
                      f"{where}.search_context_size")
    return {**raw, "search_context_size": size or "medium"}


def source(query: str) -> dict[str, str]:
    """The one page a simulated search finds: the same for the same query."""
    slug = "-".join(re.findall(r"[a-z0-9]+", query.lower())[:6]) or "search"
    return {"type": "url", "url": f"https://example.com/{slug}"}


def call_item(item_id: str, query: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "web_search_call", "status": status,
            "action": {"type": "search", "query": query, "sources": [source(query)]}}


def cite(message: dict[str, Any], query: str) -> dict[str, Any]:
    """The answer's message citing the search's source over its whole text."""
    part = message["content"][0]
    url = source(query)["url"]
    annotation = {"type": "url_citation", "start_index": 0, "end_index": len(part["text"]), "url": url,
                  "title": f"Results for {query[:60]}"}
    return {**message, "content": [{**part, "annotations": [annotation]}, *message["content"][1:]]}
