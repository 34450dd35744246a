from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.paperless import paperless  # noqa: F401  (fixture)
from tests.support.redis_server import RedisServer, start_redis
from tests.support.worker import shared_sync_env, sync_env, worker  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()
