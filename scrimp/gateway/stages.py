"""Builds the configured stages: each from its checked section and one shared context, sealed once all are
built (the contract itself is `scrimp.stage`)."""

from __future__ import annotations

from scrimp.gateway.config import GatewayConfig
from scrimp.options import Where
from scrimp.stage import Stage, StageContext, Upstream, build_stage


def build_stages(config: GatewayConfig, upstream: Upstream) -> tuple[list[Stage], StageContext]:
    ctx = StageContext(config.models, upstream)
    stages = []
    for i, section in enumerate(config.stages):
        where = config.stage_wheres[i] if i < len(config.stage_wheres) else Where(path=f"stages.{section['name']}")
        stages.append(build_stage(section["name"], {k: v for k, v in section.items() if k != "name"}, ctx, where))
    ctx.seal()
    return stages, ctx
