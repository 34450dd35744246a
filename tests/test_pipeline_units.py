"""The pipeline's plain functions, called in this process (no worker, no Celery tasks run).

The guards that keep documents from getting lost are tested here by driving a run step by
step against real Redis, the local index and the Paperless-ngx double.
"""

from __future__ import annotations

import time

import pytest
from celery import Celery

from tasks import listing, pipeline
from tasks.locks import SourceLock, new_token
from tasks.paperless.errors import AuthenticationError, BadResponseError, TransientError
from tasks.sinks.base import StoredState
from tasks.trigger import AlreadyRunning, cancel_run, trigger_sync
from tests.paperless_double import PaperlessDouble
from tests.support.worker import SyncEnv, page_fetches


def _planned(sync_env: SyncEnv, paperless: PaperlessDouble, mode: str = "full") -> str:
    """A run planned here; its scheduler message is dropped so no worker ever sees it."""
    sync_env.add_source("main", paperless)
    run_id = trigger_sync("main", mode).run_id
    sync_env.store.redis.delete("control")
    assert pipeline.start_run(run_id, attempt=1) is not None
    return run_id


# -- choosing what to fetch ---------------------------------------------------------------


LISTED = {
    1: ("same", "2024-01-01T00:00:00Z"),
    2: ("renamed", "2024-01-01T00:00:00Z"),  # light fingerprint differs: a rename, a share
    3: ("same", "2024-03-01T10:00:00+02:00"),  # modified after the watermark
    4: ("same", "2024-01-01T00:00:00Z"),  # new to the sink
    5: ("same", "not a date"),  # cannot tell: fetch it
}
ENTRIES = [(doc_id, light, modified) for doc_id, (light, modified) in LISTED.items()]
STORED = {i: StoredState(light_fingerprint="same", fingerprint="f") for i in (1, 2, 3, 5, 9)}


def test_an_incremental_run_fetches_new_changed_and_modified_documents() -> None:
    assert pipeline.choose_targets("incremental", ENTRIES, STORED, "2024-02-01T00:00:00Z") == [
        2,
        3,
        4,
        5,
    ]


def test_a_full_run_or_a_first_run_fetches_everything() -> None:
    assert pipeline.choose_targets("full", ENTRIES, STORED, "2024-02-01T00:00:00Z") == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert pipeline.choose_targets("incremental", ENTRIES, STORED, None) == [1, 2, 3, 4, 5]


def test_documents_showing_a_changed_title_are_fetched_too() -> None:
    links = {10: (2,), 11: (7,), 12: (99,)}
    assert pipeline.with_linking_documents([2, 3], links, gone={7}) == [2, 3, 10, 11]


def test_id_ranges_round_trip() -> None:
    ids = {1, 2, 3, 7, 9, 10}
    assert listing.to_ranges(ids) == [[1, 3], [7, 7], [9, 10]]
    assert listing.expand_ranges(listing.to_ranges(ids)) == ids
    assert listing.to_ranges([]) == []


def test_retries_double_and_honour_retry_after_within_bounds() -> None:
    assert [pipeline.retry_delay(TransientError("x"), n) for n in range(4)] == [1, 2, 4, 8]
    assert pipeline.retry_delay(TransientError("x"), 10) == 60
    assert pipeline.retry_delay(TransientError("x", retry_after=30), 0) == 30
    assert pipeline.retry_delay(TransientError("x", retry_after=9999), 0) == 300
    assert pipeline.retryable(TransientError("x"))
    assert pipeline.retryable(BadResponseError("truncated"))
    assert not pipeline.retryable(AuthenticationError("authentication failed: …"))
    assert not pipeline.retryable(pipeline.PageFailed("poison"))


# -- triggering ---------------------------------------------------------------------------


def test_a_trigger_checks_mode_source_and_app(sync_env: SyncEnv) -> None:
    from config.sources import SourceNotFound

    with pytest.raises(ValueError, match="not one of"):
        trigger_sync("main", "everything")
    with pytest.raises(SourceNotFound):
        trigger_sync("nope", "full")
    other = Celery("someone-else")
    other.set_current()
    with pytest.raises(RuntimeError, match="import `worker`"):
        trigger_sync("main", "full")


