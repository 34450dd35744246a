"""`FakeManager`: a strict stand-in for Omni's connector-manager, over real HTTP.

It serves the SDK endpoints of omni-protocol.md §2 on a loopback port, checks every request
strictly (`validate.py`), records every request, and keeps runs, sources, contents and
events the way the manager does: a run's checkpoint becomes its source's only on complete.
`documents(source)` replays the accepted events to give what Omni would hold.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from tests.omni_double.validate import (
    Violation,
    check_event,
    check_manifest,
    check_type,
    only_fields,
    require,
)


@dataclass
class FakeSource:
    source_id: str
    base_url: str
    api_key: str = field(repr=False)
    checkpoint: dict[str, Any] | None = None
    active: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    connector_state: dict[str, Any] | None = None


@dataclass
class FakeRun:
    run_id: str
    source_id: str
    sync_type: str
    status: str = "running"  # running | completed | failed
    checkpoint: dict[str, Any] | None = None
    scanned: int = 0
    updated: int = 0
    heartbeats: int = 0
    error: str | None = None
    last_activity: float = field(default_factory=time.monotonic)
    late_calls: list[str] = field(default_factory=list)  # SDK calls after the run ended


@dataclass
class Recorded:
    method: str
    path: str
    status: int
    body: Any  # parsed JSON, a dict of multipart fields, or None


@dataclass
class Extraction:
    run_id: str
    mime_type: str
    filename: str | None
    size: int
    content_id: str


class FakeManager:
    def __init__(self, *, latency: float = 0.0, check_connector_health: bool = True) -> None:
        self.latency = latency
        # The real manager refuses a registration whose connector_url /health does not answer.
        self.check_connector_health = check_connector_health
        self.sources: dict[str, FakeSource] = {}
        self.runs: dict[str, FakeRun] = {}
        self.contents: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []
        self.extractions: list[Extraction] = []
        self.registrations: list[dict[str, Any]] = []
        self.resumes: list[str] = []  # runs re-sent with is_resume by poll_run
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self._throttle_extract: list[float] = []  # Retry-After values of 429s to come
        self._faults: list[tuple[str, str, int]] = []  # (method, path prefix, status), once each
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeManager:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- set-up and faults -----------------------------------------------------------

    def add_source(
        self,
        source_id: str,
        base_url: str,
        api_key: str,
        *,
        checkpoint: dict[str, Any] | None = None,
        active: bool = True,
        config: dict[str, Any] | None = None,
    ) -> FakeSource:
        source = FakeSource(source_id, base_url, api_key, checkpoint, active, config or {})
        with self.lock:
            self.sources[source_id] = source
        return source

    def create_run(self, source_id: str, sync_type: str = "full") -> str:
        """What the manager does before it calls the connector's POST /sync."""
        with self.lock:
            if source_id not in self.sources:
                raise KeyError(source_id)
            if any(r.source_id == source_id and r.status == "running" for r in self.runs.values()):
                raise Violation(f"a sync of {source_id} is already running")
            run_id = f"run-{next(self._ids)}"
            self.runs[run_id] = FakeRun(run_id, source_id, sync_type)
            return run_id

    def throttle_extraction(self, *retry_after: float) -> None:
        """The next extract-content calls answer 429 with these Retry-After values."""
        with self.lock:
            self._throttle_extract.extend(retry_after)

    def fail_next(self, method: str, path_prefix: str, status: int = 500, times: int = 1) -> None:
        with self.lock:
            self._faults.extend([(method, path_prefix, status)] * times)

    # -- acting as the manager towards the connector ---------------------------------

    def start_sync(
        self, connector_url: str, source_id: str, mode: str = "full", *, timeout: float = 10.0
    ) -> tuple[str, requests.Response]:
        """Create a run and send the connector POST /sync as the manager does."""
        run_id = self.create_run(source_id, mode)
        return run_id, self.send_sync(connector_url, run_id, timeout=timeout)

    def send_sync(
        self, connector_url: str, run_id: str, *, is_resume: bool = False, timeout: float = 10.0
    ) -> requests.Response:
        with self.lock:
            run = self.runs[run_id]
            source = self.sources[run.source_id]
            checkpoint = run.checkpoint if is_resume else source.checkpoint
            body: dict[str, Any] = {
                "sync_run_id": run_id,
                "source_id": run.source_id,
                "sync_mode": run.sync_type,
                "checkpoint": copy.deepcopy(checkpoint),
                "is_resume": is_resume,
                "documents_scanned": run.scanned,
                "documents_updated": run.updated,
            }
        return requests.post(f"{connector_url}/sync", json=body, timeout=timeout)

    def poll_run(self, connector_url: str, run_id: str, *, timeout: float = 10.0) -> bool:
        """The manager's watch on a run it believes running: GET /sync/{id}; when the
        connector says it is not running, re-send POST /sync with `is_resume` (recorded in
        `resumes`). Returns what the connector answered."""
        answer = requests.get(f"{connector_url}/sync/{run_id}", timeout=timeout)
        answer.raise_for_status()
        running = answer.json()["running"]
        if check_type(running, bool, "running") is False and self.runs[run_id].status == "running":
            with self.lock:
                self.resumes.append(run_id)
            self.send_sync(connector_url, run_id, is_resume=True, timeout=timeout)
        return running

    # -- what Omni holds -------------------------------------------------------------

    def documents(self, source_id: str) -> dict[str, dict[str, Any]]:
        """document_id → last created/updated event with its `content`, deletions applied."""
        held: dict[str, dict[str, Any]] = {}
        with self.lock:
            for event in self.events:
                if event["source_id"] != source_id or event["type"] not in (
                    "document_created",
                    "document_updated",
                    "document_deleted",
                ):
                    continue
                doc_id = event["document_id"]
                if event["type"] == "document_deleted":
                    held.pop(doc_id, None)
                    continue
                merged = dict(held.get(doc_id, {}))
                merged.update(copy.deepcopy(event))
                merged["content"] = self.contents.get(event["content_id"])
                held[doc_id] = merged
        return held

    def groups(self, source_id: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {
                e["group_email"]: e
                for e in self.events
                if e["source_id"] == source_id and e["type"] == "group_membership_sync"
            }

    def calls(self, method: str | None = None, prefix: str = "") -> list[Recorded]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and r.path.startswith(prefix)
            ]

    def event_types(self, run_id: str | None = None) -> list[str]:
        with self.lock:
            return [e["type"] for e in self.events if run_id in (None, e["sync_run_id"])]

    # -- request handling (called by the HTTP handler under no lock) -----------------

    def handle(self, method: str, path: str, body: Any) -> Reply:
        with self.lock:
            for fault in self._faults:
                if fault[0] == method and path.startswith(fault[1]):
                    self._faults.remove(fault)
                    return fault[2], {"error": "injected fault"}, {}
        route = _ROUTES.get((method, _shape(path)))
        if route is None:
            return 404, {"error": f"no route {method} {path}"}, {}
        try:
            with self.lock:
                return route(self, path, body)
        except Violation as exc:
            with self.lock:
                self.violations.append(f"{method} {path}: {exc}")
            return 422, {"error": str(exc)}, {}

    def _run(self, run_id: str, call: str, *, need_running: bool = False) -> FakeRun:
        run = self.runs.get(run_id)
        if run is None:
            raise Violation(f"sync_run_id {run_id!r} is not a run the manager knows")
        if run.status != "running":
            run.late_calls.append(call)
            if need_running:
                raise Violation(f"run {run_id} is already {run.status}")
        run.last_activity = time.monotonic()
        return run

    def _sync_config(self, path: str, body: Any) -> Reply:
        source = self.sources.get(path.split("/")[3])
        if source is None:
            return 404, {"error": "source not found"}, {}
        return (
            200,
            {
                "config": {"base_url": source.base_url, **source.config},
                "credentials": {"api_key": source.api_key},
                "connector_state": copy.deepcopy(source.connector_state),
                "checkpoint": copy.deepcopy(source.checkpoint),
                "source_type": "paperless_ngx",
                "user_filter_mode": "all",
                "user_whitelist": None,
                "user_blacklist": None,
            },
            {},
        )

    def _content(self, path: str, body: Any) -> Reply:
        only_fields(body, {"sync_run_id", "content", "content_type"}, "content")
        self._run(require(body, "sync_run_id", str, "content"), "content")
        text = require(body, "content", str, "content")
        if body.get("content_type") is not None:
            check_type(body["content_type"], str, "content.content_type")
        content_id = f"content-{next(self._ids)}"
        self.contents[content_id] = text
        return 200, {"content_id": content_id}, {}

    def _extract(self, path: str, body: Any) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("data"), bytes):
            raise Violation("extract-content: expected multipart form with a 'data' file part")
        for name in ("sync_run_id", "mime_type"):
            if not isinstance(body.get(name), str):
                raise Violation(f"extract-content: missing form field {name!r}")
        run = self._run(body["sync_run_id"], "extract-content")
        if self._throttle_extract:
            wait = self._throttle_extract.pop(0)
            return 429, {"error": "extraction busy"}, {"Retry-After": f"{wait:g}"}
        content_id = f"content-{next(self._ids)}"
        self.contents[content_id] = body["data"].decode("utf-8", "replace")
        self.extractions.append(
            Extraction(
                run.run_id, body["mime_type"], body.get("filename"), len(body["data"]), content_id
            )
        )
        return 200, {"content_id": content_id}, {}

    def _events_batch(self, path: str, body: Any) -> Reply:
        only_fields(body, {"sync_run_id", "source_id", "events"}, "batch")
        run = self._run(require(body, "sync_run_id", str, "batch"), "events")
        source_id = require(body, "source_id", str, "batch")
        events = require(body, "events", list, "batch")
        self._check_events(run, source_id, events)
        self.events.extend(copy.deepcopy(events))
        return 200, {"accepted": len(events)}, {}

    def _event(self, path: str, body: Any) -> Reply:
        only_fields(body, {"sync_run_id", "source_id", "event"}, "event")
        run = self._run(require(body, "sync_run_id", str, "event"), "events")
        source_id = require(body, "source_id", str, "event")
        event = require(body, "event", dict, "event")
        self._check_events(run, source_id, [event])
        self.events.append(copy.deepcopy(event))
        return 200, {}, {}

    def _check_events(self, run: FakeRun, source_id: str, events: list[Any]) -> None:
        if source_id != run.source_id:
            raise Violation(f"source_id {source_id!r} is not the source of run {run.run_id}")
        for i, event in enumerate(events):
            check_event(event, f"events[{i}]")
            if event["sync_run_id"] != run.run_id or event["source_id"] != source_id:
                raise Violation(f"events[{i}]: sync_run_id/source_id differ from the batch's")
            if "content_id" in event and event["content_id"] not in self.contents:
                raise Violation(f"events[{i}]: content_id {event['content_id']!r} was never stored")

    def _counter(self, path: str, body: Any) -> Reply:
        run_id, what = path.split("/")[3], path.split("/")[4]
        run = self._run(run_id, what)
        count = 1
        if body is not None:
            only_fields(body, {"count"}, what)
            count = check_type(body.get("count", 1), int, f"{what}.count")
            if count < 0:
                raise Violation(f"{what}.count: must not be negative")
        if what == "scanned":
            run.scanned += count
        else:
            run.updated += count
        return 200, {}, {}

    def _heartbeat(self, path: str, body: Any) -> Reply:
        self._run(path.split("/")[3], "heartbeat").heartbeats += 1
        return 200, {}, {}

    def _checkpoint(self, path: str, body: Any) -> Reply:
        run = self._run(path.split("/")[3], "checkpoint", need_running=True)
        check_type(body, dict, "checkpoint")
        run.checkpoint = copy.deepcopy(body)
        return 200, {}, {}

    def _complete(self, path: str, body: Any) -> Reply:
        run = self._run(path.split("/")[3], "complete", need_running=True)
        run.status = "completed"
        if run.checkpoint is not None:
            self.sources[run.source_id].checkpoint = copy.deepcopy(run.checkpoint)
        return 200, {}, {}

    def _fail(self, path: str, body: Any) -> Reply:
        run = self._run(path.split("/")[3], "fail")
        error = require(body, "error", str, "fail")
        if run.status == "completed":
            raise Violation(f"run {run.run_id} already completed; it cannot fail")
        run.status, run.error = "failed", error
        return 200, {}, {}

    def _create(self, path: str, body: Any) -> Reply:
        only_fields(body, {"source_id", "sync_type"}, "create")
        source_id = require(body, "source_id", str, "create")
        sync_type = require(body, "sync_type", str, "create")
        if sync_type not in ("full", "incremental"):
            raise Violation(f"create.sync_type: {sync_type!r} is not full or incremental")
        source = self.sources.get(source_id)
        if source is None:
            return 404, {"error": "source not found"}, {}
        if not source.active:
            return 400, {"error": "source is not active"}, {}
        try:
            run_id = self.create_run(source_id, sync_type)
        except Violation:
            return 409, {"error": "a sync is already running for this source"}, {}
        return 200, {"sync_run_id": run_id}, {}

    def _connector_state(self, path: str, body: Any) -> Reply:
        source = self.sources.get(path.split("/")[3])
        if source is None:
            return 404, {"error": "source not found"}, {}
        source.connector_state = copy.deepcopy(check_type(body, dict, "connector-state"))
        return 200, {}, {}

    def _register(self, path: str, body: Any) -> Reply:
        check_manifest(body)
        if self.check_connector_health:
            url = body["connector_url"].rstrip("/") + "/health"
            try:
                healthy = requests.get(url, timeout=2).status_code == 200
            except requests.RequestException:
                healthy = False
            if not healthy:
                return 400, {"error": f"Connector health check failed at {url}"}, {}
        self.registrations.append(copy.deepcopy(body))
        return 200, {}, {}


