"""Context trimming: retrieved chunks, tool output and long histories cut, planned with the prompt cache."""
