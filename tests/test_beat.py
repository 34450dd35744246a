"""Beat: RedBeat entries follow the source registry; a tick never starts a second run."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from celery import Celery

from config.settings import Settings
from tasks.omni_sources import OmniSources
from tests.support.redis_server import RedisServer
from worker.beat import (
    KEY_PREFIX,
    WATCHDOG_TASK,
    configure_beat,
    entry_name,
    omni_sources,
    reconcile_schedules,
)

if TYPE_CHECKING:
    from tests.support.worker import SyncEnv, WorkerProcess

REPO = Path(__file__).resolve().parents[1]
SCHEDULE_KEY = KEY_PREFIX + ":schedule"


@dataclass
class FakeSource:
    name: str
    interval_seconds: int | None = None
    enabled: bool = True


def _settings(redis_url: str, tmp_path: Path, **extra: object) -> Settings:
    return Settings(redis_url=redis_url, connector_data_dir=tmp_path, **extra)  # type: ignore[arg-type]


@pytest.fixture()
def beat_app(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[Celery, Settings]]:
    client = redis_server.client(7)
    client.flushdb()
    settings = _settings(redis_server.url(7), tmp_path, sync_interval_seconds=300)
    app = Celery("beat-test", broker=settings.redis_url, set_as_current=False)
    configure_beat(app, settings)
    yield app, settings
    client.flushdb()


def _entry(client: redis.Redis, name: str) -> dict[str, object]:
    raw = client.hget(KEY_PREFIX + name, "definition")
    assert raw is not None, f"no RedBeat entry {name}"
    return dict(json.loads(raw))


def test_configure_beat_uses_redbeat_on_the_settings_redis(beat_app: tuple[Celery, Settings]):
    app, settings = beat_app
    assert app.conf.beat_scheduler == "worker.beat:SourceScheduler"
    assert app.conf.redbeat_redis_url == settings.redis_url
    assert app.conf.redbeat_key_prefix == "pc:beat:"
    assert app.conf.beat_schedule["watchdog"]["task"] == WATCHDOG_TASK
    assert "tasks.schedule_tasks" in app.conf.include


def test_entries_follow_sources_added_changed_and_removed(
    beat_app: tuple[Celery, Settings], redis_server: RedisServer
):
    app, settings = beat_app
    client = redis_server.client(7)

    changes = reconcile_schedules(
        app,
        [FakeSource("alpha"), FakeSource("beta", 60), FakeSource("off", enabled=False)],
        settings,
    )
    assert sorted(changes.added) == sorted(
        entry_name(s, m) for s in ("alpha", "beta") for m in ("incremental", "full")
    )
    alpha = _entry(client, "source:alpha:incremental")
    assert alpha["task"] == "paperless.scheduled_sync"
    assert alpha["args"] == ["alpha", "incremental"]
    assert alpha["schedule"]["every"] == 300  # type: ignore[index]
    assert _entry(client, "source:beta:incremental")["schedule"]["every"] == 60  # type: ignore[index]
    assert _entry(client, "source:beta:full")["schedule"]["every"] == 86400  # type: ignore[index]
    assert _entry(client, "source:beta:full")["options"]["queue"] == "control"  # type: ignore[index]
    assert client.exists(KEY_PREFIX + "source:off:incremental") == 0

    # A new source's incremental sync is due at once, its full reconcile a day later.
    now = time.time()
    assert client.zscore(SCHEDULE_KEY, KEY_PREFIX + "source:alpha:incremental") <= now + 1
    assert client.zscore(SCHEDULE_KEY, KEY_PREFIX + "source:alpha:full") > now + 86000

    # Nothing changed: nothing is rewritten.
    again = reconcile_schedules(app, [FakeSource("alpha"), FakeSource("beta", 60)], settings)
    assert not again

    # A changed interval updates the entry and keeps when it last ran.
    meta_before = client.hget(KEY_PREFIX + "source:alpha:full", "meta")
    changed = reconcile_schedules(app, [FakeSource("alpha", 120), FakeSource("beta", 60)], settings)
    assert changed.updated == ["source:alpha:incremental"]
    assert _entry(client, "source:alpha:incremental")["schedule"]["every"] == 120  # type: ignore[index]
    assert client.hget(KEY_PREFIX + "source:alpha:full", "meta") == meta_before

    # Removed and disabled sources lose their entries, in the hash and in the schedule.
    gone = reconcile_schedules(app, [FakeSource("beta", 60, enabled=False)], settings)
    assert len(gone.removed) == 4
    assert client.keys(KEY_PREFIX + "source:*") == []
    assert client.zcard(SCHEDULE_KEY) == 0


def test_omni_mode_schedules_the_sources_omni_asked_for(
    beat_app: tuple[Celery, Settings], redis_server: RedisServer, tmp_path: Path
):
    app, settings = beat_app
    client = redis_server.client(7)
    reconcile_schedules(app, [FakeSource("alpha")], settings)
    omni = _settings(
        settings.redis_url,
        tmp_path,
        connector_manager_url="http://omni:8000",
        sync_interval_seconds=120,
        full_reconcile_interval_seconds=3600,
    )
    # What the front wrote for two POST /sync requests.
    OmniSources(client).remember("omni-a")
    OmniSources(client).remember("omni-b")
    sources = omni_sources(app)
    assert [s.name for s in sources] == ["omni-a", "omni-b"]

    changes = reconcile_schedules(app, sources, omni)
    assert sorted(changes.removed) == ["source:alpha:full", "source:alpha:incremental"]
    assert sorted(changes.added) == sorted(
        entry_name(s, m) for s in ("omni-a", "omni-b") for m in ("incremental", "full")
    )
    incremental = _entry(client, "source:omni-a:incremental")
    assert incremental["task"] == "paperless.scheduled_sync"
    assert incremental["args"] == ["omni-a", "incremental"]
    assert incremental["schedule"]["every"] == 120  # type: ignore[index]
    assert _entry(client, "source:omni-b:full")["schedule"]["every"] == 3600  # type: ignore[index]
    assert _entry(client, "source:omni-b:full")["args"] == ["omni-b", "full"]
    # Omni just synced a source the front learnt of: its first periodic sync waits a period.
    now = time.time()
    assert client.zscore(SCHEDULE_KEY, KEY_PREFIX + "source:omni-a:incremental") > now + 100
    assert client.zscore(SCHEDULE_KEY, KEY_PREFIX + "source:omni-a:full") > now + 3500

    # A source Omni deleted is forgotten (by the tick that got a 404): its entries go.
    OmniSources(client).forget("omni-a")
    gone = reconcile_schedules(app, omni_sources(app), omni)
    assert sorted(gone.removed) == ["source:omni-a:full", "source:omni-a:incremental"]
    assert sorted(client.keys(KEY_PREFIX + "source:*")) == [
        (KEY_PREFIX + "source:omni-b:full").encode(),
        (KEY_PREFIX + "source:omni-b:incremental").encode(),
    ]
    assert client.zcard(SCHEDULE_KEY) == 2


def test_a_tick_while_a_run_is_going_is_a_skip(monkeypatch: pytest.MonkeyPatch):
    from tasks import trigger
    from tasks.schedule_tasks import scheduled_sync

    calls: list[tuple[str, str, str]] = []

    def busy(source_id: str, mode: str = "incremental", **kwargs: object) -> object:
        calls.append((source_id, mode, str(kwargs.get("trigger"))))
        raise trigger.AlreadyRunning(source_id, "run-1")

    monkeypatch.setattr(trigger, "trigger_sync", busy)
    result = scheduled_sync("alpha", "full")
    assert result == {"skipped": "already running", "run_id": "run-1"}
    assert calls == [("alpha", "full", "beat")]


# --- a real beat process --------------------------------------------------------------

BEAT_SCRIPT = """
import sys
from worker import app
from worker.beat import SourceScheduler
SourceScheduler.reconcile_every = 1.0
app.start(["beat", "--loglevel", "INFO", "--schedule", sys.argv[1]])
"""


def _queued(client: redis.Redis, queue: str) -> list[tuple[str, list[object]]]:
    messages = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        messages.append((message["headers"]["task"], list(body[0])))
    return messages


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_running_beat_follows_the_registry_without_restart(
    redis_server: RedisServer, tmp_path: Path
):
    from config.secrets import KeyRing, generate_key
    from config.sources import SourceRegistry

    client = redis_server.client(8)
    client.flushdb()
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_server.url(8),
        CONNECTOR_DATA_DIR=str(tmp_path / "data"),
        CONNECTOR_SECRET_KEYS=generate_key(),
    )
    env.pop("CONNECTOR_MANAGER_URL", None)

    registry = SourceRegistry(
        tmp_path / "data" / "sources.sqlite3",
        KeyRing([env["CONNECTOR_SECRET_KEYS"]]),
        default_interval_seconds=300,
    )
    registry.add("alpha", "http://127.0.0.1:9", "secret-token-alpha")

    beat = subprocess.Popen(
        [sys.executable, "-c", BEAT_SCRIPT, str(tmp_path / "beat-schedule")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert _wait(
            lambda: (
                ("paperless.scheduled_sync", ["alpha", "incremental"]) in _queued(client, "control")
            )
        ), "beat did not send alpha's incremental sync"
        watchdog = json.loads(client.hget(KEY_PREFIX + "watchdog", "definition") or "{}")
        assert watchdog.get("task") == WATCHDOG_TASK

        registry.add("beta", "http://127.0.0.1:9", "secret-token-beta", interval_seconds=60)
        assert _wait(
            lambda: (
                ("paperless.scheduled_sync", ["beta", "incremental"]) in _queued(client, "control")
            )
        ), "beat did not pick up a source added while it runs"

        registry.remove("alpha")
        assert _wait(lambda: client.exists(KEY_PREFIX + "source:alpha:incremental") == 0)
        assert client.exists(KEY_PREFIX + "source:beta:full") == 1
    finally:
        beat.terminate()
        output, _ = beat.communicate(timeout=20)
    text = output.decode(errors="replace")
    assert "secret-token" not in text
    for key in client.scan_iter():
        assert b"secret-token" not in (client.dump(key) or b"")


# --- with the real trigger, pipeline and worker ----------------------------------------


def test_a_second_tick_is_skipped_while_the_first_run_is_queued(sync_env: SyncEnv, paperless):
    from tasks.schedule_tasks import scheduled_sync

    sync_env.add_source("alpha", paperless)
    first = scheduled_sync("alpha", "incremental")
    assert set(first) == {"run_id", "state"} and first["state"] == "queued"
    second = scheduled_sync("alpha", "full")
    assert second == {"skipped": "already running", "run_id": first["run_id"]}
    assert [r.run_id for r in sync_env.store.runs_for("alpha")] == [first["run_id"]]
    assert scheduled_sync("gone", "incremental") == {"skipped": "source not found", "run_id": ""}


def test_beat_syncs_a_registered_source_through_a_worker(
    sync_env: SyncEnv, worker: WorkerProcess, paperless, tmp_path: Path
):
    sync_env.add_source("alpha", paperless)
    beat = subprocess.Popen(
        [sys.executable, "-c", BEAT_SCRIPT, str(tmp_path / "beat-schedule")],
        cwd=REPO,
        env=sync_env.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        sync_env.wait_for(lambda: sync_env.store.runs_for("alpha"), 30, "a run started by beat")
        run = sync_env.store.runs_for("alpha")[0]
        assert run.trigger == "beat" and run.mode == "incremental"
        done = sync_env.wait(run.run_id, timeout=60)
    finally:
        beat.terminate()
        beat.wait(timeout=20)
    assert done.state == "completed", done
    index = sync_env.index()
    try:
        assert index.count("alpha") == 200
    finally:
        index.close()
