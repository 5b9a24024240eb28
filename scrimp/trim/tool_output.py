"""Shrinking tool output before it goes back to the model: HTML to text, JSON pruned (nulls and empty fields
dropped, long arrays shortened with a note of what was dropped, long strings cut), repeated log lines collapsed.

Each function is pure and deterministic: the same tool output always shrinks to the same text, so a
conversation re-sent turn after turn keeps an identical (cacheable) prefix.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import orjson

_HTML_HINT = re.compile(r"<(?:!doctype|html|head|body|div|p|span|table|ul|li|a |script|style|h[1-6]|br)\b", re.IGNORECASE)
_SKIP_TAGS = {"script", "style", "noscript", "svg", "head", "template"}
_BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header",
               "footer", "table", "ul", "ol", "pre", "blockquote", "title", "nav"}


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def looks_like_html(text: str) -> bool:
    head = text[:2000]
    return head.lstrip().startswith("<") and len(_HTML_HINT.findall(head)) >= 2


def html_to_text(html: str) -> str:
    """Visible text of an HTML page: scripts, styles and markup gone, one line per block, blank runs squeezed."""
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    return "\n".join(line for line in lines if line)


def prune_json(value: Any, max_items: int, max_string: int) -> Any:
    """Drop nulls and empty containers, keep the first `max_items` of a longer array with a note of how many
    were left out, cut strings longer than `max_string` characters (with a note)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None or v == "" or v == [] or v == {}:
                continue
            out[k] = prune_json(v, max_items, max_string)
        return out
    if isinstance(value, list):
        kept = [prune_json(v, max_items, max_string) for v in value[:max_items]]
        if len(value) > max_items:
            kept.append(f"... {len(value) - max_items} more items omitted ({len(value)} in all)")
        return kept
    if isinstance(value, str) and len(value) > max_string:
        return value[:max_string] + f"... ({len(value) - max_string} more characters omitted)"
    return value


# What varies between repeats of one log line: timestamps and ids. Other numbers count (a table of values is
# not a repeated line).
_STAMPS = re.compile(r"\d{4}-\d{2}-\d{2}[T ]?(?:\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
                     r"|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b|\b[0-9a-f]{8}-[0-9a-f-]{27}\b|\b[0-9a-f]{12,}\b", re.IGNORECASE)


def collapse_repeats(text: str, min_run: int = 3) -> str:
    """Collapse runs of log lines that differ only in their timestamps and ids into the first line of the run
    and a note of how many followed."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        shape = _STAMPS.sub("#", lines[i]).strip()
        j = i + 1
        while j < len(lines) and _STAMPS.sub("#", lines[j]).strip() == shape:
            j += 1
        run = j - i
        out.append(lines[i])
        if run >= min_run and shape:
            out.append(f"[previous line repeated {run - 1} more times]")
        else:
            out.extend(lines[i + 1 : j])
        i = j
    return "\n".join(out)


def shrink_text(text: str, *, html: bool = True, json: bool = True, logs: bool = True, max_items: int = 10,
                max_string: int = 2000) -> tuple[str, str | None]:
    """The shrunk tool output and what was done ("html", "json", "logs"), or (text, None) when nothing applies."""
    stripped = text.strip()
    if json and stripped[:1] in ("{", "["):
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            value = None
        if value is not None:
            pruned = orjson.dumps(prune_json(value, max_items, max_string)).decode()
            return (pruned, "json") if len(pruned) < len(text) else (text, None)
    if html and looks_like_html(stripped):
        return html_to_text(stripped), "html"
    if logs and text.count("\n") >= 3:
        collapsed = collapse_repeats(text)
        if len(collapsed) < len(text):
            return collapsed, "logs"
    return text, None
