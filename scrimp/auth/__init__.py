"""Gateway keys and tenancy (docs/auth.md): keys stored hashed in the ledger's database or listed in the config,
each bound to a tenant; the guard in front of every endpoint; the admin endpoints; `scrimp keys`.

The gateway builds an `Auth` when its config has an `auth:` section and mounts it on its app; without one,
nothing here runs and the gateway behaves as it always did. Budgets and rate limits, which will read the
resolved key from `Call.key`, are not built yet."""

from __future__ import annotations

from collections import Counter
from typing import Any

from scrimp.auth.keys import KeyRecord, KeyStore
from scrimp.auth.options import AuthOptions, ConfigKey
from scrimp.auth.resolver import KeyResolver


class Auth:
    """The gateway's keys (config and database) and the guard that checks them."""

    name = "auth"

    def __init__(self, options: AuthOptions, ledger: Any) -> None:
        self.options = options
        self.resolver = KeyResolver(options, KeyStore.of_ledger(ledger))
        self.refused: Counter[str] = Counter()  # requests the guard refused, by reason

    def mount(self, app: Any, stages: list[Any]) -> None:
        """Add the key-management routes and the guard to a Starlette app (before it starts). Every stage route
        is an admin endpoint unless its stage lists its path in `caller_paths` (tenant-scoped endpoints callers
        use with their own key, like the semantic cache's feedback)."""
        from scrimp.auth import http
        from scrimp.auth.guard import AuthGuard

        # key management over HTTP only with an admin key to guard it
        key_routes = http.routes(self.resolver) if self.resolver.has_admin else []
        app.router.routes.extend(key_routes)
        admin = [route for stage in stages for route in stage.http_routes()
                 if getattr(route, "path", None) not in getattr(stage, "caller_paths", ())]
        # pages that hold no data (the dashboard's shell and scripts): a browser loads them without a key
        open_paths = frozenset(p for stage in stages for p in getattr(stage, "open_paths", ()))
        app.add_middleware(AuthGuard, resolver=self.resolver, admin_routes=[*key_routes, *admin],
                           required=self.options.required, protect_metrics=self.options.protect_metrics,
                           refused=self.refused, open_paths=open_paths)

    def metrics(self) -> list[Any]:
        """For GET /metrics: refusals by reason (missing_api_key, invalid_api_key, revoked_api_key,
        admin_key_required, ...) and the key lookups the database answered."""
        from scrimp.metrics import Sample

        out = [Sample("scrimp_auth_refused_total", "counter", "Requests the auth guard refused, by reason.", n,
                      {"reason": reason}) for reason, n in sorted(self.refused.items())]
        out.append(Sample("scrimp_auth_key_lookups_total", "counter", "Gateway keys looked up in the database "
                          "(the rest were answered from the config or the in-process cache).",
                          self.resolver.lookups))
        return out

    async def start(self) -> None:
        await self.resolver.start()

    async def close(self) -> None:
        await self.resolver.close()


__all__ = ["Auth", "AuthOptions", "ConfigKey", "KeyRecord", "KeyResolver", "KeyStore"]
