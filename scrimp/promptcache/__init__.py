"""Provider prompt caching done for the user: breakpoint planning, TTL choice, cache-buster detection."""
