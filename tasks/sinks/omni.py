"""The Omni sink and source backend: documents and runs through the connector-manager.

`OmniSink` uploads each document's text (`POST /sdk/content`, a few in parallel; a document
without OCR text goes to the manager's extraction instead), then sends one events batch per
page. Whether a document is new to Omni (`document_created`) or known (`document_updated`)
is decided by the sink's state hash `pc:omni:{source}:state` (doc id → "light|full"
fingerprints), written only after the manager accepted the batch, so a crash in between
re-sends rather than loses.

`OmniSourceBackend` reads config and credentials per run from the manager and never keeps
them; the checkpoint goes back as `PUT checkpoint` then `POST complete`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from redis import Redis

from config.settings import Settings, get_settings
from tasks.document import IndexedDocument, Principals, document_key
from tasks.omni_client import ManagerClient, ManagerError, ManagerRejected
from tasks.paperless.errors import NotFoundError
from tasks.sinks.base import Checkpoint, FileSource, RunInfo, SourceConfig, StoredState

log = logging.getLogger(__name__)

SOURCE_TYPE = "paperless_ngx"
_EVENTS_PER_BATCH = 500
# The manager takes JSON bodies up to axum's default 2 MiB (extract-content: 400 MB); stay
# well below it, and send longer texts as a text/plain file to the extraction instead.
_MAX_JSON_BYTES = 1_500_000
_HEARTBEAT_EVERY = 5.0  # seconds; the manager's staleness limit is minutes

# Per process: when each run last sent a heartbeat (page tasks share a process).
_last_heartbeat: dict[str, float] = {}
_heartbeat_lock = threading.Lock()


class OmniConfigError(ManagerError):
    """The source's config or credentials in Omni are missing something a sync needs."""


def manager_from_settings(settings: Settings | None = None) -> ManagerClient:
    settings = settings or get_settings()
    if settings.connector_manager_url is None:
        raise OmniConfigError(
            "CONNECTOR_MANAGER_URL is not set; set it to reach Omni's connector-manager."
        )
    return ManagerClient(
        settings.connector_manager_url,
        timeout=(settings.http_connect_timeout, settings.http_read_timeout),
        retries=settings.http_retries,
    )


def create_omni_run(source_id: str, mode: str) -> str:
    """Open a run in Omni for a sync we start ourselves (beat); returns its sync_run_id.

    Raises `tasks.omni_client.SyncConflict` when Omni already runs a sync of the source (or
    is at its limit), `SourceNotKnown` when Omni has no such source, `SourceInactive` when
    the source is switched off.
    """
    manager = manager_from_settings()
    try:
        return manager.create_sync(source_id, "full" if mode == "full" else "incremental")
    finally:
        manager.close()


def fail_omni_run(run_id: str, reason: str) -> None:
    """Close a run we opened in Omni but will not do, so the manager does not wait for it."""
    manager = manager_from_settings()
    try:
        manager.fail(run_id, reason)
    finally:
        manager.close()


def state_key(source_id: str) -> str:
    return f"pc:omni:{source_id}:state"


