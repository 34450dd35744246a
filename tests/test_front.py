"""The Omni connector front: the HTTP surface the connector-manager calls (protocol §1)."""

from __future__ import annotations

import sys
import time
import types
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from config.settings import Settings
from tasks.omni_client import ManagerClient
from tasks.omni_sources import OmniSources
from tasks.runs import RunStore
from tests.omni_double import FakeManager
from tests.omni_double.validate import check_manifest
from tests.support.omni import omni_manager  # noqa: F401
from tests.support.redis_server import RedisServer
from worker.front import PipelineRuns, RunConflict, command, create_app, serve_command


class FakeRuns:
    def __init__(self) -> None:
        self.triggered: list[tuple[str, str, str, bool]] = []
        self.busy: set[str] = set()
        self.cancellable: set[str] = set()

    def trigger(self, source_id: str, mode: str, run_id: str, is_resume: bool) -> None:
        if run_id == "belongs-elsewhere":
            raise ValueError(f"run {run_id} belongs to source other, not {source_id}")
        if run_id == "redis-down":
            raise redis.exceptions.ConnectionError("Connection refused")
        if source_id in self.busy:
            raise RunConflict(f"a sync of {source_id} is already running")
        self.triggered.append((source_id, mode, run_id, is_resume))

    def cancel(self, run_id: str) -> bool:
        return run_id in self.cancellable

    def running(self, run_id: str) -> bool:
        return False


def settings(**values: Any) -> Settings:
    values.setdefault("connector_manager_url", None)
    return Settings(**values)


@pytest.fixture
def runs() -> FakeRuns:
    return FakeRuns()


class FakeBook:
    def __init__(self) -> None:
        self.remembered: list[str] = []

    def remember(self, source_id: str) -> None:
        self.remembered.append(source_id)


@pytest.fixture
def book() -> FakeBook:
    return FakeBook()


@pytest.fixture
def client(runs: FakeRuns, book: FakeBook) -> Iterator[TestClient]:
    app = create_app(
        settings(port=8123, connector_host_name="paperless-connector"), runs=runs, sources=book
    )
    with TestClient(app) as test_client:
        yield test_client


def test_health_and_manifest(client: TestClient) -> None:
    assert client.get("/health").json() == {
        "status": "healthy",
        "service": "paperless-connector",
    }
    manifest = client.get("/manifest").json()
    check_manifest(manifest)
    assert manifest["connector_url"] == "http://paperless-connector:8123"
    assert manifest["name"] == manifest["connector_id"] == "paperless_ngx"
    assert manifest["source_types"] == ["paperless_ngx"]
    assert manifest["sync_modes"] == ["full", "incremental"]
    assert manifest["version"] == "0.1.0"
    assert {op["operator"]: op["attribute_key"] for op in manifest["search_operators"]} == {
        "correspondent": "correspondent",
        "type": "document_type",
        "tag": "tags",
    }


def test_sync_starts_a_run_with_the_managers_run_id(client: TestClient, runs: FakeRuns) -> None:
    body = {"sync_run_id": "r1", "source_id": "s1", "sync_mode": "full", "checkpoint": None}
    response = client.post("/sync", json=body)
    assert (response.status_code, response.json()) == (200, {"status": "started"})

    resume = {"sync_run_id": "r2", "source_id": "s2", "sync_mode": "realtime", "is_resume": True}
    assert client.post("/sync", json=resume).status_code == 200
    assert runs.triggered == [("s1", "full", "r1", False), ("s2", "incremental", "r2", True)]


def test_sync_remembers_each_source_in_redis_for_beat(redis_server: RedisServer) -> None:
    redis_server.client(4).flushdb()
    known = OmniSources(redis_server.client(4))
    busy = FakeRuns()
    busy.busy.add("s2")
    with TestClient(create_app(settings(), runs=busy, sources=known)) as test_client:
        for run_id, source_id in (("r1", "s1"), ("r2", "s2"), ("r3", "s1")):
            body = {"sync_run_id": run_id, "source_id": source_id, "sync_mode": "incremental"}
            test_client.post("/sync", json=body)
        invalid = {"sync_run_id": "r4", "source_id": "s3", "sync_mode": "sometimes"}
        assert test_client.post("/sync", json=invalid).status_code == 422
    # A busy source (409) is a source all the same; an invalid request names none.
    assert known.ids() == ["s1", "s2"]
    seen = known.last_seen("s1") or ""
    assert seen.endswith("Z") and abs(time.time() - _epoch(seen)) < 60
    db = redis_server.client(4)
    stored = {key: db.type(key) for key in db.scan_iter()}
    assert stored == {b"pc:omni:sources": b"set", b"pc:omni:sources:seen": b"hash"}


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_sync_when_redis_is_down_is_503_and_starts_nothing(runs: FakeRuns) -> None:
    dead = OmniSources(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    with TestClient(create_app(settings(), runs=runs, sources=dead)) as test_client:
        body = {"sync_run_id": "r1", "source_id": "s1", "sync_mode": "full"}
        response = test_client.post("/sync", json=body)
    assert response.status_code == 503
    assert "REDIS_URL" in response.json()["message"]
    assert runs.triggered == []


def test_sync_of_a_busy_source_is_409(client: TestClient, runs: FakeRuns) -> None:
    runs.busy.add("s1")
    response = client.post(
        "/sync", json={"sync_run_id": "r1", "source_id": "s1", "sync_mode": "incremental"}
    )
    assert response.status_code == 409
    assert response.json() == {
        "status": "error",
        "message": "Sync already in progress for this source",
    }


def test_sync_errors_say_what_happened(client: TestClient) -> None:
    other = client.post(
        "/sync", json={"sync_run_id": "belongs-elsewhere", "source_id": "s1", "sync_mode": "full"}
    )
    assert other.status_code == 400
    assert other.json()["message"] == "run belongs-elsewhere belongs to source other, not s1."
    down = client.post(
        "/sync", json={"sync_run_id": "redis-down", "source_id": "s1", "sync_mode": "full"}
    )
    assert down.status_code == 503
    assert "check that Redis (REDIS_URL) is reachable" in down.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"source_id": "s1", "sync_mode": "full"},
        {"sync_run_id": "r1", "source_id": "s1", "sync_mode": "sometimes"},
        {"sync_run_id": "r1", "source_id": "s1", "sync_mode": "full", "is_resume": "perhaps"},
    ],
)
def test_invalid_sync_requests_are_refused(
    client: TestClient, runs: FakeRuns, body: dict[str, Any]
) -> None:
    response = client.post("/sync", json=body)
    assert response.status_code == 422
    assert response.json()["status"] == "error"
    assert response.json()["message"].startswith("invalid request: ")
    assert runs.triggered == []


