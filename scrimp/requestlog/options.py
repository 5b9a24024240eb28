"""The request log's config section."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scrimp.options import Where
from scrimp.requestlog.redact import parse_path


@dataclass
class RedactionOptions:
    defaults: bool = True  # API keys and e-mail addresses
    patterns: list[str] = field(default_factory=list)  # regexes; each match replaced
    json_paths: list[str] = field(default_factory=list)  # canonical body paths (messages[*].content, metadata.x)
    replacement: str = "[REDACTED]"

    def check(self, where: Where) -> None:
        for i, pattern in enumerate(self.patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise where.key("patterns").item(i).error(f"not a valid regex: {exc}") from exc
        for i, path in enumerate(self.json_paths):
            try:
                parse_path(path)
            except ValueError as exc:
                raise where.key("json_paths").item(i).error(str(exc)) from exc


@dataclass
class RequestLogOptions:
    features: list[str]  # the features whose calls are logged ("*": every call); opt-in, nothing by default
    tenants: list[str] = field(default_factory=list)  # only these tenants' calls (empty: any tenant)
    retention_days: float = 30.0
    max_rows_per_tenant: int = 100_000  # each tenant's oldest rows beyond this are deleted
    max_body_bytes: int = 65_536  # each stored body (request, response) is cut to fit
    purge_every_s: float = 60.0
    redact: RedactionOptions = field(default_factory=RedactionOptions)

    def check(self, where: Where) -> None:
        if not self.features:
            raise where.key("features").error("name the features to log (or '*' for every call)")
        if self.retention_days <= 0:
            raise where.key("retention_days").error("must be more than 0")
        if self.max_rows_per_tenant < 1:
            raise where.key("max_rows_per_tenant").error("must be at least 1")
        if self.max_body_bytes < 1024:
            raise where.key("max_body_bytes").error("must be at least 1024")

