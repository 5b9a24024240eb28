"""The gateway: OpenAI- and Anthropic-compatible HTTP server running the cost pipeline."""