def test_cancel(client: TestClient, runs: FakeRuns) -> None:
    runs.cancellable.add("r1")
    ok = client.post("/cancel", json={"sync_run_id": "r1"})
    assert (ok.status_code, ok.json()) == (200, {"status": "cancelled"})
    missing = client.post("/cancel", json={"sync_run_id": "nope"})
    assert (missing.status_code, missing.json()) == (404, {"status": "not_found"})


def test_pipeline_already_running_becomes_409(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real adapter over tasks.trigger: its AlreadyRunning turns into the protocol's 409."""

    class AlreadyRunning(Exception):
        pass

    calls: list[dict[str, Any]] = []

    def trigger_sync(source_id: str, mode: str = "incremental", **kwargs: Any) -> None:
        calls.append({"source_id": source_id, "mode": mode, **kwargs})
        raise AlreadyRunning("run r0 holds the source")

    try:
        import tasks.trigger as trigger_module

        monkeypatch.setattr(trigger_module, "trigger_sync", trigger_sync)
        monkeypatch.setattr(trigger_module, "AlreadyRunning", AlreadyRunning)
    except ImportError:  # the pipeline has not landed: stand in for its module
        stand_in = types.ModuleType("tasks.trigger")
        stand_in.trigger_sync = trigger_sync  # type: ignore[attr-defined]
        stand_in.AlreadyRunning = AlreadyRunning  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tasks.trigger", stand_in)

    app = create_app(settings(), runs=PipelineRuns(), sources=FakeBook())
    with TestClient(app) as test_client:
        response = test_client.post(
            "/sync", json={"sync_run_id": "r9", "source_id": "s1", "sync_mode": "full"}
        )
    assert response.status_code == 409
    assert response.json()["message"] == "Sync already in progress for this source"
    assert calls == [
        {"source_id": "s1", "mode": "full", "run_id": "r9", "trigger": "omni", "is_resume": False}
    ]


def test_run_status_comes_from_redis_and_survives_a_restart(redis_server: RedisServer) -> None:
    store = RunStore(redis_server.client(6))
    run_id, source_id = f"run-{uuid.uuid4().hex[:8]}", f"src-{uuid.uuid4().hex[:8]}"
    store.create(run_id, source_id, "full", "omni")

    with TestClient(create_app(settings(), runs=PipelineRuns(store))) as first:
        assert first.get(f"/sync/{run_id}").json() == {"running": True}
        assert first.get("/sync/never-heard-of").json() == {"running": False}

    # A new process of the front (same Redis) still knows the run.
    fresh_store = RunStore(redis_server.client(6))
    with TestClient(create_app(settings(), runs=PipelineRuns(fresh_store))) as second:
        assert second.get(f"/sync/{run_id}").json() == {"running": True}
        store.mark_running(run_id)
        store.mark_completed(run_id)
        assert second.get(f"/sync/{run_id}").json() == {"running": False}


def test_run_status_when_redis_is_down_is_an_error_not_false() -> None:
    dead = RunStore(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    with TestClient(create_app(settings(), runs=PipelineRuns(dead))) as test_client:
        response = test_client.get("/sync/r1")
    assert response.status_code == 503
    assert "REDIS_URL" in response.json()["message"]


def test_registers_at_start_and_periodically(omni_manager: FakeManager) -> None:  # noqa: F811
    omni_manager.check_connector_health = False  # TestClient serves no real port
    manager = ManagerClient(omni_manager.url, timeout=(1, 2), retries=0)
    app = create_app(settings(port=9001), runs=FakeRuns(), manager=manager, register_every=0.1)
    with TestClient(app):
        deadline = time.monotonic() + 5
        while len(omni_manager.registrations) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(omni_manager.registrations) >= 2
    assert omni_manager.registrations[0]["connector_url"] == "http://localhost:9001"


def test_registration_failures_are_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    manager = ManagerClient("http://127.0.0.1:1", timeout=(0.2, 0.2), retries=0)
    app = create_app(settings(), runs=FakeRuns(), manager=manager, register_every=0.05)
    with TestClient(app) as test_client:
        time.sleep(0.2)
        assert test_client.get("/health").status_code == 200
    assert "registration with the connector-manager failed" in caplog.text


def test_serve_is_a_click_command_named_serve() -> None:
    assert command is serve_command
    assert command.name == "serve"
    assert {p.name for p in command.params} == {"host", "port"}
