"""The per-source lock and its fencing number, over a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis import Redis
from redis.exceptions import LockNotOwnedError

from tasks.locks import SourceLock, new_token
from tests.support.redis_server import RedisServer

DB = 13


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Redis]:
    client = redis_server.client(DB)
    client.flushdb()
    yield client
    client.flushdb()


def test_one_token_holds_the_source_at_a_time(redis: Redis) -> None:
    first = SourceLock(redis, "docs", new_token(), ttl_seconds=30)
    second = SourceLock(redis, "docs", new_token(), ttl_seconds=30)
    assert first.acquire()
    assert not second.acquire()
    assert not second.renew()
    assert not second.release()  # a stranger cannot free it
    assert first.holder() == first.token
    assert first.release()
    assert second.acquire()


def test_any_process_with_the_run_token_can_renew_and_release(redis: Redis) -> None:
    token = new_token()
    scheduler = SourceLock(redis, "docs", token, ttl_seconds=30)
    assert scheduler.acquire()
    page_task = SourceLock(redis, "docs", token, ttl_seconds=30)  # rebuilt from the record
    assert page_task.acquire()  # re-entering with the same token renews
    assert page_task.renew()
    assert 25 < redis.ttl(page_task.key) <= 30
    assert page_task.release()
    assert redis.get(page_task.key) is None


def test_a_lapsed_lease_is_retaken_when_free_and_lost_when_taken(redis: Redis) -> None:
    lock = SourceLock(redis, "docs", new_token(), ttl_seconds=1)
    assert lock.acquire()
    time.sleep(1.2)
    assert lock.holder() is None
    assert lock.renew()  # nobody took it: the run goes on
    time.sleep(1.2)
    other = SourceLock(redis, "docs", new_token(), ttl_seconds=30)
    assert other.acquire()
    assert not lock.renew()  # another run holds the source now: stop


def test_the_fence_stops_an_older_run_from_committing(redis: Redis) -> None:
    old = SourceLock(redis, "docs", new_token(), ttl_seconds=1)
    assert old.acquire()
    old_fence = old.take_fence()
    assert old.still_owns(old_fence)
    time.sleep(1.2)  # the old run stalls past its lease
    new = SourceLock(redis, "docs", new_token(), ttl_seconds=30)
    assert new.acquire()
    new_fence = new.take_fence()
    assert new_fence == old_fence + 1
    new.release()  # even after the newer run ended and the lock is free again…
    assert not old.still_owns(old_fence)  # …the older run may not commit
    assert old.fence() == new_fence


def test_lock_keys_name_the_source_only(redis: Redis) -> None:
    lock = SourceLock(redis, "docs", new_token(), ttl_seconds=30)
    lock.acquire()
    lock.take_fence()
    assert sorted(k.decode() for k in redis.keys("*")) == [
        "pc:source:docs:fence",
        "pc:source:docs:lock",
    ]


def test_a_run_redis_forgot_does_not_take_its_source_back(redis: Redis) -> None:
    token = new_token()
    assert SourceLock(redis, "docs", token, ttl_seconds=30).acquire()
    redis.flushdb()  # Redis restarted without persistence: lock and run record are gone
    forgotten = SourceLock(redis, "docs", token, ttl_seconds=30, alive=lambda: False)
    assert not forgotten.renew()
    assert forgotten.holder() is None  # the next run may take the source
    remembered = SourceLock(redis, "docs", token, ttl_seconds=30, alive=lambda: True)
    assert remembered.renew()  # a lapsed lease of a live run is taken again


def test_two_tasks_of_one_run_retaking_a_lapsed_lease_both_keep_going(redis: Redis) -> None:
    token = new_token()
    assert SourceLock(redis, "docs", token, ttl_seconds=30).acquire()
    redis.delete("pc:source:docs:lock")  # the lease lapsed while no worker lived
    page_a = SourceLock(redis, "docs", token, ttl_seconds=30, alive=lambda: True)
    page_b = SourceLock(redis, "docs", token, ttl_seconds=30, alive=lambda: True)
    assert page_a.renew()  # retakes it

    def lapsed(*_: object, **__: object) -> bool:  # page B looked a moment before A retook it
        raise LockNotOwnedError("lapsed")

    page_b._lock.extend = lapsed  # type: ignore[method-assign]
    assert page_b.renew()  # finds its own run holding it, not a stranger
    assert not SourceLock(redis, "docs", new_token(), ttl_seconds=30).renew()