Reply = tuple[int, dict[str, Any], dict[str, str]]

BODY_LIMIT = 2 * 1024 * 1024  # axum's default body limit: the manager answers 413 above it
EXTRACT_BODY_LIMIT = 400 * 1024 * 1024

_ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/sdk/source/*/sync-config"): FakeManager._sync_config,
    ("POST", "/sdk/content"): FakeManager._content,
    ("POST", "/sdk/extract-content"): FakeManager._extract,
    ("POST", "/sdk/events/batch"): FakeManager._events_batch,
    ("POST", "/sdk/events"): FakeManager._event,
    ("POST", "/sdk/sync/*/scanned"): FakeManager._counter,
    ("POST", "/sdk/sync/*/updated"): FakeManager._counter,
    ("POST", "/sdk/sync/*/heartbeat"): FakeManager._heartbeat,
    ("PUT", "/sdk/sync/*/checkpoint"): FakeManager._checkpoint,
    ("POST", "/sdk/sync/*/complete"): FakeManager._complete,
    ("POST", "/sdk/sync/*/fail"): FakeManager._fail,
    ("POST", "/sdk/sync/create"): FakeManager._create,
    ("POST", "/sdk/register"): FakeManager._register,
    ("PUT", "/sdk/source/*/connector-state"): FakeManager._connector_state,
}