def test_a_run_that_stopped_making_progress_gives_way_to_a_new_trigger(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    sync_env.add_source("main", paperless)
    stuck = trigger_sync("main", "full").run_id
    with pytest.raises(AlreadyRunning):
        trigger_sync("main", "full")
    sync_env.store.set_fields(stuck, heartbeat=int(time.time()) - 100_000)
    fresh = trigger_sync("main", "full")
    assert fresh.run_id != stuck
    old = sync_env.store.get(stuck)
    assert old is not None and old.state == "failed" and old.error


def test_cancelling_a_queued_run_keeps_it_from_starting(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    sync_env.add_source("main", paperless)
    run_id = trigger_sync("main", "full").run_id
    assert cancel_run(run_id)
    assert pipeline.start_run(run_id, attempt=1) is None
    assert paperless.requests() == []  # nothing was asked of Paperless-ngx
    assert not cancel_run("no-such-run")


# -- the guards of a run ------------------------------------------------------------------


def test_a_page_whose_worker_keeps_dying_fails_the_run(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    run_id = _planned(sync_env, paperless)
    for _ in range(pipeline.MAX_UNFINISHED_DELIVERIES):
        sync_env.store.begin_delivery(run_id, 0)  # five deliveries that never finished
    with pytest.raises(pipeline.PageFailed, match="worker died") as raised:
        pipeline.fetch_page(run_id, 0)
    pipeline.page_failed(run_id, 0, raised.value)
    record = sync_env.store.get(run_id)
    assert record is not None and record.state == "failed"
    assert record.error is not None and record.error.startswith("page 0 failed")
    assert sync_env.store.active_run("main") is None


def test_a_redelivered_page_is_idempotent(
    sync_env: SyncEnv, paperless: PaperlessDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.runs import RunStore

    run_id = _planned(sync_env, paperless)
    original = RunStore.page_done

    def crash(*args: object, **kwargs: object) -> bool:
        raise ConnectionError("the worker died after writing, before the ledger")

    monkeypatch.setattr(RunStore, "page_done", crash)
    with pytest.raises(ConnectionError):
        pipeline.fetch_page(run_id, 0)
    written = list(sync_env.index().export("main"))
    assert len(written) == 25
    monkeypatch.setattr(RunStore, "page_done", original)

    pipeline.fetch_page(run_id, 0)  # the redelivery
    paperless.reset_log()
    pipeline.fetch_page(run_id, 0)  # once more after it was recorded: skipped outright

    assert list(sync_env.index().export("main")) == written
    record = sync_env.store.get(run_id)
    assert record is not None
    assert (record.pages_done, record.scanned, record.written, record.unchanged) == (1, 25, 0, 25)
    assert page_fetches(paperless) == []


def test_the_finalizer_refuses_an_incomplete_ledger(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    run_id = _planned(sync_env, paperless)
    for page in range(7):  # one of eight pages missing
        pipeline.fetch_page(run_id, page)
    assert pipeline.finalize(run_id, 1, claimant="body") == {"outcome": "failed"}
    record = sync_env.store.get(run_id)
    assert record is not None and record.state == "failed"
    assert record.error is not None and "pages not written" in record.error
    assert sync_env.checkpoint("main") is None


def test_a_run_that_lost_its_fence_does_not_commit(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    run_id = _planned(sync_env, paperless)
    for page in range(8):
        pipeline.fetch_page(run_id, page)
    # The run's lease lapses; another run takes the source and its next fencing number.
    sync_env.store.redis.delete("pc:source:main:lock")
    newer = SourceLock(sync_env.store.redis, "main", new_token(), ttl_seconds=30)
    assert newer.acquire()
    newer.take_fence()
    newer.release()

    assert pipeline.finalize(run_id, 1, claimant="body") == {"outcome": "failed"}
    record = sync_env.store.get(run_id)
    assert record is not None and record.state == "failed"
    assert record.error is not None and "newer sync" in record.error
    assert sync_env.checkpoint("main") is None
    assert sync_env.store.field(run_id, "commits") is None


def test_the_finalizer_commits_once(sync_env: SyncEnv, paperless: PaperlessDouble) -> None:
    run_id = _planned(sync_env, paperless)
    for page in range(8):
        pipeline.fetch_page(run_id, page)
    result = pipeline.finalize(run_id, 1, claimant="body-1")
    assert result["outcome"] == "completed"
    assert int(result["scanned"]) == int(result["written"]) > 0  # the counts Flower shows
    pipeline.finalize(run_id, 1, claimant="body-1")  # its redelivery
    assert pipeline.finalize(run_id, 1, claimant="body-2") == {"outcome": "duplicate"}
    assert pipeline.finalize(run_id, 0, claimant="old") == {"outcome": "stale"}
    assert sync_env.store.field(run_id, "commits") == "1"
    assert sync_env.checkpoint("main") is not None
    assert SourceLock(sync_env.store.redis, "main", "x", 30).holder() is None


def test_the_watchdog_fails_a_silent_run_and_frees_its_source(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    run_id = _planned(sync_env, paperless)
    assert pipeline.watchdog() == []  # it is fresh
    sync_env.store.set_fields(run_id, heartbeat=int(time.time()) - 100_000)
    assert pipeline.watchdog() == [run_id]
    record = sync_env.store.get(run_id)
    assert record is not None and record.state == "failed"
    assert record.error is not None and record.error.startswith("no progress for")
    assert SourceLock(sync_env.store.redis, "main", "x", 30).holder() is None
    assert sync_env.store.active_runs() == []
    # A failure reported for an older attempt of a resumed run changes nothing.
    trigger_sync("main", "full", run_id=run_id, is_resume=True)
    assert not pipeline.fail_run(run_id, "late news", attempt=1)
    record = sync_env.store.get(run_id)
    assert record is not None and record.state == "queued" and record.attempt == 2


def test_a_resume_is_refused_while_another_run_holds_the_source(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    run_id = _planned(sync_env, paperless)
    pipeline.fail_run(run_id, "page 1 failed: answered 500")
    other = trigger_sync("main", "incremental").run_id
    with pytest.raises(AlreadyRunning) as refused:
        trigger_sync("main", "full", run_id=run_id, is_resume=True)
    assert refused.value.run_id == other
    assert page_fetches(paperless) == []


def test_the_error_callback_fails_the_run_with_the_recorded_or_found_cause(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    from tasks.sync_tasks import run_failed

    run_id = _planned(sync_env, paperless)
    # Called as a plain function: nothing recorded a cause (a time limit killed the page).
    assert run_failed.run(run_id, attempt=1) == {"failed": True}
    record = sync_env.store.get(run_id)
    assert record is not None and record.state == "failed"
    assert record.error == "a task of the run failed without saying why; see the worker's log"
    assert run_failed.run(run_id, attempt=1) == {"failed": False}  # only once

    second = _planned_again(sync_env)
    sync_env.store.record_cause(second, "page 2 failed: GET /api/documents/ answered 503")
    run_failed.run(second, attempt=1)
    record = sync_env.store.get(second)
    assert record is not None and record.error == (
        "page 2 failed: GET /api/documents/ answered 503"
    )


def _planned_again(sync_env: SyncEnv) -> str:
    run_id = trigger_sync("main", "incremental").run_id
    sync_env.store.redis.delete("control")
    assert pipeline.start_run(run_id, attempt=1) is not None
    return run_id


def test_a_run_whose_source_is_locked_by_another_fails_with_a_clear_reason(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    sync_env.add_source("main", paperless)
    holder = SourceLock(sync_env.store.redis, "main", new_token(), ttl_seconds=30)
    assert holder.acquire()  # e.g. a run of an older deployment still finishing
    run_id = trigger_sync("main", "full").run_id
    sync_env.store.redis.delete("control")
    assert pipeline.start_run(run_id, attempt=1) is None
    record = sync_env.store.get(run_id)
    assert record is not None and record.state == "failed"
    assert record.error == ("a sync of main is already running; wait for it to end or cancel it")
    assert holder.holder() == holder.token  # the other run keeps its lock
    assert paperless.requests() == []


def test_a_page_message_of_an_earlier_attempt_is_skipped_after_a_resume(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    run_id = _planned(sync_env, paperless)
    sync_env.store.set_fields(run_id, heartbeat=int(time.time()) - 100_000)
    assert pipeline.watchdog() == [run_id]  # its worker died; the run failed
    trigger_sync("main", "full", run_id=run_id, is_resume=True)
    sync_env.store.redis.delete("control")
    assert pipeline.start_run(run_id, attempt=2) is not None
    paperless.reset_log()

    pipeline.fetch_page(run_id, 0, attempt=1)  # still queued from the first attempt
    assert not sync_env.store.is_page_done(run_id, 0)
    assert paperless.requests("/api/documents/") == []

    pipeline.fetch_page(run_id, 0, attempt=2)  # the resume's own message
    assert sync_env.store.is_page_done(run_id, 0)


# -- the light listing's fingerprints -----------------------------------------------------


def test_a_document_whose_listing_values_did_not_change_keeps_its_fingerprint_unresolved(
    paperless: PaperlessDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.paperless.client import PaperlessClient
    from tasks.snapshot import LookupSnapshot

    client = PaperlessClient(paperless.url, paperless.token("admin"))
    snapshot = LookupSnapshot.load(client)
    first, _ = listing.list_documents(client, snapshot)
    stored = {
        doc_id: StoredState(light_fingerprint=light, fingerprint="f")
        for doc_id, light, _ in first.entries()
    }
    edited = sorted(stored)[3]
    paperless.set_permissions([edited], owner=2, view_users=[3])  # no bump, a new share
    resolved: list[int] = []
    real = listing.light_fingerprint
    monkeypatch.setattr(
        listing,
        "light_fingerprint",
        lambda doc, snap: resolved.append(doc["id"]) or real(doc, snap),
    )

    again, _ = listing.list_documents(client, snapshot, stored)

    assert resolved == [edited]  # only the document whose listing values changed
    changed = {
        doc_id for doc_id, light, _ in again.entries() if stored[doc_id].light_fingerprint != light
    }
    assert changed == {edited}
    resolved.clear()
    full, _ = listing.list_documents(client, snapshot, needs_fingerprints=False)
    assert resolved == [] and list(full.ids) == sorted(stored)  # a full run needs none
    client.close()
