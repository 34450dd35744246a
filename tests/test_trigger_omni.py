"""In Omni mode, a run we start ourselves (CLI, beat) is opened in Omni first."""

from __future__ import annotations

import pytest

from config.settings import get_settings
from tasks.trigger import AlreadyRunning, trigger_sync
from tests.omni_double import FakeManager
from tests.paperless_double import PaperlessDouble
from tests.support.omni import omni_manager  # noqa: F401  (fixture)
from tests.support.worker import SyncEnv


@pytest.fixture
def omni_mode(sync_env: SyncEnv, omni_manager: FakeManager, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    monkeypatch.setenv("CONNECTOR_MANAGER_URL", omni_manager.url)
    get_settings.cache_clear()
    sync_env.start_worker(connector_manager_url=omni_manager.url)
    yield omni_manager
    get_settings.cache_clear()


def test_a_sync_started_here_is_created_in_omni_and_completes_there(
    sync_env: SyncEnv, paperless: PaperlessDouble, omni_mode: FakeManager
) -> None:
    omni_mode.add_source("omni-cli", paperless.url, paperless.token("admin"))

    record = trigger_sync("omni-cli", "full", trigger="cli")

    created = omni_mode.calls("POST", "/sdk/sync/create")
    assert len(created) == 1
    assert created[0].body == {"source_id": "omni-cli", "sync_type": "full"}
    assert sync_env.wait(record.run_id).state == "completed"
    assert omni_mode.calls("POST", f"/sdk/sync/{record.run_id}/complete")
    assert len(omni_mode.documents("omni-cli")) == len(paperless.visible_documents("admin"))


def test_omni_refusing_a_second_run_is_already_running(
    sync_env: SyncEnv, paperless: PaperlessDouble, omni_mode: FakeManager
) -> None:
    omni_mode.add_source("omni-busy", paperless.url, paperless.token("admin"))
    omni_mode.create_run("omni-busy", "incremental")  # Omni itself runs a sync of it

    with pytest.raises(AlreadyRunning, match="already running"):
        trigger_sync("omni-busy", "incremental", trigger="beat")
    assert sync_env.store.active_run("omni-busy") is None
