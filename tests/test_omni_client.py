"""ManagerClient against the strict fake manager: errors, retries, and what the fake refuses."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

import tasks.omni_client as omni_client
from tasks.omni_client import (
    ManagerClient,
    ManagerRejected,
    ManagerUnavailable,
    SourceInactive,
    SourceNotKnown,
    SyncConflict,
)
from tests.omni_double import FakeManager
from tests.omni_double.manager import _ROUTES as ROUTES
from tests.support.omni import omni_manager  # noqa: F401

SECRET = "very-secret-api-key-42"


@pytest.fixture
def manager(omni_manager: FakeManager) -> Iterator[ManagerClient]:  # noqa: F811
    client = ManagerClient(omni_manager.url, timeout=(2, 5), retries=2, backoff=0.01)
    yield client
    client.close()


def test_create_sync_and_conflict(manager: ManagerClient, omni_manager: FakeManager) -> None:  # noqa: F811
    omni_manager.add_source("s1", "http://p.test", SECRET)
    run_id = manager.create_sync("s1", "incremental")
    assert omni_manager.runs[run_id].sync_type == "incremental"
    with pytest.raises(SyncConflict) as conflict:
        manager.create_sync("s1", "full")
    assert conflict.value.status == 409
    with pytest.raises(SourceNotKnown) as unknown:
        manager.create_sync("nope", "full")
    assert unknown.value.status == 404
    assert "source nope" in str(unknown.value) and "deleted in Omni" in str(unknown.value)
    omni_manager.add_source("off", "http://p.test", SECRET, active=False)
    with pytest.raises(SourceInactive) as inactive:
        manager.create_sync("off", "incremental")
    assert inactive.value.status == 400
    assert str(inactive.value).endswith("activate the source in Omni to have it synced again.")
    assert [r.status for r in omni_manager.calls("POST", "/sdk/sync/create")] == [
        200,
        409,
        404,
        400,
    ]


def test_single_event_and_connector_state(
    manager: ManagerClient,
    omni_manager: FakeManager,  # noqa: F811
) -> None:
    omni_manager.add_source("s1", "http://p.test", SECRET)
    run_id = omni_manager.create_run("s1")
    deleted = {
        "type": "document_deleted",
        "sync_run_id": run_id,
        "source_id": "s1",
        "document_id": "paperless:s1:4",
    }
    manager.event(run_id, "s1", deleted)
    assert omni_manager.event_types(run_id) == ["document_deleted"]
    manager.put_connector_state("s1", {"note": "kept by Omni"})
    assert manager.sync_config("s1")["connector_state"] == {"note": "kept by Omni"}


def test_unknown_source_config_is_a_clear_error(manager: ManagerClient) -> None:
    with pytest.raises(SourceNotKnown, match=r"does not know this source .*check the source id"):
        manager.sync_config("missing")


def test_sync_config_errors_never_quote_the_body(
    manager: ManagerClient,
    omni_manager: FakeManager,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    omni_manager.add_source("s1", "http://p.test", SECRET)
    assert manager.sync_config("s1")["credentials"]["api_key"] == SECRET

    # A manager that answers 4xx with the credentials in the body must not leak them.
    def leaky(self: FakeManager, path: str, body: object) -> tuple[int, dict, dict]:
        return 400, {"credentials": {"api_key": SECRET}}, {}

    monkeypatch.setitem(ROUTES, ("GET", "/sdk/source/*/sync-config"), leaky)
    with pytest.raises(ManagerRejected) as rejected:
        manager.sync_config("s1")
    assert SECRET not in str(rejected.value)


def test_unreachable_manager_fails_fast_with_one_sentence() -> None:
    client = ManagerClient("http://127.0.0.1:1", timeout=(0.5, 0.5), retries=1, backoff=0.01)
    started = time.monotonic()
    with pytest.raises(ManagerUnavailable) as error:
        client.heartbeat("r1")
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert message.startswith("could not reach the connector-manager at http://127.0.0.1:1")
    assert message.endswith("check CONNECTOR_MANAGER_URL and that it is running.")


def test_server_errors_are_retried_then_reported(
    manager: ManagerClient,
    omni_manager: FakeManager,  # noqa: F811
) -> None:
    omni_manager.add_source("s1", "http://p.test", SECRET)
    run_id = omni_manager.create_run("s1")
    omni_manager.fail_next("POST", f"/sdk/sync/{run_id}/heartbeat", 503, times=2)
    manager.heartbeat(run_id)  # third attempt succeeds
    assert omni_manager.runs[run_id].heartbeats == 1

    omni_manager.fail_next("POST", f"/sdk/sync/{run_id}/heartbeat", 503, times=3)
    with pytest.raises(ManagerUnavailable, match="kept failing"):
        manager.heartbeat(run_id)


def test_extraction_busy_for_too_long_gives_up(
    manager: ManagerClient,
    omni_manager: FakeManager,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    omni_manager.add_source("s1", "http://p.test", SECRET)
    run_id = omni_manager.create_run("s1")
    monkeypatch.setattr(omni_client, "_MAX_429_TOTAL", 0.25)
    omni_manager.throttle_extraction(0.1, 0.1, 0.1, 0.1)
    with pytest.raises(ManagerUnavailable, match="stayed busy"):
        manager.extract_content(run_id, b"%PDF", "application/pdf", "a.pdf")


def post(fake: FakeManager, path: str, body: object) -> requests.Response:
    return requests.post(fake.url + path, json=body, timeout=5)


def test_the_fake_refuses_what_the_manager_would(omni_manager: FakeManager) -> None:  # noqa: F811
    omni_manager.add_source("s1", "http://p.test", SECRET)
    run_id = omni_manager.create_run("s1")
    content_id = post(omni_manager, "/sdk/content", {"sync_run_id": run_id, "content": "x"}).json()[
        "content_id"
    ]
    good = {
        "type": "document_created",
        "sync_run_id": run_id,
        "source_id": "s1",
        "document_id": "paperless:s1:1",
        "content_id": content_id,
        "metadata": {"title": "t", "created_at": "2024-06-01T00:00:00Z"},
        "permissions": {"public": False, "users": ["a@x.org"], "groups": []},
    }
    batch = {"sync_run_id": run_id, "source_id": "s1", "events": [good]}
    assert post(omni_manager, "/sdk/events/batch", batch).status_code == 200

    bad_events = {
        "bare date": {**good, "metadata": {"created_at": "2024-06-01"}},
        "no permissions": {k: v for k, v in good.items() if k != "permissions"},
        "unknown type": {**good, "type": "document_touched"},
        "stringly public": {**good, "permissions": {"public": "yes"}},
        "unknown content": {**good, "content_id": "content-does-not-exist"},
        "number title": {**good, "metadata": {"title": 5}},
    }
    for name, event in bad_events.items():
        response = post(omni_manager, "/sdk/events/batch", {**batch, "events": [event]})
        assert response.status_code == 422, name
    unknown_run = {**batch, "sync_run_id": "run-unknown"}
    assert post(omni_manager, "/sdk/events/batch", unknown_run).status_code == 422
    too_big = {"sync_run_id": run_id, "content": "x" * (3 * 1024 * 1024)}
    assert post(omni_manager, "/sdk/content", too_big).status_code == 413
    assert len(omni_manager.violations) == len(bad_events) + 2
    omni_manager.violations.clear()  # expected here; the fixture checks for none left
    assert list(omni_manager.documents("s1")) == ["paperless:s1:1"]
