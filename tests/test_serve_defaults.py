"""`scrimp serve --simulate` as a new user runs it: no config (the default levers), or a config holding only
stages. The gateway runs as its own process, driven by the official SDKs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
from click.testing import CliRunner

from scrimp.cli import main
from scrimp.demo.workload import AGENT_SYSTEM, AGENT_TOOLS

SCRIMP = str(Path(sys.executable).parent / "scrimp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(cwd: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = _free_port()
    proc = subprocess.Popen([SCRIMP, "serve", "--simulate", "--port", str(port), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"scrimp serve exited: {proc.stdout.read()} {proc.stderr.read()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "scrimp serve did not come up"
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # a graceful stop: the ledger is flushed
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_with_no_config_an_agent_loop_reads_its_input_from_the_provider_cache(tmp_path):
    with serve(tmp_path) as (url, proc):
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        history, shares = [], []
        for turn in range(5):
            history.append({"role": "user", "content": f"turn {turn}: check region {turn}"})
            r = client.messages.create(model="claude-sonnet-4-6", max_tokens=40, system=AGENT_SYSTEM,
                                       tools=AGENT_TOOLS, messages=history)  # no cache_control anywhere
            u = r.usage
            total = u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
            shares.append((u.cache_read_input_tokens or 0) / total)
            history.append({"role": "assistant", "content": r.content[0].text if r.content else "ok"})
        assert shares[0] == 0
        assert all(share >= 0.8 for share in shares[1:]), shares
        # the exact cache is on by default too: a deterministic repeat is answered without the provider
        oa = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        ask = {"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": "What is 6 times 7?"}]}
        first = oa.chat.completions.with_raw_response.create(**ask)
        again = oa.chat.completions.with_raw_response.create(**ask)
        assert first.headers["x-scrimp-cache"] == "miss" and again.headers["x-scrimp-cache"] == "exact"
        assert again.parse().id != first.parse().id  # a reused answer is a new response
        assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    out, err = proc.communicate()
    assert "scrimp gateway on" in out
    assert "Warning" not in err and "Traceback" not in err, err
    levers = json.loads(CliRunner().invoke(main, ["usage", "--by", "lever", "--json", "--db",
                                                  str(tmp_path / "scrimp-ledger.db")]).output)
    by = {r["lever"]: r for r in levers["rows"]}
    assert by["prompt_cache"]["calls"] == 5 and by["prompt_cache"]["saved_usd"] > 0
    assert by["exact_cache"]["calls"] == 1 and by["exact_cache"]["saved_usd"] > 0


def test_a_config_with_stages_and_no_models_runs_against_the_simulator(tmp_path):
    (tmp_path / "scrimp.yaml").write_text("stages:\n  - ledger: {path: mine.db}\n  - exact_cache: {path: c.db}\n")
    with serve(tmp_path, "--config", "scrimp.yaml") as (url, _proc):
        oa = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        r = oa.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": "hello"}])
        assert r.status_code == 200 and r.headers["x-scrimp-model"] == "gpt-4o-mini"
    assert (tmp_path / "mine.db").exists() and not (tmp_path / "scrimp-ledger.db").exists()
    assert os.path.getsize(tmp_path / "c.db") > 0
