"""Offload: a feature whose answers are a small label set (intents, categories, sentiments) is learned from its
own traffic and answered by a local classifier over MiniLM embeddings when the classifier's confidence clears a
threshold calibrated to an agreement target; a share of those answers is shadow-checked against the LLM, and a
drift guard sends the feature back to the LLM when agreement falls below target (docs/offload.md)."""
