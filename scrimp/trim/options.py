"""The trim stage's config section: one policy per feature, each part switchable."""

from __future__ import annotations

from dataclasses import dataclass, field

from scrimp.options import Where


@dataclass
class HistoryPolicy:
    """Keep the recent turns and the earlier ones the final user turn needs; summarise the rest once."""

    enabled: bool = True
    trigger_tokens: int = 4000  # trim a conversation whose history exceeds this many tokens...
    trigger_turns: int | None = None  # ...or this many messages (either triggers)
    keep_recent: int = 6  # messages always kept verbatim at the end of the history
    checkpoint_every: int = 10  # the summarised prefix moves in steps of this many messages (stable prefix)
    keep_ratio: float = 0.1  # keep at most this share of the history's tokens (summary and excerpts included)...
    min_keep_tokens: int = 1500  # ...but never less than this many
    bm25_weight: float = 0.7  # lexical vs embedding relevance of earlier turns
    neighbour_weight: float = 0.8  # a turn next to a relevant one scores this share of its neighbour's score
    neighbour_reach: int = 2  # ...and one two turns away 0.75x that
    summary: bool = True  # replace the turns left out by a summary (else by a one-line note)
    summary_model: str | None = None  # a cheap configured model; None: the model the call goes to
    summary_max_tokens: int = 200

    def check(self, where: Where) -> None:
        if not 0 < self.keep_ratio <= 1:
            raise where.key("keep_ratio").error("must be in (0, 1]")
        if self.checkpoint_every < 1:
            raise where.key("checkpoint_every").error("must be at least 1")


@dataclass
class ChunksPolicy:
    """Re-rank retrieved chunks against the question; keep the best that fit, in their original order."""

    enabled: bool = True
    top_k: int | None = None
    budget_tokens: int | None = None
    keep_ratio: float | None = 0.4  # keep at most this share of a message's chunk tokens
    min_chunks: int = 4  # a message with fewer chunks is left alone
    keep_at_least: int = 1
    bm25_weight: float = 0.6
    embed_chars: int | None = 200  # embed each chunk's first characters (BM25 reads it all); None: all of it
    second_hop: bool = True  # also rank for the question plus the best chunk (bridge questions)
    link_boost: float = 0.5  # a chunk whose title the best chunks mention gains this share of their score

    def check(self, where: Where) -> None:
        if self.keep_ratio is not None and not 0 < self.keep_ratio <= 1:
            raise where.key("keep_ratio").error("must be in (0, 1]")


@dataclass
class ToolOutputPolicy:
    """Shrink tool results (HTML, JSON, logs) and mask the output of old tool calls."""

    enabled: bool = True
    min_tokens: int = 200  # outputs shorter than this are left as they are
    html: bool = True
    json: bool = True
    logs: bool = True
    max_array_items: int = 10
    max_string_chars: int = 2000
    mask: bool = True
    keep_last: int = 3  # the last few tool outputs are never masked
    mask_every: int = 4  # old outputs are masked in steps of this many (stable prefix)
    mask_min_tokens: int = 100


@dataclass
class TrimPolicy:
    enabled: bool = True
    history: HistoryPolicy = field(default_factory=HistoryPolicy)
    chunks: ChunksPolicy = field(default_factory=ChunksPolicy)
    tool_output: ToolOutputPolicy = field(default_factory=ToolOutputPolicy)


@dataclass
class TrimOptions:
    """`default` applies to every feature not listed under `features` (a listed feature's policy is complete:
    unset keys take the shipped defaults, not `default`'s)."""

    default: TrimPolicy = field(default_factory=TrimPolicy)
    features: dict[str, TrimPolicy] = field(default_factory=dict)
    cache_aware: bool = True  # weigh a trim against the provider's prompt cache (reads, writes)
    cache_ttl_s: float = 300.0  # how long a sent prefix is assumed cached (the 5-minute entry)
    max_conversations: int = 10_000  # conversation states and summaries remembered per process

    def policy(self, feature: str | None) -> TrimPolicy:
        return self.features.get(feature or "-", self.default)
