"""Whole sync runs through a real Celery worker, real Redis and the Paperless-ngx double.

The module shares one `celery -A worker worker` subprocess (tests/support/worker.py); the
test process only triggers runs and reads Redis, the local index and the double's log.
Each test syncs its own source name, so tests do not see each other's runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from tasks.trigger import AlreadyRunning, trigger_sync
from tests.paperless_double import BAD_DATA_KINDS, PaperlessDouble, generate_corpus
from tests.support.worker import (
    SyncEnv,
    only_gets,
    page_fetches,
    server_fingerprints,
    sink_fingerprints,
)


@pytest.fixture
def sync_env(shared_sync_env: SyncEnv) -> SyncEnv:
    return shared_sync_env


@pytest.fixture
def big_paperless() -> Iterator[PaperlessDouble]:
    double = PaperlessDouble(generate_corpus(320, seed=11)).start()
    try:
        yield double
    finally:
        double.stop()


def test_a_full_sync_lands_every_document_exactly_once(
    sync_env: SyncEnv, big_paperless: PaperlessDouble
) -> None:
    sync_env.add_source("full", big_paperless)
    record = trigger_sync("full", "full")
    assert record.state == "queued" and record.mode == "full"

    done = sync_env.wait(record.run_id)

    assert done.state == "completed", done.error
    visible = big_paperless.visible_documents("admin")
    fetched = Counter(doc_id for ids in page_fetches(big_paperless) for doc_id in ids)
    assert set(fetched) == {doc["id"] for doc in visible}
    assert set(fetched.values()) == {1}  # each document fetched once, in pages of 25
    assert only_gets(big_paperless)
    assert sink_fingerprints(sync_env, "full") == server_fingerprints(big_paperless, "full")
    assert sync_env.index().count("full") == len(visible) == 320
    assert (done.pages_total, done.pages_done) == (13, 13)
    assert (done.scanned, done.written, done.unchanged, done.failed) == (320, 320, 0, 0)
    assert sync_env.store.field(record.run_id, "commits") == "1"  # the finalizer ran once
    finalizer = f"paperless.finalize[{record.run_id}:finalize:1:"
    assert sync_env.workers[0].log().count(finalizer) == 2  # received, succeeded
    checkpoint = sync_env.checkpoint("full")
    assert checkpoint is not None
    assert checkpoint["known_ids"] == [[1, 320]]
    # The watermark is the server's clock (its Date header) less the overlap.
    watermark = datetime.fromisoformat(checkpoint["watermark"].replace("Z", "+00:00"))
    expected = big_paperless.clock.now() - timedelta(seconds=120)
    assert abs((watermark - expected).total_seconds()) < 10


def test_an_incremental_sync_brings_every_kind_of_change(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    sync_env.add_source("changes", paperless)
    assert sync_env.wait(trigger_sync("changes", "full").run_id).state == "completed"
    documents = paperless.corpus.documents
    tagged = sorted(i for i, d in documents.items() if d.tags)
    tag = documents[tagged[0]].tags[0]
    renamed = {i for i, d in documents.items() if tag in d.tags}
    others = sorted(set(documents) - renamed)
    edited, gone, shared, bulk = others[0], others[1], others[2], others[3]
    paperless.reset_log()

    paperless.edit_document(edited, title="Edited through the API")  # bumps modified
    added = paperless.add_document("Brand new letter", content="Sehr geehrte Damen und Herren").id
    paperless.delete_document(gone)
    paperless.rename_tag(tag, "Umbenannt")  # no bump
    paperless.set_permissions([shared], owner=2, view_users=[3])  # no bump
    paperless.bulk_edit([bulk], add_tags=[tag])  # no bump
    run = sync_env.wait(trigger_sync("changes", "incremental").run_id)

    assert run.state == "completed", run.error
    fetched = {doc_id for ids in page_fetches(paperless) for doc_id in ids}
    changed = renamed | {edited, added, shared, bulk}
    # Documents whose documentlink fields show a changed or deleted document's title.
    linking = {
        doc_id
        for doc_id, doc in documents.items()
        for field, value in doc.custom_fields
        if _is_link(paperless, field) and set(value) & (changed | {gone})
    }
    assert linking  # the corpus links documents; make sure this path is exercised
    assert fetched == changed | linking
    assert only_gets(paperless)
    assert sink_fingerprints(sync_env, "changes") == server_fingerprints(paperless, "changes")
    assert run.deleted == 1 and gone not in sink_fingerprints(sync_env, "changes")
    exported = {row["doc_id"]: row for row in sync_env.index().export("changes")}
    assert "Umbenannt" in exported[bulk]["tags"]
    assert exported[edited]["title"] == "Edited through the API"


def test_an_incremental_sync_with_nothing_to_do_still_finalizes(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    sync_env.add_source("idle", paperless)
    assert sync_env.wait(trigger_sync("idle", "full").run_id).state == "completed"
    first = sync_env.checkpoint("idle")
    paperless.clock.advance(600)
    paperless.reset_log()

    run = sync_env.wait(trigger_sync("idle", "incremental").run_id)

    assert run.state == "completed", run.error
    assert (run.pages_total, run.scanned, run.written) == (0, 0, 0)
    assert page_fetches(paperless) == []
    second = sync_env.checkpoint("idle")
    assert first is not None and second is not None
    assert second["watermark"] > first["watermark"]  # the watermark still moves on
    assert sync_env.store.field(run.run_id, "commits") == "1"


def test_a_second_trigger_is_refused_while_a_run_holds_the_source(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    sync_env.add_source("busy", paperless)
    paperless.faults.latency = 0.02
    first = trigger_sync("busy", "full")
    with pytest.raises(AlreadyRunning) as refused:
        trigger_sync("busy", "incremental", trigger="beat")
    assert refused.value.run_id == first.run_id
    assert "already running" in str(refused.value)
    assert [r.run_id for r in sync_env.store.runs_for("busy")] == [first.run_id]

    assert sync_env.wait(first.run_id).state == "completed"
    paperless.faults.latency = 0
    assert sync_env.wait(trigger_sync("busy", "incremental").run_id).state == "completed"


def test_a_wrong_token_fails_the_run_at_once(sync_env: SyncEnv, paperless: PaperlessDouble) -> None:
    from config.settings import get_settings
    from config.sources import SourceRegistry

    SourceRegistry.from_settings(get_settings()).add("badtoken", paperless.url, "0" * 40)

    run = sync_env.wait(trigger_sync("badtoken", "full").run_id, timeout=20)

    assert run.state == "failed"
    assert run.error is not None and run.error.startswith("authentication failed")
    assert "0" * 40 not in sync_env.workers[0].log()
    assert sync_env.checkpoint("badtoken") is None
    assert sync_env.store.active_run("badtoken") is None
    assert only_gets(paperless)


def test_bad_vanished_and_unreadable_parts_do_not_sink_the_run(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    # dave may not read custom fields (nor users and groups): those parts degrade.
    sync_env.add_source("baddata", paperless, user="dave")
    visible = [doc["id"] for doc in paperless.visible_documents("dave")]
    bad, vanished = visible[3], visible[40]
    paperless.faults.bad_document(bad, "invalid_date")
    paperless.faults.vanish(vanished)

    run = sync_env.wait(trigger_sync("baddata", "full").run_id)

    assert run.state == "completed", run.error
    assert run.failed == 1 and run.vanished == 1
    assert any("custom fields" in note for note in run.degraded)
    (error,) = sync_env.store.errors(run.run_id)
    assert error["doc_id"] == bad and error["reason"]
    held = set(sink_fingerprints(sync_env, "baddata"))
    assert held == set(visible) - {bad, vanished}
    paperless.faults.clear()
    again = sync_env.wait(trigger_sync("baddata", "incremental").run_id)
    assert again.state == "completed"
    assert set(sink_fingerprints(sync_env, "baddata")) == set(visible)  # retried, not skipped


def _is_link(double: PaperlessDouble, field: int) -> bool:
    return bool(double.corpus.lookups["custom_fields"][field].attrs["data_type"] == "documentlink")


def test_every_kind_of_bad_data_is_reported_per_document_and_loses_nothing(
    sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    sync_env.add_source("allbad", paperless)
    kinds = sorted(BAD_DATA_KINDS)
    for doc_id, kind in zip(range(10, 10 + len(kinds)), kinds, strict=True):
        paperless.faults.bad_document(doc_id, kind)

    run = sync_env.wait(trigger_sync("allbad", "full").run_id, timeout=120)

    assert run.state == "completed", run.error
    errors = sync_env.store.errors(run.run_id)
    assert run.failed == len(errors)
    assert all(error["reason"] and "\n" not in error["reason"] for error in errors)
    held = set(sink_fingerprints(sync_env, "allbad"))
    reported = {error["doc_id"] for error in errors}
    assert held | reported == {doc["id"] for doc in paperless.visible_documents("admin")}
    assert not held & reported
