"""The stage registry: config names -> factories. A new lever registers here and needs no server change.

Each factory is `build(section: dict, ctx: GatewayContext) -> Stage`; a stage may also define
`async start()` and `async close()`, which the server calls on start-up and graceful shutdown.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrimp.gateway.config import GatewayConfig
    from scrimp.gateway.upstream import Upstream
    from scrimp.pipeline import Stage

REGISTRY: dict[str, str] = {
    "ledger": "scrimp.ledger.stage:build",
    "exact_cache": "scrimp.cache.exact:build",
    "semantic_cache": "scrimp.cache.semantic.stage:build",
    "router": "scrimp.router.stage:build",
    "prompt_cache": "scrimp.promptcache.stage:build",
}


@dataclass
class GatewayContext:
    config: GatewayConfig
    upstream: Upstream
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the ledger store, for stages that read it


def build_stages(ctx: GatewayContext) -> list[Stage]:
    stages = []
    for section in ctx.config.stages:
        module, _, attr = REGISTRY[section["name"]].partition(":")
        factory = getattr(importlib.import_module(module), attr)
        stages.append(factory({k: v for k, v in section.items() if k != "name"}, ctx))
    return stages
