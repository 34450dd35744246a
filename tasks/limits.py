"""A cap on the requests in flight to one Paperless-ngx server, shared by every worker.

Celery's `rate_limit` counts per worker process; the server cares about the total. So the
slots live in Redis: a sorted set of holders scored by when their claim expires (a process
that dies mid-request frees its slot when the claim runs out), taken and given back by a
small Lua script. A 429 with Retry-After sets one backoff key that every worker honours
before its next request. Keys carry a hash of the server's address, never the address.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from redis import Redis

from tasks.paperless.errors import TransientError
from tasks.runs import PREFIX

# KEYS: slots, backoff.  ARGV: capacity, holder, claim ms.
# Returns 1 when the slot is taken, 0 when all are busy, -ms while the server backs off.
_ACQUIRE = """
local wait = redis.call('PTTL', KEYS[2])
if wait > 0 then return -wait end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: backoff.  ARGV: ms.  Lengthens the backoff, never shortens it.
_BACKOFF = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""

MAX_BACKOFF_SECONDS = 300.0


class ServerBusy(TransientError):
    """No request slot of the server came free in time; the task retries later."""


def server_hash(base_url: str) -> str:
    """A short stable name for a server: scheme, host, port and path, never credentials."""
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    identity = f"{parts.scheme.lower()}://{host}:{port}{parts.path.rstrip('/')}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


class ServerLimiter:
    """Implements the client's `RequestLimiter` for one Paperless-ngx server."""

    def __init__(
        self,
        redis: Redis,
        base_url: str,
        capacity: int,
        *,
        claim_seconds: float = 180.0,
        max_wait_seconds: float = 60.0,
    ) -> None:
        self.redis: Any = redis  # synchronous client (redis-py types replies as awaitable too)
        self.capacity = capacity
        self.claim_ms = int(claim_seconds * 1000)
        self.max_wait = max_wait_seconds
        name = server_hash(base_url)
        self.slots_key = f"{PREFIX}server:{name}:slots"
        self.backoff_key = f"{PREFIX}server:{name}:backoff"
        self._acquire = redis.register_script(_ACQUIRE)
        self._backoff = redis.register_script(_BACKOFF)

    @contextmanager
    def slot(self) -> Iterator[None]:
        holder = f"{os.getpid()}:{secrets.token_hex(6)}"
        self._wait_for_slot(holder)
        try:
            yield
        finally:
            self.redis.zrem(self.slots_key, holder)

    def backoff(self, seconds: float) -> None:
        ms = int(min(max(seconds, 0.0), MAX_BACKOFF_SECONDS) * 1000)
        if ms > 0:
            self._backoff([self.backoff_key], [ms])

    def in_flight(self) -> int:
        seconds, micros = self.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        return int(self.redis.zcount(self.slots_key, now_ms, "+inf"))

    def _wait_for_slot(self, holder: str) -> None:
        deadline = time.monotonic() + self.max_wait
        while True:
            answer = int(self._acquire([self.slots_key, self.backoff_key], [
                self.capacity, holder, self.claim_ms,
            ]))  # fmt: skip
            if answer == 1:
                return
            # Short jittered sleeps: slots free up within a request's time.
            pause = -answer / 1000 if answer < 0 else random.uniform(0.01, 0.05)
            if time.monotonic() + pause > deadline:
                raise ServerBusy(
                    f"waited {self.max_wait:g} s for one of the {self.capacity} request slots "
                    "of this Paperless-ngx server: it is slow or backing off; the task retries "
                    "later (raise MAX_CONCURRENCY_PER_SERVER if the server can take more)",
                    retry_after=pause if answer < 0 else None,  # the rest of a backoff
                )
            time.sleep(pause)
