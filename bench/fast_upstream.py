"""A minimal, fast OpenAI-compatible upstream for proxy benchmarks: a fixed chat completion (or a short SSE
stream when the body asks for one), over raw asyncio HTTP/1.1 with keep-alive. It answers in microseconds,
so what a benchmark measures is the proxy in front of it.

    python bench/fast_upstream.py --port 9001
"""

from __future__ import annotations

import argparse
import asyncio

import orjson

COMPLETION = orjson.dumps({
    "id": "chatcmpl-fast", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sure: the answer is 42."},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
              "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
})
_CHUNK = {"id": "chatcmpl-fast", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini"}
STREAM = b"".join(
    [b"data: " + orjson.dumps({**_CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                      "finish_reason": None}]}) + b"\n\n"]
    + [b"data: " + orjson.dumps({**_CHUNK, "choices": [{"index": 0, "delta": {"content": w},
                                                        "finish_reason": None}]}) + b"\n\n"
       for w in ["Sure:", " the", " answer", " is", " 42."]]
    + [b"data: " + orjson.dumps({**_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"\n\n",
       b"data: " + orjson.dumps({**_CHUNK, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7,
                                                                    "total_tokens": 19}}) + b"\n\n",
       b"data: [DONE]\n\n"])


def _response(body: bytes) -> bytes:
    if b'"stream":true' in body.replace(b" ", b""):
        return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: "
                + str(len(STREAM)).encode() + b"\r\n\r\n" + STREAM)
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(COMPLETION)).encode() + b"\r\n\r\n" + COMPLETION)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET"):
                payload = b'{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"}]}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            else:
                writer.write(_response(body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionResetError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args().port))