def _shape(path: str) -> str:
    """`/sdk/sync/run-1/scanned` → `/sdk/sync/*/scanned` (the id segment as a wildcard)."""
    parts = path.split("/")
    if len(parts) == 5 and parts[1] == "sdk" and parts[2] in ("sync", "source"):
        parts[3] = "*"
    return "/".join(parts)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeManager
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        if self.fake.latency:
            time.sleep(self.fake.latency)
        path = self.path.split("?", 1)[0]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers: dict[str, str]
        limit = EXTRACT_BODY_LIMIT if path == "/sdk/extract-content" else BODY_LIMIT
        try:
            if len(raw) > limit:
                raise Violation(f"body of {len(raw)} bytes is over the manager's {limit}")
            body = self._parse(raw)
        except Violation as exc:
            with self.fake.lock:
                self.fake.violations.append(f"{method} {path}: {exc}")
            status = 413 if len(raw) > limit else 400
            reply, headers, body = {"error": str(exc)}, {}, None
        else:
            status, reply, headers = self.fake.handle(method, path, body)
        with self.fake.lock:
            self.fake.requests.append(Recorded(method, path, status, body))
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _parse(self, raw: bytes) -> Any:
        ctype = self.headers.get("Content-Type", "")
        if not raw:
            return None
        if ctype.startswith("multipart/form-data"):
            return _multipart(ctype, raw)
        if not ctype.startswith("application/json"):
            raise Violation(f"body with Content-Type {ctype!r}; expected application/json")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise Violation(f"body is not JSON: {exc}") from None


def _multipart(ctype: str, raw: bytes) -> dict[str, Any]:
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise Violation("multipart body could not be parsed")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[name] = data if part.get_filename() is not None else data.decode()
    return fields
