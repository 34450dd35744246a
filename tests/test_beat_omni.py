"""Beat in Omni mode: a tick opens its run in Omni (POST /sdk/sync/create) before doing it.

The scheduled task runs in a real worker against the strict fake manager and the
Paperless-ngx double; the manager's refusals (409, 400, 404) are skips, and a 404 makes
beat drop the source's entries.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, current_app
from redis import Redis

from config.settings import get_settings
from tasks.omni_sources import OmniSources
from tasks.schedule_tasks import SCHEDULED_SYNC, scheduled_sync
from tests.omni_double import FakeManager
from tests.paperless_double import PaperlessDouble
from tests.support.omni import ServeProcess, expected_documents, omni_manager, wait_for_run  # noqa: F401
from tests.support.redis_server import free_port
from tests.support.worker import SyncEnv
from worker.beat import configure_beat, current_source_entries, omni_sources, reconcile_schedules

SOURCE = "omni-beat"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class OmniBeat:
    fake: FakeManager
    paperless: PaperlessDouble
    sync_env: SyncEnv

    def requests_of(self, run_id: str) -> list[tuple[str, str]]:
        """(method, path) of every manager request about this run, in order, create first."""
        seen = []
        for call in self.fake.calls(prefix="/sdk/"):
            body = call.body if isinstance(call.body, dict) else {}
            created = call.path == "/sdk/sync/create" and call.status == 200
            if f"/{run_id}/" in call.path or body.get("sync_run_id") == run_id:
                seen.append((call.method, call.path.replace(run_id, "{id}")))
            elif created and body.get("source_id") == SOURCE:
                seen.append((call.method, call.path))
        return seen


@pytest.fixture
def omni_env(
    sync_env: SyncEnv,
    paperless: PaperlessDouble,
    omni_manager: FakeManager,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[OmniBeat]:
    omni_manager.add_source(SOURCE, paperless.url, paperless.token("admin"))
    monkeypatch.setenv("CONNECTOR_MANAGER_URL", omni_manager.url)
    sync_env.env["CONNECTOR_MANAGER_URL"] = omni_manager.url
    get_settings.cache_clear()
    yield OmniBeat(omni_manager, paperless, sync_env)
    get_settings.cache_clear()


def _tick(mode: str) -> dict[str, str]:
    """What beat does: send the scheduled task by name to the control queue; its result."""
    result = current_app.send_task(SCHEDULED_SYNC, args=[SOURCE, mode], queue="control")
    return dict(result.get(timeout=30))


def test_a_tick_creates_the_run_in_omni_and_a_worker_does_it(omni_env: OmniBeat) -> None:
    fake, sync_env = omni_env.fake, omni_env.sync_env
    sync_env.start_worker()

    started = _tick("full")
    run_id = started["run_id"]
    assert started == {"run_id": run_id, "state": "queued"}
    assert fake.runs[run_id].sync_type == "full"  # the manager's own id, from sync/create
    assert wait_for_run(fake, run_id) == "completed"
    record = sync_env.wait(run_id)
    assert (record.state, record.trigger, record.mode) == ("completed", "beat", "full")

    expected = expected_documents(omni_env.paperless, SOURCE)
    assert sorted(fake.documents(SOURCE)) == sorted(expected)
    calls = omni_env.requests_of(run_id)
    assert calls[0] == ("POST", "/sdk/sync/create")
    assert ("POST", "/sdk/events/batch") in calls
    assert calls[-2:] == [("PUT", "/sdk/sync/{id}/checkpoint"), ("POST", "/sdk/sync/{id}/complete")]
    assert calls.index(("POST", "/sdk/events/batch")) < len(calls) - 2
    checkpoint = fake.sources[SOURCE].checkpoint
    assert checkpoint is not None and checkpoint["known_ids"]

    # The next tick is incremental: a new Omni run, nothing changed, nothing re-sent.
    again = _tick("incremental")
    assert again["run_id"] != run_id and fake.runs[again["run_id"]].sync_type == "incremental"
    assert wait_for_run(fake, again["run_id"]) == "completed"
    assert fake.event_types(again["run_id"]).count("document_created") == 0
    assert fake.event_types(again["run_id"]).count("document_updated") == 0
    assert fake.runs[again["run_id"]].late_calls == []

    # Ticks carry ids only: the source's API key is nowhere in Redis (task messages, results).
    token = omni_env.paperless.token("admin").encode()
    redis = sync_env.store.redis
    held = [_value(redis, key) for key in redis.scan_iter()]
    assert any(SOURCE.encode() in value for value in held)  # the values were read
    assert all(token not in value for value in held)


def _value(redis: Redis, key: Any) -> bytes:
    """Everything a key holds, as bytes (DUMP may compress, hiding a substring)."""
    kind = redis.type(key)
    parts: Any
    if kind == b"string":
        parts = [redis.get(key) or b""]
    elif kind == b"hash":
        fields: Any = redis.hgetall(key)
        parts = [b for pair in fields.items() for b in pair]
    elif kind == b"list":
        parts = redis.lrange(key, 0, -1)
    elif kind == b"set":
        parts = redis.smembers(key)
    elif kind == b"zset":
        parts = redis.zrange(key, 0, -1)
    else:
        parts = [redis.dump(key) or b""]
    return b"\n".join(parts)


def test_the_managers_refusals_are_skips(omni_env: OmniBeat) -> None:
    fake = omni_env.fake
    busy = fake.create_run(SOURCE, "incremental")  # the manager's own run of the source
    assert scheduled_sync(SOURCE, "incremental") == {
        "skipped": "already running in Omni",
        "run_id": "",
    }
    fake.runs[busy].status = "completed"

    fake.sources[SOURCE].active = False
    assert scheduled_sync(SOURCE, "full") == {"skipped": "source inactive", "run_id": ""}
    fake.sources[SOURCE].active = True

    statuses = [call.status for call in fake.calls("POST", "/sdk/sync/create")]
    assert statuses == [409, 400]
    assert omni_env.sync_env.store.runs_for(SOURCE) == []  # no run of ours either


def test_a_source_deleted_in_omni_is_forgotten_and_unscheduled(omni_env: OmniBeat) -> None:
    redis = omni_env.sync_env.store.redis
    known = OmniSources(redis)
    known.remember(SOURCE)
    known.remember("deleted-in-omni")
    app = Celery("beat-test", broker=omni_env.sync_env.redis_url, set_as_current=False)
    settings = get_settings()
    configure_beat(app, settings)
    reconcile_schedules(app, omni_sources(app), settings)
    assert current_source_entries(app) == {
        f"source:{name}:{mode}"
        for name in (SOURCE, "deleted-in-omni")
        for mode in ("incremental", "full")
    }

    assert scheduled_sync("deleted-in-omni", "incremental") == {
        "skipped": "source not found",
        "run_id": "",
    }
    assert known.ids() == [SOURCE]
    reconcile_schedules(app, omni_sources(app), settings)  # beat's next look at the sources
    assert current_source_entries(app) == {f"source:{SOURCE}:incremental", f"source:{SOURCE}:full"}


def test_a_tick_while_our_run_holds_the_source_closes_the_omni_run(omni_env: OmniBeat) -> None:
    store, fake = omni_env.sync_env.store, omni_env.fake
    assert store.create("ours-1", SOURCE, "full", "cli") is None  # holds the source
    answer = scheduled_sync(SOURCE, "incremental")
    assert answer == {"skipped": "already running", "run_id": "ours-1"}
    (opened,) = [r for r in fake.runs.values() if r.source_id == SOURCE]
    assert opened.status == "failed"
    assert opened.error == "skipped: run ours-1 of this source is in progress"
    assert [r.run_id for r in store.runs_for(SOURCE)] == ["ours-1"]


BEAT_SCRIPT = """
import sys
from worker import app
from worker.beat import SourceScheduler
SourceScheduler.reconcile_every = 1.0
app.start(["beat", "--loglevel", "INFO", "--schedule", sys.argv[1]])
"""


@pytest.mark.slow  # waits for one real 10 s interval
def test_beat_syncs_a_source_the_front_was_asked_about(omni_env: OmniBeat, tmp_path: Path) -> None:
    fake, sync_env = omni_env.fake, omni_env.sync_env
    env = {**sync_env.env, "SYNC_INTERVAL_SECONDS": "10"}
    sync_env.start_worker()
    serve = ServeProcess(env, free_port(), sync_env.data_dir / "serve.log").start()
    beat = None
    try:
        first, response = fake.start_sync(serve.url, SOURCE, "full")  # Omni's own run
        assert response.status_code == 200
        assert wait_for_run(fake, first) == "completed"
        assert OmniSources(sync_env.store.redis).ids() == [SOURCE]

        beat = subprocess.Popen(
            [sys.executable, "-c", BEAT_SCRIPT, str(tmp_path / "beat-schedule")],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        sync_env.wait_for(
            lambda: len(fake.runs) > 1, 30, "a run created by beat's tick through sync/create"
        )
        ticked = next(r for r in fake.runs.values() if r.run_id != first)
        assert ticked.sync_type == "incremental"
        assert wait_for_run(fake, ticked.run_id) == "completed"
        assert sync_env.store.get(ticked.run_id).trigger == "beat"  # type: ignore[union-attr]
    finally:
        if beat is not None:
            beat.terminate()
            beat.wait(timeout=20)
        serve.stop()
