"""Faults a user meets, through a real worker, real Redis and the Paperless-ngx double.

Each test breaks something in the middle of a run (a worker killed, Redis restarted, a
stormy or dead server, bad data) and checks what a user would: the run ends the way it
should, nothing is lost or duplicated in the index, the checkpoint moved once or not at
all, and the next run brings the index back to what Paperless-ngx holds.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from celery import current_app

from tasks.trigger import AlreadyRunning, trigger_sync
from tests.paperless_double import PaperlessDouble, generate_corpus
from tests.support.model_check import pool_children
from tests.support.redis_server import RedisServer, start_redis
from tests.support.worker import (
    SyncEnv,
    only_gets,
    server_fingerprints,
    sink_fingerprints,
    sync_environment,
)


@pytest.fixture
def big_paperless() -> Iterator[PaperlessDouble]:
    double = PaperlessDouble(generate_corpus(1500, seed=23)).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def web_page() -> Iterator[str]:
    """A web server that is not Paperless-ngx: every path answers an HTML page."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server this test may restart without disturbing any other test."""
    server = start_redis()
    yield server
    server.stop()


def assert_sink_equals_server(env: SyncEnv, double: PaperlessDouble, source: str) -> None:
    exported = [row["doc_id"] for row in env.index().export(source)]
    assert len(exported) == len(set(exported))  # every document once
    assert sink_fingerprints(env, source) == server_fingerprints(double, source)


@pytest.mark.slow
def test_a_pool_process_killed_mid_sync_loses_nothing(
    sync_env: SyncEnv, big_paperless: PaperlessDouble
) -> None:
    big_paperless.faults.latency = 0.01  # a few seconds of run, so the kill lands mid-way
    worker = sync_env.start_worker(concurrency=2)
    sync_env.add_source("killed", big_paperless)
    run_id = trigger_sync("killed", "full").run_id
    sync_env.wait_for(
        lambda: (r := sync_env.store.get(run_id)) is not None and r.pages_done >= 5,
        timeout=60,
        what="five pages done",
    )
    record = sync_env.store.get(run_id)
    assert record is not None and record.pages_done < record.pages_total

    assert worker.process is not None
    children = pool_children(worker.process.pid)
    assert children
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    done = sync_env.wait(run_id, timeout=180)
    assert done.state == "completed", done.error
    assert_sink_equals_server(sync_env, big_paperless, "killed")
    assert sync_env.index().count("killed") == 1500
    assert sync_env.store.field(run_id, "commits") == "1"
    checkpoint = sync_env.checkpoint("killed")
    assert checkpoint is not None and checkpoint["known_ids"] == [[1, 1500]]


@pytest.mark.slow
def test_a_whole_worker_killed_mid_sync_is_finished_by_the_next_worker(
    sync_env: SyncEnv, big_paperless: PaperlessDouble
) -> None:
    big_paperless.faults.latency = 0.01
    # Redis hands a vanished consumer's unacknowledged tasks to another after the
    # visibility timeout: short here so the test sees it happen.
    first = sync_env.start_worker(concurrency=2, visibility_timeout_seconds="20")
    sync_env.add_source("crashed", big_paperless)
    run_id = trigger_sync("crashed", "full").run_id
    sync_env.wait_for(
        lambda: (r := sync_env.store.get(run_id)) is not None and r.pages_done >= 5,
        timeout=60,
        what="five pages done",
    )
    first.kill()  # kill -9 of the worker and its pool at once
    assert sync_env.checkpoint("crashed") is None

    sync_env.start_worker(concurrency=2, visibility_timeout_seconds="20")
    done = sync_env.wait(run_id, timeout=240)
    assert done.state == "completed", done.error
    assert_sink_equals_server(sync_env, big_paperless, "crashed")
    assert sync_env.store.field(run_id, "commits") == "1"


@pytest.mark.slow
def test_redis_restarted_mid_run_never_completes_with_documents_missing(
    own_redis: RedisServer, tmp_path: Path, big_paperless: PaperlessDouble
) -> None:
    big_paperless.faults.latency = 0.01
    with sync_environment(own_redis, 0, tmp_path / "data") as env:
        env.start_worker(concurrency=2)
        env.add_source("amnesia", big_paperless)
        run_id = trigger_sync("amnesia", "full").run_id
        env.wait_for(
            lambda: (r := env.store.get(run_id)) is not None and r.pages_done >= 3,
            timeout=60,
            what="three pages done",
        )
        own_redis.restart()  # every key is gone: run record, ledger, chord, lock

        # Whatever the worker does now, it cannot complete that run or move the checkpoint.
        threading.Event().wait(5)
        record = env.store.get(run_id)
        assert record is None or record.state in ("failed", "running")
        assert env.checkpoint("amnesia") is None

        # The next incremental sync brings the index back to the server's state.
        again = env.wait(trigger_sync("amnesia", "incremental").run_id, timeout=180)
        assert again.state == "completed", again.error
        assert_sink_equals_server(env, big_paperless, "amnesia")
        assert env.checkpoint("amnesia") is not None


