"""The gateway's pipeline inside a Python app, with no network hop: the official SDKs talk to the gateway's
ASGI app through an httpx transport.

    from scrimp.inprocess import InProcessGateway
    from scrimp.gateway.config import load

    with InProcessGateway(load("scrimp.yaml")) as gw:
        client = gw.openai()            # an openai.OpenAI; gw.anthropic() for Anthropic
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

`async with InProcessGateway(...)` gives `gw.async_openai()` / `gw.async_anthropic()` on the caller's loop.
Responses are delivered whole (a streamed reply arrives at once, still as a stream of events).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self

import httpx2 as httpx  # the HTTP client both official SDKs are built on

from scrimp.gateway.app import Gateway, create_app
from scrimp.gateway.config import GatewayConfig

BASE = "http://scrimp.inprocess"


class _SyncASGITransport(httpx.BaseTransport):
    """Runs each request on the gateway's own event loop (a background thread) and returns the response."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def run() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            req = httpx.Request(request.method, request.url, headers=request.headers, content=content)
            resp = await self._inner.handle_async_request(req)
            body = b"".join([chunk async for chunk in resp.stream])  # type: ignore[union-attr]
            return resp.status_code, resp.headers.raw, body

        status, headers, body = asyncio.run_coroutine_threadsafe(run(), self._loop).result()
        return httpx.Response(status, headers=headers, content=body, request=request)


class InProcessGateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.app = create_app(config)
        self.gateway: Gateway = self.app.state.gateway
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- sync use: the pipeline runs on a private loop thread ----------------------------------------
    def __enter__(self) -> Self:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scrimp-inprocess", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self._loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self.gateway.close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def transport(self) -> httpx.BaseTransport:
        if self._loop is None:
            raise RuntimeError("use `with InProcessGateway(config) as gw:` before asking for a sync client")
        return _SyncASGITransport(self.app, self._loop)

    def openai(self, api_key: str = "inprocess", **kwargs: Any) -> Any:
        import openai

        return openai.OpenAI(base_url=BASE + "/v1", api_key=api_key,
                             http_client=httpx.Client(transport=self.transport(), base_url=BASE), **kwargs)

    def anthropic(self, api_key: str = "inprocess", **kwargs: Any) -> Any:
        import anthropic

        return anthropic.Anthropic(base_url=BASE, api_key=api_key,
                                   http_client=httpx.Client(transport=self.transport(), base_url=BASE), **kwargs)

    # -- async use: the pipeline runs on the caller's loop -------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.gateway.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.gateway.close()

    def async_transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    def async_openai(self, api_key: str = "inprocess", **kwargs: Any) -> Any:
        import openai

        return openai.AsyncOpenAI(base_url=BASE + "/v1", api_key=api_key,
                                  http_client=httpx.AsyncClient(transport=self.async_transport(), base_url=BASE),
                                  **kwargs)

    def async_anthropic(self, api_key: str = "inprocess", **kwargs: Any) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(base_url=BASE, api_key=api_key,
                                        http_client=httpx.AsyncClient(transport=self.async_transport(),
                                                                      base_url=BASE), **kwargs)
