"""The pipeline in Omni mode: the same runs, with the fake connector-manager as sink and
source backend (run ids, config and checkpoint come from Omni)."""

from __future__ import annotations

import pytest

from config.settings import get_settings
from tasks import trigger
from tasks.trigger import trigger_sync
from tests.omni_double import FakeManager
from tests.paperless_double import PaperlessDouble
from tests.support.worker import SyncEnv, only_gets, page_fetches


def test_omni_runs_complete_with_checkpoint_and_only_changed_documents(
    sync_env: SyncEnv, paperless: PaperlessDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeManager() as omni:
        monkeypatch.setenv("CONNECTOR_MANAGER_URL", omni.url)
        get_settings.cache_clear()
        trigger._stores.clear()
        sync_env.start_worker(connector_manager_url=omni.url)
        omni.add_source("src1", paperless.url, paperless.token("admin"))

        full = omni.create_run("src1", "full")
        assert trigger_sync("src1", "full", run_id=full, trigger="omni").run_id == full
        assert sync_env.wait(full).state == "completed"
        assert omni.runs[full].status == "completed"
        assert omni.runs[full].checkpoint is not None
        assert omni.runs[full].checkpoint["known_ids"] == [[1, 200]]
        assert len(omni.documents("src1")) == 200

        paperless.edit_document(3, title="Changed in Paperless-ngx")
        paperless.reset_log()
        incremental = omni.create_run("src1", "incremental")
        trigger_sync("src1", "incremental", run_id=incremental, trigger="omni")
        run = sync_env.wait(incremental)

        assert run.state == "completed", run.error
        assert omni.runs[incremental].status == "completed"
        assert 3 in {i for ids in page_fetches(paperless) for i in ids}
        assert omni.documents("src1")["paperless:src1:3"]["metadata"]["title"] == (
            "Changed in Paperless-ngx"
        )
        assert omni.event_types(incremental).count("document_updated") == run.written
        assert omni.violations == []
        assert only_gets(paperless)
