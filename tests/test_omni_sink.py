"""OmniSink and OmniSourceBackend against the strict fake connector-manager over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from tasks.document import CustomFieldValue, Group, Principals
from tasks.omni_client import ManagerClient
from tasks.paperless.errors import NotFoundError
from tasks.sinks.base import Checkpoint, RunInfo
from tasks.sinks.omni import OmniConfigError, OmniSink, OmniSourceBackend, state_key
from tests.omni_double import FakeManager
from tests.support.omni import make_document, omni_manager  # noqa: F401
from tests.support.redis_server import RedisServer


class Files:
    """A FileSource standing in for the Paperless-ngx client."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def download(self, doc_id: int) -> tuple[bytes, str, str]:
        self.asked.append(doc_id)
        if doc_id >= 900:
            raise NotFoundError(f"/api/documents/{doc_id}/download/ was not found.")
        return f"extracted words of scan {doc_id}".encode(), "application/pdf", f"{doc_id}.pdf"


@pytest.fixture
def redis(redis_server: RedisServer) -> Redis:
    return redis_server.client(5)


@pytest.fixture
def source(omni_manager: FakeManager) -> str:  # noqa: F811
    source_id = f"src-{uuid.uuid4().hex[:8]}"
    omni_manager.add_source(source_id, "http://paperless.test", "secret-api-key-123")
    return source_id


@pytest.fixture
def run(omni_manager: FakeManager, source: str) -> RunInfo:  # noqa: F811
    return RunInfo(run_id=omni_manager.create_run(source), source_id=source, mode="full")


@pytest.fixture
def manager(omni_manager: FakeManager) -> Iterator[ManagerClient]:  # noqa: F811
    client = ManagerClient(omni_manager.url, timeout=(2, 5), retries=2, backoff=0.01)
    yield client
    client.close()


@pytest.fixture
def sink(manager: ManagerClient, redis: Redis) -> OmniSink:
    return OmniSink(manager, redis)


