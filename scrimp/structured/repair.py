"""The repair request: the conversation with the rejected answer and what was wrong with it, asked again."""

from __future__ import annotations

from scrimp.canonical import ChatRequest, ChatResponse
from scrimp.structured.checks import Expectation


def repair_request(req: ChatRequest, bad: ChatResponse, exp: Expectation, problem: str) -> ChatRequest:
    new = req.copy()
    new.stream = False
    calls = [b for b in bad.content if b.get("type") == "tool_use"]
    if exp.kind == "tool" and calls:
        # a tool call is answered with its error as the tool result, the call still forced
        new.messages.append({"role": "assistant", "content": calls})
        new.messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": b.get("id", ""), "is_error": True,
             "content": [{"type": "text", "text": f"Invalid arguments ({problem}). Call the tool again with "
                                                  "arguments that fit its schema."}]} for b in calls]})
        return new
    text = bad.text() or "(no answer)"
    wanted = "a tool call whose arguments fit the tool's schema" if exp.kind == "tool" else (
        "only the JSON, fitting the schema" if exp.kind == "json_schema" else "only a JSON object")
    new.messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
    new.messages.append({"role": "user", "content": [{"type": "text", "text":
                         f"That reply was not valid: {problem}. Reply again with {wanted}: no prose, no code fences."}]})
    return new
