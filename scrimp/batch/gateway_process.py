"""A gateway with the batch lane in a process of its own, against a simulator: what the crash test kills and the
benchmark measures (a real process, so SIGKILL means what it means in production)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from scrimp.sim.testing import free_port


def config_for(sim_url: str, ledger: dict[str, Any], batch: dict[str, Any],
               extra_stages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every default simulator chat model upstream at `sim_url`, with a key (the lane submits with it)."""
    from scrimp.sim.config import default_models

    models = [{"name": m.name, "provider": m.provider, "tier": m.tier, "api_key": "sim",
               "base_url": sim_url + "/v1" if m.provider == "openai" else sim_url}
              for m in default_models() if m.kind == "chat"]
    return {"models": models, "stages": [{"ledger": ledger}, *(extra_stages or []), {"batch": batch}]}


class GatewayProcess:
    """`scrimp serve --config FILE` on an ephemeral loopback port; start(), kill() (SIGKILL), stop()."""

    def __init__(self, config: dict[str, Any], workdir: Path, port: int | None = None) -> None:
        self.path = workdir / "scrimp.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        cmd = [str(Path(sys.executable).parent / "scrimp"), "serve", "--config", str(self.path), "--port",
               str(self.port)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("gateway did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None
