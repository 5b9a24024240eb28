"""`GET /metrics`: the gateway's state in the Prometheus text format (version 0.0.4), for alerting.

Stages that keep something worth alerting on (the router's drift guard and shadow spend, the semantic
cache's hits) return samples from `Stage.metrics()`; this module only renders them. Written by hand rather
than with a client library: a handful of gauges and counters, no process-global registry to collide
when several gateways live in one process (the tests, an app embedding the in-process gateway)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Sample:
    name: str  # scrimp_..., counters end in _total
    kind: str  # "gauge" or "counter"
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    value = float(value)
    if math.isnan(value):  # a quantity not measured yet
        return "NaN"
    return str(int(value)) if value.is_integer() else repr(value)


def render(samples: Iterable[Sample]) -> str:
    """Samples grouped by name, each name with one HELP and TYPE line."""
    by_name: dict[str, list[Sample]] = {}
    for s in samples:
        by_name.setdefault(s.name, []).append(s)
    lines = []
    for name, group in by_name.items():
        lines.append(f"# HELP {name} {group[0].help}")
        lines.append(f"# TYPE {name} {group[0].kind}")
        for s in group:
            labels = ",".join(f'{k}="{_escape(str(v))}"' for k, v in s.labels.items())
            lines.append(f"{name}{{{labels}}} {_number(s.value)}" if labels else f"{name} {_number(s.value)}")
    return "\n".join(lines) + "\n"


def endpoint(stages: list) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        samples = [Sample("scrimp_up", "gauge", "1 while the gateway serves.", 1)]
        for stage in stages:
            samples.extend(stage.metrics())
        return Response(render(samples), media_type=CONTENT_TYPE)

    return metrics
