"""Semantic response cache: paraphrases answered once, near-misses rejected, error rate calibrated."""
