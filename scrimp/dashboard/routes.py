"""The dashboard's HTTP routes, mounted by the ledger stage (which owns the data).

`/dashboard` and its scripts are static and hold no data, so a browser loads them without a key; the page
reads everything it draws from `/dashboard/api/overview` (one request per load or filter change) and the
calls behind a chart from `/dashboard/api/calls`, both admin endpoints when `auth:` is configured (the page
sends the admin key its user typed, kept in the tab's sessionStorage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from scrimp.dashboard import queries
from scrimp.stage import LedgerWriter

STATIC = Path(__file__).parent / "static"
FILES = {"/dashboard": ("index.html", "text/html; charset=utf-8"),
         "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/dashboard/chart.umd.min.js": ("chart.umd.min.js", "text/javascript; charset=utf-8")}
PAGE_PATHS = tuple(FILES)


def _file(path: str) -> Any:
    name, media = FILES[path]

    async def serve(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type=media, headers={"cache-control": "no-cache"})

    return serve


def routes(store: LedgerWriter) -> list[Route]:
    async def overview(request: Request) -> Response:
        try:
            f = queries.parse_filters(dict(request.query_params))
        except queries.BadQuery as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error"}}, status_code=400)
        return JSONResponse(await run_in_threadpool(queries.overview, store, f))

    async def calls(request: Request) -> Response:
        q = dict(request.query_params)
        try:
            f = queries.parse_filters(q)
            page = await run_in_threadpool(queries.calls, store, f, q.get("dim", "all"), q.get("key", ""),
                                           q.get("after"), int(q.get("limit", queries.PAGE)))
        except (queries.BadQuery, ValueError) as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error"}}, status_code=400)
        return JSONResponse(page)

    return [*(Route(path, _file(path), methods=["GET"]) for path in FILES),
            Route("/dashboard/api/overview", overview, methods=["GET"]),
            Route("/dashboard/api/calls", calls, methods=["GET"])]
