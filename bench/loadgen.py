"""A small raw-asyncio HTTP/1.1 load generator (keep-alive connections, open- and closed-loop), light enough
that on a 2-core machine the client is not what a proxy benchmark measures."""

from __future__ import annotations

import asyncio
import time

import orjson


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked = None, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if length is not None:
            return status, await self.reader.readexactly(length)
        body = b""
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    return status, body
                body += chunk[:-2]
        return status, await self.reader.read()

    def close(self) -> None:
        self.writer.close()


def build_request(host: str, port: int, path: str, body: dict, headers: dict[str, str] | None = None) -> bytes:
    payload = orjson.dumps(body)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer sk-benchkey\r\n{extra}content-length: {len(payload)}\r\n\r\n").encode() + payload


async def fixed_rate(host: str, port: int, raw: bytes, rate: float, count: int, pool: int = 32) -> list[float]:
    """Open loop: request i is sent at start + i/rate whatever the latency of the others."""
    conns: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(pool):
        conns.put_nowait(await Conn.open(host, port))
    latencies: list[float] = []
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        conn = await conns.get()
        t0 = time.perf_counter()
        status, _ = await conn.request(raw)
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"status {status}")
        conns.put_nowait(conn)

    await asyncio.gather(*(one(i) for i in range(count)))
    while not conns.empty():
        conns.get_nowait().close()
    return latencies


async def closed_loop(host: str, port: int, raw: bytes, concurrency: int, seconds: float) -> float:
    """Closed loop: `concurrency` clients each send their next request when the last answered. Returns req/s."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        conn = await Conn.open(host, port)
        try:
            while time.perf_counter() < deadline:
                status, _ = await conn.request(raw)
                if status != 200:
                    raise RuntimeError(f"status {status}")
                done += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done / (time.perf_counter() - t0)
