"""Shared by the auth tests (a module of its own: test modules import it, not the conftest)."""

from __future__ import annotations

import os

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SCRIMP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = "admin-key-0123456789abcdef"
