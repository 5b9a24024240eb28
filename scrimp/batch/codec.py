"""Requests and answers as JSON for the lane's tables: a queued line must survive a restart as it was shaped by
the levers before it (route, prompt-cache breakpoints), and its answer as the client will be sent it."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from scrimp.canonical import ChatRequest, ChatResponse, Usage

_REQUEST_FIELDS = [f.name for f in dataclasses.fields(ChatRequest) if f.name != "native"]


def request_to_json(req: ChatRequest) -> str:
    return orjson.dumps({name: getattr(req, name) for name in _REQUEST_FIELDS}).decode()


def request_from_json(raw: str | bytes) -> ChatRequest:
    data = orjson.loads(raw)
    return ChatRequest(**{k: v for k, v in data.items() if k in _REQUEST_FIELDS})


def response_to_json(resp: ChatResponse) -> str:
    return orjson.dumps(dataclasses.asdict(resp)).decode()


def response_from_json(raw: str | bytes) -> ChatResponse:
    r = orjson.loads(raw)
    return ChatResponse(id=r["id"], model=r["model"], content=r["content"], stop_reason=r.get("stop_reason"),
                        stop_sequence=r.get("stop_sequence"), usage=Usage(**r.get("usage") or {}),
                        extra_choices=[(c[0], c[1]) for c in r.get("extra_choices") or []],
                        output_items=r.get("output_items"))


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