def test_new_documents_are_created_with_content_metadata_and_permissions(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    docs = [make_document(run.source_id, i) for i in (1, 2, 3)]
    sink.write(run, docs)

    held = omni_manager.documents(run.source_id)
    assert sorted(held) == [f"paperless:{run.source_id}:{i}" for i in (1, 2, 3)]
    assert omni_manager.event_types() == ["document_created"] * 3
    first = held[f"paperless:{run.source_id}:1"]
    assert first["content"] == "# Invoice 1\n\nTotal due: 10 EUR"
    assert first["metadata"] == {
        "title": "Invoice 1",
        "author": "ACME Corp",
        "created_at": "2024-06-01T00:00:00Z",
        "updated_at": "2024-06-03T08:20:30Z",
        "content_type": "application/pdf",
        "mime_type": "application/pdf",
        "url": "http://paperless.test/documents/1/details/",
        "path": "finance/invoices",
        "extra": {
            "custom_fields": {"Amount": "EUR 12.50"},
            "notes": 1,
            "archive_serial_number": 1001,
            "tags": ["Inbox", "Paid"],
            "owner": "ada@example.org",
            "page_count": 2,
            "added": "2024-06-02T09:15:00+02:00",
        },
    }
    assert first["permissions"] == {
        "public": False,
        "users": ["ada@example.org"],
        "groups": ["g1@x.invalid"],
    }
    assert first["attributes"] == {
        "source_type": "paperless_ngx",
        "correspondent": "ACME Corp",
        "document_type": "Invoice",
        "tags": ["Inbox", "Paid"],
        "archive_serial_number": 1001,
        "original_file_name": "scan-1.pdf",
        "storage_path": "finance/invoices",
        "created": "2024-06-01",
    }
    # One batch for the page, and the updated counter follows the written documents.
    assert len(omni_manager.calls("POST", "/sdk/events/batch")) == 1
    assert omni_manager.runs[run.run_id].updated == 3


def test_known_documents_are_updated_and_state_follows(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    sink.write(run, [make_document(run.source_id, 1), make_document(run.source_id, 2)])
    changed = make_document(run.source_id, 2, title="Invoice 2 (corrected)", fingerprint="f2b")
    sink.write(run, [changed, make_document(run.source_id, 3)])

    assert omni_manager.event_types() == [
        "document_created",
        "document_created",
        "document_updated",
        "document_created",
    ]
    held = omni_manager.documents(run.source_id)
    assert held[f"paperless:{run.source_id}:2"]["metadata"]["title"] == "Invoice 2 (corrected)"
    states = sink.stored_states(run.source_id)
    assert sorted(states) == [1, 2, 3]
    assert states[2].fingerprint == "f2b" and states[2].light_fingerprint == "light-2"
    assert sink.stored_states(run.source_id, [3, 99]).keys() == {3}


def test_public_document_without_dates_or_classification(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    bare = make_document(
        run.source_id,
        7,
        correspondent=None,
        document_type=None,
        storage_path=None,
        created=None,
        modified=None,
        tags=[],
        custom_fields=[],
        notes=[],
        archive_serial_number=None,
        access={"public": True},
    )
    sink.write(run, [bare])
    event = omni_manager.documents(run.source_id)[f"paperless:{run.source_id}:7"]
    assert event["permissions"] == {"public": True, "users": [], "groups": []}
    assert "created_at" not in event["metadata"] and "author" not in event["metadata"]
    assert event["attributes"]["source_type"] == "paperless_ngx"
    assert "correspondent" not in event["attributes"]


def test_textless_document_goes_to_extraction_and_waits_out_a_429(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    omni_manager.throttle_extraction(0.3)
    files = Files()
    docs = [make_document(run.source_id, 4, has_text=False), make_document(run.source_id, 5)]
    started = time.monotonic()
    sink.write(run, docs, files=files)

    assert time.monotonic() - started >= 0.3
    assert files.asked == [4]
    extract_calls = omni_manager.calls("POST", "/sdk/extract-content")
    assert [c.status for c in extract_calls] == [429, 200]
    assert extract_calls[-1].body["filename"] == "4.pdf"
    assert extract_calls[-1].body["mime_type"] == "application/pdf"
    held = omni_manager.documents(run.source_id)
    assert held[f"paperless:{run.source_id}:4"]["content"] == "extracted words of scan 4"
    assert held[f"paperless:{run.source_id}:5"]["content"].startswith("# Invoice 5")


def test_textless_document_without_file_or_refused_extraction_sends_its_text(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    omni_manager.fail_next("POST", "/sdk/extract-content", 413)
    docs = [
        make_document(run.source_id, 6, has_text=False),
        make_document(run.source_id, 901, has_text=False),
    ]
    sink.write(run, docs, files=Files())
    held = omni_manager.documents(run.source_id)
    assert held[f"paperless:{run.source_id}:6"]["content"].startswith("# Invoice 6")
    assert held[f"paperless:{run.source_id}:901"]["content"].startswith("# Invoice 901")
    assert omni_manager.extractions == []


def test_a_text_too_big_for_a_json_body_goes_whole_as_a_file(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    huge = "# Big report\n\n" + "Zahlungseingang bestätigt. " * 200_000  # ~5 MB, non-ASCII
    sink.write(run, [make_document(run.source_id, 8, text=huge)])
    held = omni_manager.documents(run.source_id)[f"paperless:{run.source_id}:8"]
    assert held["content"] == huge
    (extraction,) = omni_manager.extractions
    assert (extraction.mime_type, extraction.filename) == ("text/plain", "paperless-8.txt")


def test_event_batches_stay_under_the_managers_body_limit(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    long_value = CustomFieldValue(name="Remarks", data_type="longtext", value="x" * 400_000)
    docs = [make_document(run.source_id, i, custom_fields=[long_value]) for i in range(1, 11)]
    sink.write(run, docs)
    batches = omni_manager.calls("POST", "/sdk/events/batch")
    assert len(batches) >= 3
    assert all(call.status == 200 for call in batches)
    assert len(omni_manager.documents(run.source_id)) == 10


def test_delete_sends_deleted_events_in_batches_and_forgets_state(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
    redis: Redis,
) -> None:
    sink.write(run, [make_document(run.source_id, i) for i in (1, 2, 3)])
    sink.delete(run, [2, 3, *range(1000, 2100)])

    assert sorted(omni_manager.documents(run.source_id)) == [f"paperless:{run.source_id}:1"]
    # 1102 deletions: three batches of at most 500.
    assert len(omni_manager.calls("POST", "/sdk/events/batch")) == 1 + 3
    assert redis.hkeys(state_key(run.source_id)) == [b"1"]


def test_groups_become_group_membership_events(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    principals = Principals(
        groups=[
            Group(key="g1@x.invalid", name="Finance", member_emails=["b@x.org", "a@x.org"]),
            Group(key="g2@x.invalid", name="Empty"),
        ]
    )
    sink.record_principals(run, principals)
    groups = omni_manager.groups(run.source_id)
    assert groups["g1@x.invalid"]["group_name"] == "Finance"
    assert groups["g1@x.invalid"]["member_emails"] == ["a@x.org", "b@x.org"]
    assert groups["g2@x.invalid"]["member_emails"] == []


def test_progress_counts_scanned_and_throttles_heartbeats(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    for _ in range(3):
        sink.progress(run, 100)
    fake_run = omni_manager.runs[run.run_id]
    assert fake_run.scanned == 300
    assert fake_run.heartbeats == 1


def test_a_transient_manager_error_is_retried(
    sink: OmniSink,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    omni_manager.fail_next("POST", "/sdk/content", 503)
    omni_manager.fail_next("POST", "/sdk/events/batch", 502)
    sink.write(run, [make_document(run.source_id, 1)])
    assert list(omni_manager.documents(run.source_id)) == [f"paperless:{run.source_id}:1"]


def test_backend_load_gives_config_and_only_our_checkpoint(
    manager: ManagerClient,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    backend = OmniSourceBackend(manager)
    config = backend.load(run)
    assert (config.base_url, config.token, config.checkpoint) == (
        "http://paperless.test",
        "secret-api-key-123",
        None,
    )
    assert "secret-api-key-123" not in repr(config)

    ours = {"watermark": "2024-06-01T00:00:00Z", "known_ids": [[1, 3]], "version": 1}
    omni_manager.sources[run.source_id].checkpoint = ours
    assert backend.load(run).checkpoint == Checkpoint(**ours)

    # What Omni's own connector leaves behind is not ours: start from the sink's state.
    omni_manager.sources[run.source_id].checkpoint = {"last_sync_at": "2024-06-01T00:00:00"}
    assert backend.load(run).checkpoint is None


def test_backend_load_without_credentials_says_what_to_do(
    manager: ManagerClient,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    omni_manager.sources[run.source_id].api_key = ""
    with pytest.raises(OmniConfigError, match=r"no api_key .* add a Paperless-ngx API token"):
        OmniSourceBackend(manager).load(run)


def test_backend_commit_stores_checkpoint_then_completes(
    manager: ManagerClient,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    checkpoint = Checkpoint(watermark="2024-07-01T10:00:00Z", known_ids=[[1, 5], [9, 9]])
    OmniSourceBackend(manager).commit(run, checkpoint, {"scanned": 6, "written": 6})

    sdk_calls = [(c.method, c.path) for c in omni_manager.calls(prefix="/sdk/sync/")]
    assert sdk_calls == [
        ("PUT", f"/sdk/sync/{run.run_id}/checkpoint"),
        ("POST", f"/sdk/sync/{run.run_id}/complete"),
    ]
    assert omni_manager.runs[run.run_id].status == "completed"
    assert omni_manager.sources[run.source_id].checkpoint == checkpoint.model_dump()


def test_backend_fail_marks_the_run_failed_and_keeps_the_checkpoint(
    manager: ManagerClient,
    omni_manager: FakeManager,  # noqa: F811
    run: RunInfo,
) -> None:
    before = {"watermark": "2024-06-01T00:00:00Z", "known_ids": [], "version": 1}
    omni_manager.sources[run.source_id].checkpoint = before
    OmniSourceBackend(manager).fail(run, "authentication failed: check the API token.")
    fake_run = omni_manager.runs[run.run_id]
    assert (fake_run.status, fake_run.error) == (
        "failed",
        "authentication failed: check the API token.",
    )
    assert omni_manager.sources[run.source_id].checkpoint == before
