"""Run the simulator (or any ASGI app) on an ephemeral 127.0.0.1 port in a background thread.

The official SDKs need a real URL; tests, the demo and benchmarks use this.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from scrimp.sim.app import create_app
from scrimp.sim.config import SimConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(app: Any, *, port: int | None = None, log_level: str = "warning",
              start_timeout_s: float = 120) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL (no trailing slash)."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="auto",
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s  # a first start may export a model
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def run_simulator(config: SimConfig | None = None, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """Start a simulator; yields (base_url, app). `app.state.sim` is its state (counters, caches, clock)."""
    app = create_app(config, **kwargs)
    with serve_app(app) as url:
        yield url, app
