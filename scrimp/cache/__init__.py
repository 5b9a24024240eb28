"""Response caches: exact (hash of the normalised request) and semantic."""
