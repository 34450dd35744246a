"""End to end in Omni mode: the fake manager calls `serve` (a real uvicorn process), a real
Celery worker syncs the Paperless-ngx double and reports to the fake over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.omni_double import FakeManager
from tests.paperless_double import PaperlessDouble
from tests.support.omni import (
    ServeProcess,
    expected_documents,
    omni_manager,  # noqa: F401
    wait_for_run,
)
from tests.support.redis_server import free_port
from tests.support.worker import SyncEnv, only_gets

SOURCE = "omni-src"


@dataclass
class OmniSetup:
    fake: FakeManager
    paperless: PaperlessDouble
    serve: ServeProcess
    sync_env: SyncEnv

    def sync(self, mode: str) -> str:
        run_id, response = self.fake.start_sync(self.serve.url, SOURCE, mode)
        assert (response.status_code, response.json()) == (200, {"status": "started"})
        return run_id

    def events(self, run_id: str) -> dict[str, set[str]]:
        by_type: dict[str, set[str]] = {}
        for event in self.fake.events:
            if event["sync_run_id"] == run_id:
                key = str(event.get("document_id") or event.get("group_email"))
                by_type.setdefault(event["type"], set()).add(key)
        return by_type


@pytest.fixture
def omni(
    sync_env: SyncEnv,
    paperless: PaperlessDouble,
    omni_manager: FakeManager,  # noqa: F811
) -> Iterator[OmniSetup]:
    omni_manager.add_source(SOURCE, paperless.url, paperless.token("admin"))
    sync_env.start_worker(connector_manager_url=omni_manager.url)
    env = {**sync_env.env, "CONNECTOR_MANAGER_URL": omni_manager.url}
    serve = ServeProcess(env, free_port(), sync_env.data_dir / "serve.log").start()
    try:
        yield OmniSetup(omni_manager, paperless, serve, sync_env)
    finally:
        serve.stop()


def _names(body: Any, run_id: str) -> bool:
    return isinstance(body, dict) and body.get("sync_run_id") == run_id


def assert_omni_holds(setup: OmniSetup, expected: dict[str, Any]) -> None:
    held = setup.fake.documents(SOURCE)
    assert sorted(held) == sorted(expected)
    extracted = {e.content_id for e in setup.fake.extractions}
    for key, doc in expected.items():
        event = held[key]
        assert event["metadata"]["title"] == doc.title, key
        assert event["permissions"] == {
            "public": doc.access.public,
            "users": doc.access.users,
            "groups": doc.access.groups,
        }, key
        assert event["attributes"]["tags"] == doc.tags, key
        if doc.has_text:
            assert event["content"] == doc.text, key
        else:  # no OCR text: Omni extracted the file itself
            assert event["content_id"] in extracted, key


def test_full_then_incremental_sync_send_exactly_the_changes(omni: OmniSetup) -> None:
    fake, paperless = omni.fake, omni.paperless
    first = omni.sync("full")
    assert wait_for_run(fake, first) == "completed"
    before = expected_documents(paperless, SOURCE)
    assert_omni_holds(omni, before)
    events = omni.events(first)
    assert events["document_created"] == set(before)
    assert "document_updated" not in events and "document_deleted" not in events
    assert len(fake.event_types(first)) == len(before) + len(events["group_membership_sync"])
    assert any(not doc.has_text for doc in before.values())  # the extraction path ran
    run = fake.runs[first]
    assert run.scanned == len(before)
    checkpoint = fake.sources[SOURCE].checkpoint
    assert checkpoint is not None and checkpoint["watermark"].endswith("Z")
    assert run.late_calls == []
    # One upload per document; events, counters and heartbeats per page, not per document.
    textless = sum(not doc.has_text for doc in before.values())
    assert len(fake.calls("POST", "/sdk/content")) == len(before) - textless
    assert len(fake.calls("POST", "/sdk/extract-content")) == textless
    per_run = [c for c in fake.calls(prefix="/sdk/") if first in c.path or _names(c.body, first)]
    print(f"manager requests per document, full sync: {len(per_run) / len(before):.2f}")
    assert len(per_run) <= 1.25 * len(before)

    ids = sorted(int(key.rsplit(":", 1)[1]) for key in before)
    paperless.edit_document(ids[0], title="Renamed by hand")
    paperless.delete_document(ids[1])
    added = paperless.add_document("Brand new scan", content="fresh words")
    tag_id = next(iter(paperless.corpus.lookups["tags"]))
    paperless.rename_tag(tag_id, "Renamed tag")  # bumps no `modified`

    second = omni.sync("incremental")
    assert wait_for_run(fake, second) == "completed"
    after = expected_documents(paperless, SOURCE)
    assert_omni_holds(omni, after)
    changed = {k for k in after if k in before and after[k].fingerprint != before[k].fingerprint}
    assert len(changed) > 1  # the edit and the renamed tag's documents
    events = omni.events(second)
    assert events.get("document_updated", set()) == changed
    assert events["document_created"] == {f"paperless:{SOURCE}:{added.id}"}
    assert events["document_deleted"] == {f"paperless:{SOURCE}:{ids[1]}"}
    assert fake.sources[SOURCE].checkpoint != checkpoint
    assert only_gets(paperless)
    # serve registered, and the manager could reach its /health at the connector_url
    assert fake.registrations[0]["connector_url"] == omni.serve.url


def test_a_failed_page_fails_the_run_and_keeps_the_checkpoint(omni: OmniSetup) -> None:
    fake, paperless = omni.fake, omni.paperless
    assert wait_for_run(fake, omni.sync("full")) == "completed"
    checkpoint = fake.sources[SOURCE].checkpoint
    doc_id = int(next(iter(expected_documents(paperless, SOURCE))).rsplit(":", 1)[1])
    paperless.edit_document(doc_id, title="Edited while Omni refused content")

    fake.fail_next("POST", "/sdk/content", 400)  # the manager refuses the page's upload
    failed = omni.sync("incremental")
    assert wait_for_run(fake, failed) == "failed"
    assert "POST /sdk/content answered 400" in (fake.runs[failed].error or "")
    assert fake.calls("PUT", f"/sdk/sync/{failed}/checkpoint") == []
    assert fake.sources[SOURCE].checkpoint == checkpoint
    omni.sync_env.wait(failed)

    # The next run redoes what the failed one did not finish.
    again = omni.sync("incremental")
    assert wait_for_run(fake, again) == "completed"
    assert_omni_holds(omni, expected_documents(paperless, SOURCE))
    assert fake.documents(SOURCE)[f"paperless:{SOURCE}:{doc_id}"]["metadata"]["title"] == (
        "Edited while Omni refused content"
    )


@pytest.mark.slow  # a deliberately slow sync, two serve start-ups
def test_restarting_serve_mid_sync_keeps_the_run_visible(omni: OmniSetup) -> None:
    fake, paperless = omni.fake, omni.paperless
    paperless.faults.latency = 0.4  # a sync of several seconds
    run_id = omni.sync("full")
    status_url = f"{omni.serve.url}/sync/{run_id}"
    assert requests.get(status_url, timeout=5).json() == {"running": True}

    omni.serve.kill()
    omni.serve.start()
    still_running = fake.runs[run_id].status == "running"
    answer = requests.get(status_url, timeout=5).json()
    assert still_running, "the sync ended before serve was back; make it slower"
    assert answer == {"running": True}
    assert fake.poll_run(omni.serve.url, run_id) is True
    assert fake.resumes == []  # the manager saw no reason to resume

    paperless.faults.latency = 0.0
    assert wait_for_run(fake, run_id) == "completed"
    omni.sync_env.wait(run_id)
    assert requests.get(status_url, timeout=5).json() == {"running": False}
    assert_omni_holds(omni, expected_documents(paperless, SOURCE))
    assert fake.registrations, "serve registered its manifest with the manager"

    # A run the connector never heard of (its POST /sync was lost): the manager's poll sees
    # running false and re-sends it with is_resume; the connector then does it.
    lost = fake.create_run(SOURCE, "incremental")
    assert fake.poll_run(omni.serve.url, lost) is False
    assert fake.resumes == [lost]
    assert wait_for_run(fake, lost) == "completed"
