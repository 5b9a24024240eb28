"""Output caps: a default `max_tokens` per feature learned from its complete answers, and answers stopped at a
cap scrimp set continued so the client never gets an answer scrimp cut (docs/output-control.md)."""
