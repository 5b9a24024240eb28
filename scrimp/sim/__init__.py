"""A local LLM provider that speaks the real OpenAI and Anthropic wire APIs (see docs/simulator.md)."""
