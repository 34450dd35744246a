"""The per-source lock: one run per source at a time, across every worker process.

A run spans many tasks in many processes (the scheduler takes the lock, page tasks renew it,
the finalizer or the error callback release it), so the lock's token is not kept in one
process's memory: it is a random id stored on the run record (it grants nothing, it only
names the holder) and any task of the run rebuilds the lock from it.

A lease can still lapse (a long pause, a partition), so the lock comes with a fencing
number: every newly planned run takes the next number of the source, and the finalizer
commits a checkpoint only while the source's number is still its own. A run that lost the
source to a newer one therefore cannot move the checkpoint.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from tasks.runs import PREFIX


def new_token() -> str:
    return secrets.token_hex(16)


class SourceLock:
    """The lock of one source, held under a run's token."""

    def __init__(
        self,
        redis: Redis,
        source_id: str,
        token: str,
        ttl_seconds: int,
        *,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.redis: Any = redis  # synchronous client (redis-py types replies as awaitable too)
        # Asked before a lapsed lease is taken again: a run that Redis forgot (a restart)
        # must not take its source back from the runs after it.
        self.alive = alive
        self.source_id = source_id
        self.token = token
        self.ttl = ttl_seconds
        self.key = f"{PREFIX}source:{source_id}:lock"
        self.fence_key = f"{PREFIX}source:{source_id}:fence"
        self._lock = Lock(redis, self.key, timeout=ttl_seconds, thread_local=False)
        self._lock.local.token = token.encode()

    def acquire(self) -> bool:
        """Take the lock, or renew it when this token already holds it."""
        if self._lock.acquire(blocking=False, token=self.token):
            return True
        return self.renew()

    def renew(self) -> bool:
        """Extend the lease; retake it if it lapsed and nobody else took it.

        False means another run holds the source: this run must stop.
        """
        try:
            return bool(self._lock.extend(self.ttl, replace_ttl=True))
        except LockNotOwnedError:
            if self.alive is not None and not self.alive():
                return False
            if self._lock.acquire(blocking=False, token=self.token):
                return True
            # Another task of this run may have just retaken the lapsed lease itself.
            return self.holder() == self.token

    def release(self) -> bool:
        """Let go of the lock if this token holds it; False if it did not."""
        try:
            self._lock.release()
        except LockNotOwnedError:
            return False
        return True

    def holder(self) -> str | None:
        value = self.redis.get(self.key)
        return None if value is None else value.decode()

    def take_fence(self) -> int:
        """The next fencing number of the source; the run that takes it owns the checkpoint."""
        return int(self.redis.incr(self.fence_key))

    def fence(self) -> int:
        return int(self.redis.get(self.fence_key) or 0)

    def still_owns(self, fence: int) -> bool:
        """True while this token holds the lock and no newer run took a fencing number."""
        return self.renew() and self.fence() == fence
