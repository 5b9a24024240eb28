"""Structured output: answers to a `json_schema` response format or a forced tool call checked against the
schema, repaired once, then asked of a fallback model, then refused with a clear error
(docs/output-control.md)."""
