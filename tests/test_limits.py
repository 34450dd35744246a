"""The cross-worker request cap per Paperless-ngx server, over a real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from redis import Redis

from tasks.limits import ServerBusy, ServerLimiter, server_hash
from tasks.paperless.client import PaperlessClient
from tasks.paperless.errors import TransientError
from tests.paperless_double import PaperlessDouble
from tests.support.redis_server import RedisServer

DB = 13
URL = "https://paperless.example.org/paperless"


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Redis]:
    client = redis_server.client(DB)
    client.flushdb()
    yield client
    client.flushdb()


def _most_in_flight(limiters: list[ServerLimiter], jobs: int, hold: float) -> int:
    """Run `jobs` threads through the limiters; the most that held a slot at once."""
    lock = threading.Lock()
    now = peak = 0

    def job(limiter: ServerLimiter) -> None:
        nonlocal now, peak
        with limiter.slot():
            with lock:
                now += 1
                peak = max(peak, now)
            time.sleep(hold)
            with lock:
                now -= 1

    threads = [
        threading.Thread(target=job, args=(limiters[i % len(limiters)],)) for i in range(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return peak


def test_the_cap_holds_across_workers(redis: Redis) -> None:
    # Two limiters stand for two worker processes sharing one Redis.
    workers = [ServerLimiter(redis, URL, capacity=3) for _ in range(2)]
    assert _most_in_flight(workers, jobs=12, hold=0.05) == 3
    assert workers[0].in_flight() == 0


def test_servers_have_separate_caps(redis: Redis) -> None:
    one = ServerLimiter(redis, URL, capacity=1)
    other = ServerLimiter(redis, "http://127.0.0.1:8000", capacity=1)
    with one.slot(), other.slot():
        assert one.in_flight() == 1 and other.in_flight() == 1


def test_a_backoff_makes_every_worker_wait(redis: Redis) -> None:
    first = ServerLimiter(redis, URL, capacity=4)
    second = ServerLimiter(redis, URL, capacity=4)
    first.backoff(0.5)
    first.backoff(0.1)  # a shorter backoff never cuts a longer one
    started = time.monotonic()
    with second.slot():
        waited = time.monotonic() - started
    assert 0.4 <= waited < 2.0


def test_waiting_too_long_is_a_transient_error(redis: Redis) -> None:
    limiter = ServerLimiter(redis, URL, capacity=1, max_wait_seconds=0.3)
    with limiter.slot():
        started = time.monotonic()
        with pytest.raises(ServerBusy, match="request slots") as raised, limiter.slot():
            pass
    assert isinstance(raised.value, TransientError)
    assert 0.2 < time.monotonic() - started < 2.0


def test_the_slot_of_a_dead_holder_frees_itself(redis: Redis) -> None:
    limiter = ServerLimiter(redis, URL, capacity=1, claim_seconds=0.3, max_wait_seconds=2)
    held = limiter.slot()
    held.__enter__()  # taken and never given back, as by a killed process
    started = time.monotonic()
    with limiter.slot():
        assert 0.2 < time.monotonic() - started < 1.5


def test_keys_hold_a_hash_of_the_server_never_its_address(redis: Redis) -> None:
    limiter = ServerLimiter(redis, "https://user:secret@paperless.example.org/paperless/", 2)
    with limiter.slot():
        limiter.backoff(1)
        keys = [key.decode() for key in redis.keys("*")]
    assert sorted(keys) == sorted(
        [f"pc:server:{server_hash(URL)}:slots", f"pc:server:{server_hash(URL)}:backoff"]
    )
    assert all("example" not in key and "secret" not in key for key in keys)
    assert server_hash(URL) == server_hash("HTTPS://paperless.example.org:443/paperless/")
    assert server_hash(URL) != server_hash("https://paperless.example.org/other")


def test_the_client_holds_a_slot_around_each_request(
    redis: Redis, paperless: PaperlessDouble
) -> None:
    paperless.faults.latency = 0.2
    limiter = ServerLimiter(redis, paperless.url, capacity=1)
    seen: list[int] = []
    client = PaperlessClient(paperless.url, paperless.token("admin"), limiter=limiter)
    thread = threading.Thread(target=client.probe)
    thread.start()
    time.sleep(0.1)
    seen.append(limiter.in_flight())
    thread.join()
    seen.append(limiter.in_flight())
    client.close()
    assert seen == [1, 0]


def test_a_backoff_longer_than_the_wait_is_handed_to_the_task_retry(redis: Redis) -> None:
    limiter = ServerLimiter(redis, URL, capacity=2, max_wait_seconds=0.5)
    limiter.backoff(30)
    started = time.monotonic()
    with pytest.raises(ServerBusy) as raised, limiter.slot():
        pass
    assert time.monotonic() - started < 0.5  # no point sleeping in the task
    assert raised.value.retry_after is not None and 25 < raised.value.retry_after <= 30
