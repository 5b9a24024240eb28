"""The gateway pipeline: an ordered chain of stages, each one cost lever.

A stage is an object with a `name` and `async handle(call, next) -> Reply`. It may
- short-circuit: return a Reply without awaiting `next` (a cache hit),
- rewrite: change `call.target_model`, or edit the request through `call.edit_request()` (a private copy:
  the request other stages hold is never changed under them), before awaiting `next` (route, trim, plan),
- observe: await `next(call)` and look at the Reply (ledger, cache write, shadow evaluation).
A stage that makes the call cheaper appends a `Saving` (`call.save`), and a cost the call incurred besides
the answer (a cascade's first attempt, a billed retry) a `Cost` (`call.spend`); the ledger sums them.
The base class, its options and the services a stage may use are in `scrimp.stage`.
The last link is the upstream call. The HTTP server, the in-process client and `simulate` all run this
same chain, so a saving measured anywhere is the saving the gateway makes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from scrimp.canonical import ChatRequest, ChatResponse, Usage

_id_key = os.urandom(32)  # per process; ids are a keyed hash of a counter: unique, not guessable, and cheap
_id_counter = itertools.count()


def new_request_id() -> str:
    """A unique request id ("req_" + 24 hex digits). Response ids are derived from it and act as capabilities
    (OpenAI's Responses API), so they must not be predictable from ids seen before; a keyed BLAKE2 of a counter
    costs about a microsecond, where a system call per request (os.urandom) cost more."""
    n = next(_id_counter).to_bytes(8, "little")
    return "req_" + hashlib.blake2b(n, key=_id_key, digest_size=12).hexdigest()


@dataclass
class StreamEvent:
    """A canonical streaming event (Anthropic's event model, flattened).

    kind: "text" (index, text) | "tool_start" (index, id, name) | "tool_delta" (index, partial_json)
          | "block_stop" (index) | "done" (response: the complete ChatResponse with real usage)
          | "native" (an event with no canonical meaning: `raw` from an upstream speaking the client's API, or,
            with `response`, the start of a replayed answer that has its `output_items`).
    choice: which of the n choices (OpenAI `n` > 1) a text/tool/block event belongs to; 0 for the first, whose
    blocks are the response's `content`, k > 0 for `extra_choices[k - 1]`.
    raw: the upstream's own event this one came from, when it speaks the client's API (the Responses API to an
    OpenAI model): the client's wire passes it on as it is; other consumers read the canonical fields.
    """

    kind: str
    index: int = 0
    text: str = ""
    id: str = ""
    name: str = ""
    response: ChatResponse | None = None
    choice: int = 0
    raw: dict[str, Any] | None = None


@dataclass
class Reply:
    """What a stage returns. Either a complete `response`, or a `stream` of events whose last one is
    "done" and carries the complete response. A stage that wraps a stream must pass every event on."""

    response: ChatResponse | None = None
    stream: AsyncIterator[StreamEvent] | None = None
    served_model: str = ""
    served_provider: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # extra x-scrimp-* response headers
    # For a stream: returns what was received so far (usage estimated where the provider sent none), so a
    # stream the client abandoned can still be recorded.
    partial: Callable[[], ChatResponse] | None = None
    billed: bool = True  # False when no provider was paid for this answer (a cache hit)


@dataclass
class Counterfactual:
    """The call as it would have been without the levers settled so far: the usage it would have had and the
    model that would have answered. The ledger starts from what really happened and settles the savings
    innermost first, each lever undoing its own effect, so the sum of the savings is exactly the cost of the
    call with no lever minus what it cost (a routed call whose prefix was also prompt-cached: the planner
    prices the uncached input at the model that answered, the router that same input at the requested model)."""

    usage: Usage
    model: str
    provider: str | None = None


# A priced saving: given the call without the levers inside this one, what this lever saved, and the call
# without this lever either.
Pricer = Callable[[Counterfactual], tuple[float, Counterfactual]]


def priced_at(model: str, provider: str | None) -> Pricer:
    """A lever that sent the call to another model than `model` (a route, a budget's downgrade): it saved the same
    usage priced at `model` against the model that really answered (a fallback may have answered `model` itself:
    then nothing was saved)."""
    from scrimp import pricing

    def saving(without: Counterfactual) -> tuple[float, Counterfactual]:
        if without.model == model:
            return 0.0, without
        try:
            usd = pricing.cost(model, provider, without.usage) - pricing.cost(without.model, without.provider,
                                                                              without.usage)
        except pricing.UnknownPrice:
            usd = 0.0
        return usd, Counterfactual(without.usage, model, provider)

    return saving


@dataclass
class Saving:
    """What one lever saved on one call, in USD, and what it compared against. A saving known only once the
    answer's usage is (a routed or prompt-cached call) gives `priced` (see Counterfactual); a negative figure is
    a lever that cost more than it saved on this call (a cache write)."""

    lever: str
    compared_to: str
    usd: float = 0.0
    priced: Pricer | None = None

    def settle(self, without_inner: Counterfactual | None) -> Counterfactual | None:
        """Fix `usd`; returns the call without this lever as well (None when nothing was answered)."""
        if self.priced is not None:
            if without_inner is None:
                self.usd = 0.0
            else:
                usd, without_inner = self.priced(without_inner)
                self.usd = float(usd)
            self.priced = None
        return without_inner


@dataclass
class Cost:
    """Spend a call incurred besides the answer it returned (a cascade's rejected attempt, an attempt the
    provider billed before a retry), charged to `lever` (or to no lever: "upstream")."""

    usd: float
    what: str
    lever: str = "upstream"
    model: str | None = None


@dataclass
class Attribution:
    tenant: str = "default"
    user: str | None = None
    feature: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallerKey:
    """The gateway key a call came with, as the auth guard resolved it (scrimp.auth, docs/auth.md): who it serves
    and what it may do. A budgets stage reads it from `Call.key`; the ledger records its id."""

    id: str
    tenant: str
    name: str | None = None
    feature: str | None = None  # calls with this key are attributed to this feature
    may_set_tenant: bool = False  # the key may name the tenant per request
    budget_usd: float | None = None  # stored with the key; the budgets stage enforces it
    budget_period: str | None = None  # "day" | "month"


@dataclass
class Call:
    """One client request on its way through the pipeline, with what the stages decided about it."""

    request: ChatRequest
    attribution: Attribution = field(default_factory=Attribution)
    requested_model: str = ""
    target_model: str = ""  # the model to call upstream; routing stages change it
    request_id: str = field(default_factory=lambda: new_request_id())
    started: float = field(default_factory=time.perf_counter)
    # the provider's complete answer, set by the upstream as soon as it has it: if a stage fails after that,
    # the ledger still charges what the provider billed
    answer: Reply | None = field(default=None, repr=False)
    # the caller's own provider key, forwarded to models configured without one; never in the ledger or logs
    client_key: str = field(default="", repr=False)
    key: CallerKey | None = None  # the gateway key it came with (None: auth off, or no gateway key presented)
    cache_control: set[str] = field(default_factory=set)  # from x-scrimp-cache-control: no-cache/no-store
    # the request's x-scrimp-* and idempotency-key headers (lower-case names): per-request instructions to levers,
    # such as x-scrimp-defer for the batch lane; never the client's credentials
    hints: dict[str, str] = field(default_factory=dict)
    # a stage wrote this call's ledger row itself (the batch lane records each line exactly once, with its durable
    # state, whenever its answer is known): the ledger stage writes none
    recorded: bool = False
    decisions: dict[str, Any] = field(default_factory=dict)  # e.g. {"cache": "exact", "route": "cheap"}
    savings: list[Saving] = field(default_factory=list)  # one per lever that made this call cheaper
    costs: list[Cost] = field(default_factory=list)  # spend besides the answer (a cascade's first attempt)
    cost_usd: float | None = None  # set by the ledger stage once the usage is known
    baseline_usd: float | None = None  # what the call would have cost without scrimp
    status: str = "ok"  # "ok" | "error" | "client_cancelled"
    error: str | None = None
    first_token_at: float | None = None  # perf_counter time of the first streamed event
    # sentence vectors already computed for this call, by (embedder key, text): the semantic cache and the
    # router use the same model on the same question, and it is embedded once
    embeddings: dict[tuple[str, str], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.requested_model = self.requested_model or self.request.model
        self.target_model = self.target_model or self.request.model

    def save(self, lever: str, compared_to: str, usd: float = 0.0, priced: Pricer | None = None) -> None:
        """Record that `lever` made this call cheaper (see Saving)."""
        self.savings.append(Saving(lever, compared_to, usd, priced))

    def spend(self, usd: float, what: str, lever: str = "upstream", model: str | None = None) -> None:
        """Record spend besides the answer (see Cost)."""
        self.costs.append(Cost(usd, what, lever, model))

    def edit_request(self) -> ChatRequest:
        """A private copy of the request for this stage to change (copy-on-write): the request object that
        earlier stages, a cascade's other attempt or a cache key were made from stays as it was."""
        self.request = self.request.copy()
        return self.request

    def fork(self, **changes: Any) -> Call:
        """A separate attempt at this call (a cascade's cheap try, a shadow call): its own request reference,
        decisions and records, so nothing it does shows in this call unless adopted."""
        return dataclasses.replace(self, decisions=dict(self.decisions), savings=[], costs=[],
                                   embeddings=self.embeddings, **changes)

    def adopt(self, attempt: Call) -> None:
        """Take a fork's decisions and records as this call's own (the attempt that answered)."""
        for key, value in attempt.decisions.items():
            self.decisions.setdefault(key, value)
        self.savings.extend(attempt.savings)
        self.costs.extend(attempt.costs)
        self.answer = self.answer or attempt.answer
        self.first_token_at = self.first_token_at or attempt.first_token_at


Next = Callable[[Call], Awaitable[Reply]]


class Handler(Protocol):
    """What the pipeline needs of a stage (the full contract is `scrimp.stage.Stage`)."""

    name: str

    async def handle(self, call: Call, next: Next) -> Reply: ...


class Pipeline:
    """Runs `stages` in order, ending in `terminal` (the upstream call)."""

    def __init__(self, stages: list[Handler], terminal: Next) -> None:
        self.stages = list(stages)
        self.terminal = terminal
        self._chain = self._build()

    def _build(self) -> Next:
        chain: Next = self.terminal
        for stage in reversed(self.stages):
            chain = _link(stage, chain)
        return chain

    async def __call__(self, call: Call) -> Reply:
        return await self._chain(call)


def _link(stage: Handler, nxt: Next) -> Next:
    async def run(call: Call) -> Reply:
        return await stage.handle(call, nxt)

    return run


async def events_from_response(resp: ChatResponse) -> AsyncIterator[StreamEvent]:
    """Replay a complete response as canonical stream events (a cache hit asked for as a stream). An answer with
    the upstream's own output items starts with a "native" event carrying it, for the wire that renders them."""
    if resp.output_items is not None:
        yield StreamEvent("native", response=resp)
    for index, block in enumerate(resp.content):
        if block.get("type") == "text":
            words = block.get("text", "").split(" ")
            for n, word in enumerate(words):
                yield StreamEvent("text", index=index, text=word if n == 0 else " " + word)
        elif block.get("type") == "tool_use":
            yield StreamEvent("tool_start", index=index, id=block.get("id", ""), name=block.get("name", ""))
            yield StreamEvent("tool_delta", index=index, text=orjson.dumps(block.get("input", {})).decode())
        yield StreamEvent("block_stop", index=index)
    yield StreamEvent("done", response=resp)


async def replay(resp: ChatResponse) -> AsyncIterator[StreamEvent]:
    """A complete response as a stream with every choice (n > 1), then the final event: a cache hit or a
    cascade's accepted answer asked for as a stream."""
    done = None
    async for event in events_from_response(resp):
        if event.kind == "done":
            done = event
        else:
            yield event
    for choice, (blocks, _stop) in enumerate(resp.extra_choices, start=1):
        async for event in events_from_response(dataclasses.replace(resp, content=blocks, extra_choices=[])):
            if event.kind != "done":
                event.choice = choice
                yield event
    if done is not None:
        yield done


async def collect(reply: Reply) -> ChatResponse:
    """Drain a streamed reply (passing nothing on) and return the complete response."""
    if reply.response is not None and reply.stream is None:
        return reply.response
    assert reply.stream is not None
    final: ChatResponse | None = None
    async for event in reply.stream:
        if event.kind == "done":
            final = event.response
    if final is None:
        raise RuntimeError("stream ended without a final response")
    reply.response = final
    return final
