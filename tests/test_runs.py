"""RunStore over a real Redis: states only move forward, counts are added once per page."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from redis import Redis

from tasks.runs import ERRORS_KEPT, RunState, RunStore
from tests.support.redis_server import RedisServer

DB = 13


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Redis]:
    client = redis_server.client(DB)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def store(redis: Redis) -> RunStore:
    return RunStore(redis)


def test_a_new_run_is_queued_listed_and_holds_its_source(store: RunStore) -> None:
    assert store.create("r1", "docs", "full", "cli") is None
    record = store.get("r1")
    assert record is not None
    assert (record.state, record.mode, record.trigger, record.attempt) == (
        "queued",
        "full",
        "cli",
        1,
    )
    assert record.running
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record.created_at)
    assert store.active_run("docs") == "r1"
    assert [r.run_id for r in store.runs_for("docs")] == ["r1"]
    assert store.active_runs() == ["r1"]


def test_a_second_run_of_a_busy_source_is_refused_with_the_holder(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    assert store.create("r2", "docs", "incremental", "beat") == "r1"
    assert store.get("r2") is None
    assert store.create("r3", "other", "full", "cli") is None  # other sources are free


def test_a_run_id_cannot_be_created_twice(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    store.mark_running("r1")
    store.mark_completed("r1")
    with pytest.raises(ValueError, match="already exists"):
        store.create("r1", "docs", "full", "cli")


def test_states_move_forward_only(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    assert not store.mark_completed("r1")  # a queued run has not run yet
    assert store.mark_running("r1")
    assert store.mark_completed("r1")
    assert not store.mark_failed("r1", "late error")
    assert not store.mark_cancelled("r1")
    assert not store.mark_running("r1")
    record = store.get("r1")
    assert record is not None and record.state == RunState.COMPLETED and record.error is None
    assert record.finished_at is not None and record.started_at is not None
    assert store.active_run("docs") is None and store.active_runs() == []


def test_failed_and_cancelled_runs_stay_so_and_free_the_source(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    store.mark_running("r1")
    assert store.mark_failed("r1", "GET /api/documents/ answered 500\n after retries")
    assert not store.mark_completed("r1")
    record = store.get("r1")
    assert record is not None and record.state == "failed"
    assert record.error == "GET /api/documents/ answered 500 after retries"  # one line
    assert store.active_run("docs") is None
    store.create("r2", "docs", "full", "cli")
    assert store.mark_cancelled("r2")
    assert store.stop_reason("r2") == "cancelled"
    assert not store.mark_running("r2")


def test_the_first_cause_is_kept(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    store.record_cause("r1", "page 3 failed: answered 500")
    store.record_cause("r1", "page 4 skipped")
    assert store.cause("r1") == "page 3 failed: answered 500"


def test_a_page_counts_once_however_often_it_runs(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    store.save_plan("r1", [[1, 2, 3], [4, 5]], {"watermark": "2024-01-01T00:00:00Z"})
    counts = {"scanned": 3, "written": 2, "unchanged": 1, "failed": 0}
    errors = [{"doc_id": 3, "reason": "invalid date"}]
    assert store.page_done("r1", 0, counts, errors)
    assert not store.page_done("r1", 0, {"scanned": 3, "unchanged": 3}, errors)
    record = store.get("r1")
    assert record is not None
    assert (record.pages_total, record.pages_done) == (2, 1)
    assert (record.scanned, record.written, record.unchanged) == (3, 2, 1)
    assert store.errors("r1") == errors
    assert store.missing_pages("r1") == [1]
    assert store.page_ids("r1", 1) == [4, 5]
    assert store.plan("r1") == {"watermark": "2024-01-01T00:00:00Z", "pages": "2"}


def test_errors_are_capped(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    store.save_plan("r1", [[1]] * 3, {})
    rows = [{"doc_id": i, "reason": "bad"} for i in range(ERRORS_KEPT)]
    store.page_done("r1", 0, {"failed": len(rows)}, rows)
    store.page_done("r1", 1, {"failed": 1}, [{"doc_id": -1, "reason": "one too many"}])
    assert store.redis.llen("pc:run:r1:errors") == ERRORS_KEPT
    record = store.get("r1")
    assert record is not None and record.failed == ERRORS_KEPT + 1  # the count stays exact
    assert store.errors("r1", limit=2) == rows[:2]


def test_a_failed_run_reopens_for_a_resume_keeping_its_ledger(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    store.mark_running("r1")
    store.save_plan("r1", [[1], [2]], {})
    store.page_done("r1", 0, {"scanned": 1}, [])
    store.claim_finalize("r1", "old")
    store.mark_failed("r1", "page 1 failed")
    assert store.reopen("r1", "docs") == 2
    record = store.get("r1")
    assert record is not None
    assert (record.state, record.attempt, record.error) == ("queued", 2, None)
    assert store.missing_pages("r1") == [1] and record.scanned == 1
    assert store.active_run("docs") == "r1" and store.stop_reason("r1") is None
    assert store.claim_finalize("r1", "new")  # the old attempt's guard is gone


def test_completed_runs_and_busy_sources_do_not_reopen(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    store.mark_running("r1")
    store.mark_failed("r1", "boom")
    store.create("r2", "docs", "full", "cli")
    assert store.reopen("r1", "docs") == "r2"
    store.mark_cancelled("r2")
    store.create("r3", "docs", "full", "cli")
    store.mark_running("r3")
    store.mark_completed("r3")
    assert store.reopen("r3", "docs") == 0
    assert store.reopen("r2", "docs") == 0


def test_the_finalizer_guard_lets_one_claimant_and_its_redelivery_through(
    store: RunStore,
) -> None:
    store.create("r1", "docs", "full", "cli")
    assert store.claim_finalize("r1", "task-a")
    assert store.claim_finalize("r1", "task-a")
    assert not store.claim_finalize("r1", "task-b")


def test_deliveries_count_only_unfinished_ones(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    assert store.begin_delivery("r1", 0) == 1
    store.end_delivery("r1", 0)
    assert store.begin_delivery("r1", 0) == 1  # the first one finished
    assert store.begin_delivery("r1", 0) == 2  # the second one died without finishing


def test_records_expire_and_work_keys_are_dropped_at_the_end(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    store.save_plan("r1", [[1, 2]], {"watermark": "w"})
    store.save_snapshot("r1", json.dumps({"tags": {}}))
    assert 0 < store.redis.ttl("pc:run:r1") <= 30 * 24 * 3600
    assert 0 < store.redis.ttl("pc:run:r1:page:0") <= 7 * 24 * 3600
    store.drop_work("r1")
    assert store.page_ids("r1", 0) is None and store.load_snapshot("r1") is None
    assert store.get("r1") is not None


def test_a_source_keeps_its_last_runs_newest_first(store: RunStore) -> None:
    for number in range(55):
        run_id = f"r{number}"
        store.create(run_id, "docs", "incremental", "beat")
        store.mark_running(run_id)
        store.mark_completed(run_id)
    runs = store.runs_for("docs", limit=100)
    assert len(runs) == 50
    assert [r.run_id for r in runs[:2]] == ["r54", "r53"]


def test_nothing_in_a_run_record_looks_like_a_url_or_token(store: RunStore) -> None:
    store.create("r1", "docs", "full", "cli")
    store.note_degraded("r1", ["custom fields missing: the token's user may not read it"])
    values = b" ".join(v for v in store.redis.hgetall("pc:run:r1").values())
    assert b"http" not in values and b"Token " not in values


def test_a_remnant_of_a_lost_run_reads_as_no_run(redis: Redis) -> None:
    # What a late heartbeat writes after Redis lost the run record (restart, no persistence).
    redis.hset("pc:run:lost", mapping={"heartbeat": "1700000000", "degraded": "[]"})
    assert RunStore(redis).get("lost") is None
