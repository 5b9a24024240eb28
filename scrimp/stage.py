"""The stage contract: what a lever implements, and the services it may use.

A lever is one package with one `Stage` subclass and its options dataclass. It is found by name through the
`scrimp.stages` entry-point group (built-ins are registered there too, in pyproject.toml), so a third-party
package adds a lever by declaring

    [project.entry-points."scrimp.stages"]
    my_lever = "my_package.stage:MyLever"

and a section `- my_lever: {...}` in the gateway's `stages`. The gateway builds every stage from its checked
options and a `StageContext`, then seals the context; services (the ledger, the upstream, the embedder) are
read from it only after that, in `start()` or `handle()`, so the order of the config never changes what a
stage sees. A lever never imports `scrimp.gateway`.

A stage that makes a call cheaper says so with `call.save(...)`; a cost the call incurred elsewhere (a
cascade's first attempt, a billed retry) with `call.spend(...)`. The ledger stores and sums those records
and knows no lever by name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from scrimp.models import ModelSpec
from scrimp.options import ConfigError, Where, parse_options
from scrimp.pipeline import Call, Next, Reply

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from scrimp.metrics import Sample

ENTRY_POINT_GROUP = "scrimp.stages"
log = logging.getLogger("scrimp.stage")


@dataclass
class NoOptions:
    """A stage that takes no options."""


class Upstream(Protocol):
    """The provider call the pipeline ends in; stages that make calls of their own (a shadow evaluation, a
    judge, a summary) go through it too, so retries, fallbacks and keys apply."""

    async def __call__(self, call: Call) -> Reply: ...


class LedgerWriter(Protocol):
    """The part of the ledger store a stage may use: queue a row for one of the ledger's tables, read it back
    (`?` placeholders, in either database), and wait until what was queued is written."""

    def write(self, row: dict[str, Any], table: str = "calls") -> None: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def flush(self) -> None: ...


class ServicesNotReady(RuntimeError):
    pass


class StageContext:
    """Shared services, typed. Stages keep the context and read services after `seal()` (from `start()` on)."""

    def __init__(self, models: Mapping[str, ModelSpec], upstream: Upstream,
                 clock: Callable[[], float] = time.time) -> None:
        self.models = models
        self.upstream = upstream
        self.clock = clock
        self._ledger: LedgerWriter | None = None
        self._pipeline: Upstream | None = None
        self._sealed = False

    # -- provided by stages while they are built ------------------------------------------------------
    def provide_ledger(self, store: LedgerWriter) -> None:
        if self._sealed:
            raise ServicesNotReady("services are provided while stages are built, not after")
        self._ledger = store

    def seal(self) -> None:
        self._sealed = True

    def provide_pipeline(self, pipeline: Upstream) -> None:
        """Set by whoever runs the chain (the gateway), once it is built from these stages."""
        self._pipeline = pipeline

    def _ready(self, what: str) -> None:
        if not self._sealed:
            raise ServicesNotReady(f"the {what} is resolved once every stage is built: read it in start() or "
                                   "handle(), not while the stage is built")

    @property
    def ledger(self) -> LedgerWriter | None:
        """The ledger store (`write`, `query`, `flush`), or None when no ledger stage is configured."""
        self._ready("ledger")
        return self._ledger

    @property
    def pipeline(self) -> Upstream:
        """The whole chain from its first stage: `await ctx.pipeline(call) -> Reply`, for a stage that starts calls
        of its own and wants every lever to apply to them (the batch lane's fire-and-forget jobs)."""
        self._ready("pipeline")
        if self._pipeline is None:
            raise ServicesNotReady("no pipeline runs these stages (they were built outside a gateway)")
        return self._pipeline

    # -- always there ------------------------------------------------------------------------------------
    def provider_of(self, model: str) -> str | None:
        spec = self.models.get(model)
        return spec.provider if spec is not None else None

    def embedder(self, *, int8: bool = True) -> Any:
        """The local sentence embedder (MiniLM, ONNX), one per process, shared by every stage that embeds."""
        from scrimp.embedding import shared_minilm

        return shared_minilm(int8=int8)


class Stage:
    """Base of every lever. Subclasses set `name` and `Options`, implement `handle`, and may override the
    optional hooks, which default to nothing."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    # Paths among `http_routes()` that callers use with their own gateway key (tenant-scoped, like the semantic
    # cache's feedback); with `auth:` configured, every other route of the stage needs the admin key.
    caller_paths: ClassVar[tuple[str, ...]] = ()
    # Paths among `http_routes()` anyone may load, even with `auth:` (a page's shell and scripts holding no data;
    # the data it reads comes from admin routes).
    open_paths: tuple[str, ...] = ()

    @classmethod
    def build(cls, options: Any, ctx: StageContext) -> Stage:
        """Make the stage from its checked options. Raise ConfigError for what the types cannot check."""
        return cls()

    async def handle(self, call: Call, next: Next) -> Reply:
        return await next(call)

    async def start(self) -> None:
        """Called once before the first request (open stores, load models)."""

    async def close(self) -> None:
        """Called once on graceful shutdown, in reverse order (flush, save)."""

    def http_routes(self) -> list[BaseRoute]:
        """HTTP routes this stage serves (mounted by the gateway): admin endpoints when auth is configured,
        but for the paths listed in `caller_paths`."""
        return []

    def metrics(self) -> list[Sample]:
        """Samples for GET /metrics."""
        return []


# -- the registry ---------------------------------------------------------------------------------------------
_registry: dict[str, Any] | None = None  # name -> an entry point (loaded on first use) or a class
_registered: dict[str, type[Stage]] = {}  # register(): kept across reloads

# Built-in stages, by the same names and classes as scrimp's own entry points: used only when scrimp's
# package metadata is not there (a checkout put on sys.path without being installed).
BUILT_INS = {
    "ledger": "scrimp.ledger.stage:LedgerStage",
    "exact_cache": "scrimp.cache.exact:ExactCacheStage",
    "semantic_cache": "scrimp.cache.semantic.stage:SemanticCacheStage",
    "router": "scrimp.router.stage:RouterStage",
    "prompt_cache": "scrimp.promptcache.stage:PromptCacheStage",
    "budgets": "scrimp.budgets.stage:BudgetsStage",
    "batch": "scrimp.batch.stage:BatchStage",
    "output_cap": "scrimp.outputcap.stage:OutputCapStage",
    "structured": "scrimp.structured.stage:StructuredStage",
    "request_log": "scrimp.requestlog.stage:RequestLogStage",
    "rate_limits": "scrimp.ratelimit.stage:RateLimitsStage",
    "trim": "scrimp.trim.stage:TrimStage",
    "offload": "scrimp.offload.stage:OffloadStage",
}


def registry(*, reload: bool = False) -> dict[str, Any]:
    """Stage name -> class (or its not yet loaded entry point), from every installed package's
    `scrimp.stages` entry points and `register()`. Two packages claiming one name: scrimp's own wins, and
    the clash is logged."""
    global _registry
    if _registry is None or reload:
        found: dict[str, Any] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            owner = ep.dist.name if ep.dist is not None else "?"
            if ep.name in found:
                keep = ep if owner == "scrimp" else found[ep.name]
                log.warning("stage %r is registered by two packages (%s and %s); using %s's", ep.name,
                            owner, _owner(found[ep.name]), _owner(keep))
                found[ep.name] = keep
            else:
                found[ep.name] = ep
        if not any(name in found for name in BUILT_INS):
            found.update({name: EntryPoint(name, ref, ENTRY_POINT_GROUP) for name, ref in BUILT_INS.items()})
        found.update(_registered)
        _registry = found
    return _registry


def _owner(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "scrimp"


def stage_class(name: str, where: Where | None = None) -> type[Stage]:
    where = where or Where()
    known = registry()
    if name not in known:
        known = registry(reload=True)  # a plugin installed since the last look
    if name not in known:
        raise where.error(f"unknown stage {name!r} (known: {', '.join(sorted(known))})")
    entry = known[name]
    if not isinstance(entry, type):
        try:
            entry = entry.load()
        except (ImportError, AttributeError) as exc:
            raise where.error(f"stage {name!r} cannot be loaded: {exc}") from exc
        if not (isinstance(entry, type) and issubclass(entry, Stage)):
            raise where.error(f"stage {name!r} is registered as {entry!r}, which is not a scrimp Stage")
        if entry.name != name:
            raise where.error(f"stage {name!r} is registered as {entry.__name__}, whose name is {entry.name!r}")
        known[name] = entry
    return entry


def check_section(name: str, section: dict[str, Any], where: Where) -> Any:
    """The section's options, checked against what the stage declares."""
    cls = stage_class(name, where)
    return parse_options(cls.Options, section, where)


def build_stage(name: str, section: dict[str, Any], ctx: StageContext, where: Where | None = None) -> Stage:
    where = where or Where(path=f"stages.{name}")
    cls = stage_class(name, where)
    options = parse_options(cls.Options, section, where)
    try:
        return cls.build(options, ctx)
    except ConfigError as exc:
        message = str(exc)
        if where.source != "config" and message.startswith(where.source):
            raise
        # "stages.router.routes.x.cheap: unknown model" -> that key's own line
        if message.startswith(where.path + "."):
            rel, _, rest = message[len(where.path) + 1:].partition(": ")
            sub = where
            for part in rel.split("."):
                sub = sub.key(part)
            raise sub.error(rest) from exc
        raise where.error(message) from exc


def register(name: str, cls: type[Stage]) -> None:
    """Register a stage class in this process (an application embedding scrimp; entry points are the
    way for packages)."""
    _registered[name] = cls
    registry()[name] = cls


__all__ = ["ENTRY_POINT_GROUP", "ConfigError", "LedgerWriter", "NoOptions", "ServicesNotReady", "Stage",
           "StageContext", "Upstream", "build_stage", "check_section", "register", "registry", "stage_class"]