class OmniSink:
    name = "omni"

    def __init__(self, manager: ManagerClient, redis: Redis, *, uploads: int = 8) -> None:
        self.manager = manager
        self.redis = redis
        self.uploads = uploads

    # -- Sink ------------------------------------------------------------------------

    def stored_states(
        self, source_id: str, doc_ids: list[int] | None = None
    ) -> dict[int, StoredState]:
        key = state_key(source_id)
        if doc_ids is None:
            pairs = self.redis.hscan_iter(key, count=1000)
        else:
            if not doc_ids:
                return {}
            values: list[Any] = self.redis.hmget(key, [str(i) for i in doc_ids])  # type: ignore[assignment]
            pairs = zip(doc_ids, values, strict=True)
        states: dict[int, StoredState] = {}
        for field, value in pairs:
            if value is None:
                continue
            light, _, full = _text(value).partition("|")
            states[int(_text(field))] = StoredState(light_fingerprint=light, fingerprint=full)
        return states

    def write(
        self, run: RunInfo, docs: list[IndexedDocument], files: FileSource | None = None
    ) -> None:
        if not docs:
            return
        with ThreadPoolExecutor(max_workers=min(self.uploads, len(docs))) as pool:
            content_ids = list(pool.map(lambda doc: self._upload(run, doc, files), docs))
        known = self.stored_states(run.source_id, [doc.doc_id for doc in docs])
        events = [
            document_event(run, doc, content_id, created=doc.doc_id not in known)
            for doc, content_id in zip(docs, content_ids, strict=True)
        ]
        self._send(run, events)
        self.manager.updated(run.run_id, len(docs))
        self.redis.hset(
            state_key(run.source_id),
            mapping={str(d.doc_id): f"{d.light_fingerprint}|{d.fingerprint}" for d in docs},
        )

    def delete(self, run: RunInfo, doc_ids: list[int]) -> None:
        if not doc_ids:
            return
        events = [
            {
                "type": "document_deleted",
                "sync_run_id": run.run_id,
                "source_id": run.source_id,
                "document_id": document_key(run.source_id, doc_id),
            }
            for doc_id in doc_ids
        ]
        self._send(run, events)
        self.redis.hdel(state_key(run.source_id), *[str(i) for i in doc_ids])

    def record_principals(self, run: RunInfo, principals: Principals) -> None:
        events: list[dict[str, Any]] = [
            {
                "type": "group_membership_sync",
                "sync_run_id": run.run_id,
                "source_id": run.source_id,
                "group_email": group.key,
                "group_name": group.name,
                "member_emails": sorted(group.member_emails),
            }
            for group in principals.groups
        ]
        self._send(run, events)

    def progress(self, run: RunInfo, scanned: int) -> None:
        if scanned > 0:
            self.manager.scanned(run.run_id, scanned)
        now = time.monotonic()
        with _heartbeat_lock:
            due = now - _last_heartbeat.get(run.run_id, 0.0) >= _HEARTBEAT_EVERY
            if due:
                _last_heartbeat[run.run_id] = now
        if due:
            self.manager.heartbeat(run.run_id)

    def close(self) -> None:
        self.manager.close()

    # -- helpers ---------------------------------------------------------------------

    def _upload(self, run: RunInfo, doc: IndexedDocument, files: FileSource | None) -> str:
        if doc.has_text or files is None:
            return self._put_text(run, doc)
        try:
            data, mime, filename = files.download(doc.doc_id)
        except NotFoundError:
            data, mime, filename = b"", "", ""  # no file behind it (any more)
        if not data:
            return self._put_text(run, doc)
        try:
            return self.manager.extract_content(run.run_id, data, mime, filename)
        except ManagerRejected as exc:
            # Omni cannot extract this file (type, size): index what we know about it.
            log.warning("document %s: extraction refused (%s); sending its metadata", doc.key, exc)
            return self._put_text(run, doc)

    def _put_text(self, run: RunInfo, doc: IndexedDocument) -> str:
        if _json_size(doc.text) <= _MAX_JSON_BYTES:
            return self.manager.put_content(run.run_id, doc.text)
        # Too big for a JSON body: the whole text goes as a file, never cut.
        name = f"paperless-{doc.doc_id}.txt"
        return self.manager.extract_content(run.run_id, doc.text.encode(), "text/plain", name)

    def _send(self, run: RunInfo, events: list[dict[str, Any]]) -> None:
        batch: list[dict[str, Any]] = []
        size = 0
        for event in events:
            event_size = _json_size(event)
            if batch and (len(batch) >= _EVENTS_PER_BATCH or size + event_size > _MAX_JSON_BYTES):
                self.manager.events_batch(run.run_id, run.source_id, batch)
                batch, size = [], 0
            batch.append(event)
            size += event_size + 2
        if batch:
            self.manager.events_batch(run.run_id, run.source_id, batch)


