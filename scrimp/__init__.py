"""scrimp: an LLM cost optimizer (gateway + in-process library)."""

__version__ = "0.1.0"
