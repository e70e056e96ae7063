"""Fixtures shared by the security tests: a Redis for the tests that cover both backends."""

from __future__ import annotations

from tests.support.redis import redis_prefix, redis_url

__all__ = ["redis_prefix", "redis_url"]