def document_event(
    run: RunInfo, doc: IndexedDocument, content_id: str, *, created: bool
) -> dict[str, Any]:
    """A `document_created`/`document_updated` event in the shape the manager deserialises."""
    return {
        "type": "document_created" if created else "document_updated",
        "sync_run_id": run.run_id,
        "source_id": run.source_id,
        "document_id": doc.key,
        "content_id": content_id,
        "metadata": _drop_none(
            {
                "title": doc.title,
                "author": doc.correspondent,
                "created_at": _midnight(doc.created),
                "updated_at": _date_time(doc.modified),
                "content_type": doc.mime_type,
                "mime_type": doc.mime_type,
                "url": doc.url,
                "path": doc.storage_path,
                "extra": _drop_none(
                    {
                        "custom_fields": {f.name: f.value for f in doc.custom_fields},
                        "notes": len(doc.notes),
                        "archive_serial_number": doc.archive_serial_number,
                        "tags": doc.tags,
                        "owner": doc.owner,
                        "page_count": doc.page_count,
                        "added": doc.added,
                    }
                ),
            }
        ),
        "permissions": {
            "public": doc.access.public,
            "users": list(doc.access.users),
            "groups": list(doc.access.groups),
        },
        "attributes": _drop_none(
            {
                "source_type": SOURCE_TYPE,
                "correspondent": doc.correspondent,
                "document_type": doc.document_type,
                "tags": doc.tags,
                "archive_serial_number": doc.archive_serial_number,
                "original_file_name": doc.original_file_name,
                "storage_path": doc.storage_path,
                "created": _date(doc.created),
            }
        ),
    }


class OmniSourceBackend:
    def __init__(self, manager: ManagerClient) -> None:
        self.manager = manager

    def load(self, run: RunInfo) -> SourceConfig:
        body = self.manager.sync_config(run.source_id)
        config = body.get("config")
        config = config if isinstance(config, dict) else {}
        credentials = body.get("credentials")
        credentials = credentials if isinstance(credentials, dict) else {}
        base_url = str(config.get("base_url") or "").strip().rstrip("/")
        token = str(credentials.get("api_key") or "").strip()
        if not base_url:
            raise OmniConfigError(
                f"source {run.source_id} has no base_url in its Omni config; "
                "set the Paperless-ngx URL in the source's settings in Omni."
            )
        if not token:
            raise OmniConfigError(
                f"source {run.source_id} has no api_key in its Omni credentials; "
                "add a Paperless-ngx API token to the source in Omni."
            )
        return SourceConfig(
            source_id=run.source_id,
            base_url=base_url,
            token=token,
            checkpoint=_our_checkpoint(body.get("checkpoint")),
            allow_insecure_http=config.get("allow_insecure_http") is True,
        )

    def commit(self, run: RunInfo, checkpoint: Checkpoint, counts: dict[str, int]) -> None:
        # Order matters: the manager publishes the run's last checkpoint on complete.
        self.manager.put_checkpoint(run.run_id, checkpoint.model_dump(mode="json"))
        self.manager.complete(run.run_id, counts)

    def fail(self, run: RunInfo, cause: str) -> None:
        self.manager.fail(run.run_id, cause)


def _our_checkpoint(raw: object) -> Checkpoint | None:
    """Only a checkpoint we wrote counts; Omni's own connector leaves `{"last_sync_at"}`."""
    if not isinstance(raw, dict) or "version" not in raw or "known_ids" not in raw:
        return None
    try:
        return Checkpoint.model_validate(raw)
    except ValidationError:
        log.warning("ignoring a checkpoint in Omni that does not have our shape")
        return None


def _date_time(value: str | None) -> str | None:
    """RFC 3339 in UTC with a `Z`; a bare date becomes its midnight (the manager rejects dates)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _date(value: str | None) -> str | None:
    """The calendar date as Paperless-ngx shows it (no shift to UTC)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value[:10]).date().isoformat()
    except ValueError:
        return None


def _midnight(value: str | None) -> str | None:
    day = _date(value)
    return f"{day}T00:00:00Z" if day else None


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _json_size(value: Any) -> int:
    """Bytes `requests` sends for it (ASCII-escaped JSON)."""
    return len(json.dumps(value))


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
