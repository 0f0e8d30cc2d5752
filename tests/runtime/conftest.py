"""Fixtures of the runtime tests: a key prefix of one test in the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    name = f"atlasguard-test-{uuid.uuid4().hex}"
    yield name
    keys = list(client.scan_iter(match=f"{{{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()
