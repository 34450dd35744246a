"""The Omni sources this connector serves, as far as it has seen them: ids only, in Redis.

Omni's connector-manager owns the sources and never lists them for a connector; the only
way we learn of one is its `POST /sync`. The front remembers every source id it is asked
to sync, so beat can keep periodic syncs for it; a source Omni deleted is forgotten when
the manager answers 404 to a run beat asks for. No credential or URL is ever kept here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from redis import Redis

SOURCES_KEY = "pc:omni:sources"  # set of source ids
SEEN_KEY = "pc:omni:sources:seen"  # hash: source id -> RFC 3339 time of its last POST /sync


class OmniSources:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @classmethod
    def from_url(cls, redis_url: str) -> OmniSources:
        return cls(Redis.from_url(redis_url, health_check_interval=30))

    def remember(self, source_id: str, *, now: datetime | None = None) -> None:
        seen = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(SOURCES_KEY, source_id)
            pipe.hset(SEEN_KEY, source_id, seen)
            pipe.execute()

    def forget(self, source_id: str) -> bool:
        """Drop a source (Omni deleted it); False when it was not known."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(SOURCES_KEY, source_id)
            pipe.hdel(SEEN_KEY, source_id)
            removed, _ = pipe.execute()
        return bool(removed)

    def ids(self) -> list[str]:
        members: Any = self.redis.smembers(SOURCES_KEY)
        return sorted(_text(member) for member in members)

    def last_seen(self, source_id: str) -> str | None:
        value: Any = self.redis.hget(SEEN_KEY, source_id)
        return None if value is None else _text(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