@pytest.mark.slow
def test_a_stormy_server_loses_nothing_and_causes_no_retry_storm(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    sync_env.start_worker(concurrency=2, http_retries="5")  # the shipped default
    sync_env.add_source("calm", paperless)
    assert sync_env.wait(trigger_sync("calm", "full").run_id).state == "completed"
    calm_requests = len(paperless.requests())
    paperless.reset_log()

    paperless.faults.add(rate=0.3, statuses=[500, 502, 503, 429], retry_after=1, seed=5)
    paperless.faults.add(r"^/api/documents/$", rate=0.05, drop=True, seed=6)
    paperless.faults.add(r"^/api/documents/$", rate=0.05, delay=1.0, seed=7)
    sync_env.add_source("stormy", paperless)
    done = sync_env.wait(trigger_sync("stormy", "full").run_id, timeout=240)

    assert done.state == "completed", done.error
    assert_sink_equals_server(sync_env, paperless, "stormy")
    stormy_requests = len(paperless.requests())
    # Retries are bounded: with 30 % of answers failing a sync needs about 1.5 times the
    # requests of a calm one; a retry storm would need many times more.
    assert stormy_requests <= 3 * calm_requests, (stormy_requests, calm_requests)
    assert only_gets(paperless)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("dead server", "could not reach"),
        ("wrong token", "authentication failed"),
        ("not paperless", "Paperless-ngx"),
    ],
)
def test_a_broken_source_fails_fast_with_one_sentence_and_keeps_the_checkpoint(
    shared_sync_env: SyncEnv,
    paperless: PaperlessDouble,
    web_page: str,
    breakage: str,
    expected: str,
) -> None:
    env = shared_sync_env
    source = "broken-" + breakage.replace(" ", "-")
    env.add_source(source, paperless)
    assert env.wait(trigger_sync(source, "full").run_id).state == "completed"
    before = env.checkpoint(source)

    from config.settings import get_settings
    from config.sources import SourceRegistry

    registry = SourceRegistry.from_settings(get_settings())
    registry.remove(source)
    if breakage == "dead server":
        registry.add(source, "http://127.0.0.1:9", paperless.token("admin"))
    elif breakage == "wrong token":
        registry.add(source, paperless.url, "0" * 40)
    else:
        registry.add(source, web_page, paperless.token("admin"))
    registry.save_checkpoint(source, before or {})

    failed = env.wait(trigger_sync(source, "incremental").run_id, timeout=60)
    assert failed.state == "failed"
    assert failed.error is not None and expected in failed.error
    assert "\n" not in failed.error and paperless.token("admin") not in failed.error
    assert env.checkpoint(source) == before


def test_bad_data_is_reported_per_document_and_everything_else_lands(
    shared_sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    env = shared_sync_env
    ids = sorted(paperless.corpus.documents)
    broken = {
        ids[0]: ("invalid_date",),
        ids[1]: ("unknown_tag", "unknown_correspondent", "unknown_custom_field"),
        ids[2]: ("huge_content",),
        ids[3]: ("nul_bytes", "lone_surrogate"),
        ids[4]: ("empty_title",),
    }
    for doc_id, kinds in broken.items():
        paperless.faults.bad_document(doc_id, *kinds)
    vanished = ids[5]
    paperless.faults.vanish(vanished)
    paperless.faults.add(r"^/api/documents/$", malformed=True, times=1)

    env.add_source("bad-data", paperless)
    done = env.wait(trigger_sync("bad-data", "full").run_id, timeout=120)

    assert done.state == "completed", done.error
    errors = env.store.errors(done.run_id)
    reported = {int(error["doc_id"]) for error in errors}
    assert reported == {ids[0]}
    assert all(error["reason"] and "\n" not in error["reason"] for error in errors)
    held = {row["doc_id"]: row for row in env.index().export("bad-data")}
    assert set(held) == set(ids) - {ids[0], vanished}
    assert len(held[ids[2]]["text"]) > 9_000_000  # the 10 MB content, not cut
    assert "\x00" not in held[ids[3]]["text"] and "\x00" not in held[ids[3]]["title"]
    assert held[ids[4]]["title"]  # an empty title falls back to something readable


def test_one_source_triggered_from_everywhere_at_once_gets_one_run(
    shared_sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    env = shared_sync_env
    env.add_source("crowded", paperless)
    start = threading.Barrier(6)
    started: list[str] = []
    refused: list[str] = []

    app = current_app._get_current_object()

    def trigger(origin: str) -> None:
        app.set_current()  # Celery's current app is per thread
        start.wait()
        try:
            started.append(trigger_sync("crowded", "incremental", trigger=origin).run_id)
        except AlreadyRunning as exc:
            refused.append(exc.run_id)

    threads = [
        threading.Thread(target=trigger, args=(origin,))
        for origin in ("beat", "cli", "omni", "beat", "cli", "omni")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(started) == 1 and len(refused) == 5
    assert set(refused) == set(started)
    assert env.wait(started[0]).state == "completed"
