"""Runs that go wrong: a page that keeps failing, a cancel, a worker killed mid-run, a resume.

Real worker subprocesses, real Redis, the Paperless-ngx double over HTTP; no eager mode.
"""

from __future__ import annotations

import time

import pytest

from tasks import pipeline
from tasks.trigger import AlreadyRunning, cancel_run, trigger_sync
from tests.paperless_double import PaperlessDouble
from tests.support.redis_server import RedisServer
from tests.support.worker import (
    SyncEnv,
    failing_fetches,
    only_gets,
    page_fetches,
    server_fingerprints,
    sink_fingerprints,
)


def test_a_page_that_keeps_failing_fails_the_run_and_the_next_run_recovers(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    worker = sync_env.start_worker()
    sync_env.add_source("main", paperless)
    assert sync_env.wait(trigger_sync("main", "full").run_id).state == "completed"
    before = sync_env.checkpoint("main")
    edited = sorted(paperless.corpus.documents)[:60]
    for doc_id in edited:
        paperless.edit_document(doc_id, title=f"Second edition of {doc_id}")
    paperless.reset_log()

    with failing_fetches(paperless, edited[30]):
        run = sync_env.wait(trigger_sync("main", "incremental").run_id)

    assert run.state == "failed"
    assert run.error is not None
    assert run.error.startswith("page ") and "answered 500" in run.error
    assert sync_env.checkpoint("main") == before  # the checkpoint did not move
    assert sync_env.store.field(run.run_id, "commits") is None
    assert f"paperless.finalize[{run.run_id}" not in worker.log()  # never after a failed page
    # The chord's error callback still runs once, and finds the run already failed.
    sync_env.wait_for(lambda: "{'failed': False}" in worker.log(), what="the error callback")
    assert worker.log().count("Task paperless.run_failed[") == 2  # received, succeeded
    assert sync_env.store.active_run("main") is None  # the source is free again
    assert only_gets(paperless)

    recovery = sync_env.wait(trigger_sync("main", "incremental").run_id)

    assert recovery.state == "completed", recovery.error
    assert sink_fingerprints(sync_env, "main") == server_fingerprints(paperless, "main")
    exported = {row["doc_id"]: row["title"] for row in sync_env.index().export("main")}
    assert all(exported[doc_id] == f"Second edition of {doc_id}" for doc_id in edited)
    assert sync_env.store.field(recovery.run_id, "commits") == "1"


def test_names_written_by_a_failed_run_are_put_right_after_the_rename_is_undone(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    """A plan trusts stored fingerprints without resolving names only while the lookups
    are those of the last committed run and of the latest plan: here a failed run wrote
    documents with a tag name that was then renamed back."""
    sync_env.start_worker()
    sync_env.add_source("names", paperless)
    assert sync_env.wait(trigger_sync("names", "full").run_id).state == "completed"
    documents = paperless.corpus.documents
    counts: dict[int, int] = {}
    for doc in documents.values():
        for tag in doc.tags:
            counts[tag] = counts.get(tag, 0) + 1
    tag = max(counts, key=lambda t: counts[t])
    original = paperless.corpus.lookups["tags"][tag].name
    tagged = sorted(i for i, d in documents.items() if tag in d.tags)
    paperless.rename_tag(tag, "Zwischenname")

    with failing_fetches(paperless, tagged[-1]):  # the last page fails, earlier ones land
        failed = sync_env.wait(trigger_sync("names", "incremental").run_id)

    assert failed.state == "failed"
    written = {
        row["doc_id"] for row in sync_env.index().export("names") if "Zwischenname" in row["tags"]
    }
    assert written  # the failed run did write documents with the new name
    paperless.rename_tag(tag, original)  # the lookups are those of the committed run again

    run = sync_env.wait(trigger_sync("names", "incremental").run_id)

    assert run.state == "completed", run.error
    exported = {row["doc_id"]: row for row in sync_env.index().export("names")}
    assert not [doc_id for doc_id, row in exported.items() if "Zwischenname" in row["tags"]]
    assert all(original in exported[doc_id]["tags"] for doc_id in written)
    assert sink_fingerprints(sync_env, "names") == server_fingerprints(paperless, "names")


def test_a_change_only_a_failed_run_listed_is_fetched_by_the_next_run(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    """A plan skips the listing pages whose bytes are those the last committed run read.
    A failed run's listing is not that, even when the server shows its bytes again."""
    worker = sync_env.start_worker()
    sync_env.add_source("memo", paperless)
    assert sync_env.wait(trigger_sync("memo", "full").run_id).state == "completed"
    shared = sorted(paperless.corpus.documents)[50]
    paperless.set_permissions([shared], owner=2, view_users=[3])  # `modified` stays

    with failing_fetches(paperless, shared):
        failed = sync_env.wait(trigger_sync("memo", "incremental").run_id)

    assert failed.state == "failed"
    run = sync_env.wait(trigger_sync("memo", "incremental").run_id)

    assert run.state == "completed", run.error
    assert run.written == 1
    assert sink_fingerprints(sync_env, "memo") == server_fingerprints(paperless, "memo")
    assert f"run {run.run_id} of memo planned: 200 listed (0 listing pages" in worker.log()
    quiet = sync_env.wait(trigger_sync("memo", "incremental").run_id)
    assert quiet.state == "completed" and quiet.written == 0
    assert f"run {quiet.run_id} of memo planned: 200 listed (1 listing pages" in worker.log()


def test_cancel_stops_a_run_within_seconds_and_commits_nothing(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    sync_env.start_worker(page_size="5")  # 40 pages
    sync_env.add_source("main", paperless)
    paperless.faults.set_latency(r"^/api/documents/$", 0.25)
    run_id = trigger_sync("main", "full").run_id
    sync_env.wait_for(lambda: _pages_done(sync_env, run_id) >= 2, what="two pages done")

    assert cancel_run(run_id)
    cancelled_at = time.monotonic()
    record = sync_env.wait(run_id, timeout=5)
    assert record.state == "cancelled"
    assert not cancel_run(run_id)  # already over

    # Pages in flight finish theirs; the rest skip without asking Paperless-ngx.
    time.sleep(1.0)
    settled = len(page_fetches(paperless))
    time.sleep(1.0)
    assert len(page_fetches(paperless)) == settled < 40
    assert time.monotonic() - cancelled_at < 5
    assert sync_env.checkpoint("main") is None
    assert sync_env.store.field(run_id, "commits") is None
    # The source is free at once: a new run starts and completes.
    paperless.faults.clear()
    assert sync_env.wait(trigger_sync("main", "full").run_id).state == "completed"
    assert sink_fingerprints(sync_env, "main") == server_fingerprints(paperless, "main")


def test_a_resumed_run_fetches_only_its_missing_pages(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    """Plan a run and write three of its pages here, lose the rest, resume it on a worker."""
    sync_env.add_source("main", paperless)
    record = trigger_sync("main", "full")  # no worker yet: start_sync waits in the queue
    assert sync_env.store.redis.llen("control") == 1
    sync_env.store.redis.delete("control")  # …and is lost, as with a crashed worker
    pages = pipeline.start_run(record.run_id, attempt=1)
    assert pages == list(range(8))
    for page in pages[:3]:
        pipeline.fetch_page(record.run_id, page)
    missing_ids = sorted(
        doc_id
        for page in pages[3:]
        for doc_id in sync_env.store.page_ids(record.run_id, page) or []
    )
    paperless.reset_log()

    sync_env.start_worker()
    with_worker = sync_env.store.get(record.run_id)
    assert with_worker is not None and with_worker.state == "running"
    resumed = trigger_sync("main", "full", run_id=record.run_id, trigger="omni", is_resume=True)
    assert resumed.run_id == record.run_id and resumed.attempt == 2
    done = sync_env.wait(record.run_id)

    assert done.state == "completed", done.error
    fetched = sorted(doc_id for ids in page_fetches(paperless) for doc_id in ids)
    assert fetched == missing_ids  # each missing document once, nothing done again
    listings = [
        r for r in paperless.requests("/api/documents/") if "modified" in r.query.get("fields", "")
    ]
    assert listings == []  # the resume did not plan again
    assert (done.pages_done, done.scanned) == (8, 200)  # the counts of both attempts
    assert sink_fingerprints(sync_env, "main") == server_fingerprints(paperless, "main")
    assert sync_env.checkpoint("main") is not None
    assert only_gets(paperless)


@pytest.mark.slow
def test_a_run_whose_worker_was_killed_resumes_on_another_worker(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    first = sync_env.start_worker(page_size="5")
    sync_env.add_source("main", paperless)
    paperless.faults.set_latency(r"^/api/documents/$", 0.2)
    run_id = trigger_sync("main", "full").run_id
    sync_env.wait_for(lambda: _pages_done(sync_env, run_id) >= 6, what="six pages done")

    first.kill()  # the whole worker and its pool, mid-page
    missing = sync_env.store.missing_pages(run_id)
    assert 0 < len(missing) < 40
    # The killed run still holds the source: a new trigger is refused, a resume is not.
    try:
        trigger_sync("main", "full")
        raise AssertionError("a second run started while the first held the source")
    except AlreadyRunning as busy:
        assert busy.run_id == run_id
    missing_ids = sorted(
        doc_id for page in missing for doc_id in sync_env.store.page_ids(run_id, page) or []
    )
    paperless.faults.clear()
    time.sleep(0.5)  # the killed worker's request in flight is logged when its answer leaves
    paperless.reset_log()

    # Resumed before a worker is back: the first attempt's page messages still queued are
    # then skipped, and only the resume's pages are fetched.
    trigger_sync("main", "full", run_id=run_id, is_resume=True)
    sync_env.start_worker()
    done = sync_env.wait(run_id)

    assert done.state == "completed", done.error
    assert sorted(i for ids in page_fetches(paperless) for i in ids) == missing_ids
    assert sink_fingerprints(sync_env, "main") == server_fingerprints(paperless, "main")
    assert sync_env.store.field(run_id, "commits") == "1"


def _pages_done(sync_env: SyncEnv, run_id: str) -> int:
    record = sync_env.store.get(run_id)
    return 0 if record is None else record.pages_done


@pytest.mark.slow
def test_losing_redis_mid_run_loses_no_document(
    sync_env: SyncEnv, paperless: PaperlessDouble, redis_server: RedisServer
) -> None:
    sync_env.start_worker(page_size="5")
    sync_env.add_source("main", paperless)
    assert sync_env.wait(trigger_sync("main", "full").run_id).state == "completed"
    before = sync_env.checkpoint("main")
    edited = sorted(paperless.corpus.documents)[:80]
    for doc_id in edited:
        paperless.edit_document(doc_id, title=f"Edited before the crash {doc_id}")
    paperless.faults.set_latency(r"^/api/documents/$", 0.2)
    run_id = trigger_sync("main", "incremental").run_id
    sync_env.wait_for(lambda: _pages_done(sync_env, run_id) >= 2, what="two pages done")

    redis_server.restart()  # every key gone: run record, ledger, chord, lock, queues

    time.sleep(3)
    assert sync_env.checkpoint("main") == before  # nothing was committed
    paperless.faults.clear()
    deadline = time.monotonic() + 30
    while True:  # the worker reconnects to the new Redis on its own
        try:
            run = sync_env.wait(trigger_sync("main", "incremental").run_id, timeout=30)
            break
        except AlreadyRunning:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert run.state == "completed", run.error
    exported = {row["doc_id"]: row["title"] for row in sync_env.index().export("main")}
    assert all(exported[i] == f"Edited before the crash {i}" for i in edited)
    assert sink_fingerprints(sync_env, "main") == server_fingerprints(paperless, "main")


@pytest.mark.slow
def test_a_warm_restart_of_the_worker_mid_run_carries_the_run_on(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    first = sync_env.start_worker(page_size="5")
    sync_env.add_source("main", paperless)
    paperless.faults.set_latency(r"^/api/documents/$", 0.2)
    run_id = trigger_sync("main", "full").run_id
    sync_env.wait_for(lambda: _pages_done(sync_env, run_id) >= 4, what="four pages done")

    first.stop(warm=True)  # a deploy: SIGTERM, running pages finish, the rest go back
    assert sync_env.store.redis.llen("pages") > 0
    sync_env.start_worker()
    done = sync_env.wait(run_id)

    assert done.state == "completed", done.error
    assert done.pages_done == 40 and done.attempt == 1  # no resume was needed
    assert sink_fingerprints(sync_env, "main") == server_fingerprints(paperless, "main")
