"""`ManagerClient`: the SDK endpoints of Omni's connector-manager (omni-protocol.md §2).

Transient failures (connection errors, timeouts, 502/503/504) are retried by urllib3 with
backoff, POST and PUT included: content uploads only orphan a blob when repeated, and
events are upserts keyed by document id. A 429 (extraction busy) is waited out honouring
`Retry-After`, bounded. Messages never carry a credential: the sync-config body, which
holds the source's API key, is never quoted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tasks.http_env import settle_environment

log = logging.getLogger(__name__)

_RETRY_STATUSES = (500, 502, 503, 504)
_MAX_429_WAIT = 60.0  # one Retry-After is capped at this many seconds
_MAX_429_TOTAL = 300.0  # all waits of one call together


class ManagerError(Exception):
    """A call to the connector-manager failed; the message is one sentence."""


class ManagerUnavailable(ManagerError):
    """The manager could not be reached or kept failing after retries."""


class ManagerRejected(ManagerError):
    """The manager answered with a 4xx: the request is wrong for it, retrying will not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SourceNotKnown(ManagerRejected):
    """404 for a source id the manager does not know."""


class SourceInactive(ManagerRejected):
    """400 on creating a run: the source is switched off in Omni."""


class SyncConflict(ManagerRejected):
    """409 on creating a run: a sync of the source is running, or the manager is at its limit."""


class ManagerClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: tuple[float, float] = (5.0, 60.0),
        retries: int = 5,
        backoff: float = 0.5,
        pool_size: int = 16,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff,
            backoff_max=10.0,
            status_forcelist=_RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST", "PUT"}),
            # 429s are waited out by `extract_content` itself, bounded, fractions allowed.
            respect_retry_after_header=False,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=pool_size)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._verify = settle_environment(self._session, self.base_url, True)

    # -- source and runs -------------------------------------------------------------

    def sync_config(self, source_id: str) -> dict[str, Any]:
        """Config, credentials and checkpoint of a source. Holds the API key: never log it."""
        response = self._call("GET", f"/sdk/source/{source_id}/sync-config", quote_body=False)
        body = _json(response, "sync-config")
        if not isinstance(body, dict):
            raise ManagerError("the connector-manager sent a sync-config that is not an object.")
        return body

    def create_sync(self, source_id: str, sync_type: str) -> str:
        """Open a run on the manager's side; returns its sync_run_id.

        Raises `SyncConflict` (409), `SourceNotKnown` (404: no such source, e.g. deleted in
        Omni) or `SourceInactive` (400: the source is switched off).
        """
        try:
            response = self._call(
                "POST", "/sdk/sync/create", json={"source_id": source_id, "sync_type": sync_type}
            )
        except SyncConflict:
            raise
        except ManagerRejected as exc:
            if exc.status == 404:
                raise SourceNotKnown(
                    f"the connector-manager does not know source {source_id} (it may have been "
                    "deleted in Omni); it is no longer synced.",
                    404,
                ) from None
            if exc.status == 400:
                raise SourceInactive(
                    f"the connector-manager refused a run of source {source_id} with 400, "
                    "its answer for an inactive source; activate the source in Omni to have "
                    "it synced again.",
                    400,
                ) from None
            raise
        body = _json(response, "sync/create")
        run_id = body.get("sync_run_id") if isinstance(body, dict) else None
        if not isinstance(run_id, str) or not run_id:
            raise ManagerError("the connector-manager created a run but sent no sync_run_id.")
        return run_id

    def heartbeat(self, run_id: str) -> None:
        self._call("POST", f"/sdk/sync/{run_id}/heartbeat")

    def scanned(self, run_id: str, count: int) -> None:
        self._call("POST", f"/sdk/sync/{run_id}/scanned", json={"count": count})

    def updated(self, run_id: str, count: int) -> None:
        self._call("POST", f"/sdk/sync/{run_id}/updated", json={"count": count})

    def put_checkpoint(self, run_id: str, checkpoint: dict[str, Any]) -> None:
        self._call("PUT", f"/sdk/sync/{run_id}/checkpoint", json=checkpoint)

    def complete(self, run_id: str, counts: dict[str, int] | None = None) -> None:
        counts = counts or {}
        body = {
            "documents_scanned": int(counts.get("scanned", 0)),
            "documents_updated": int(counts.get("written", 0)),
        }
        self._call("POST", f"/sdk/sync/{run_id}/complete", json=body)

    def fail(self, run_id: str, error: str) -> None:
        self._call("POST", f"/sdk/sync/{run_id}/fail", json={"error": error})

    def register(self, manifest: dict[str, Any]) -> None:
        self._call("POST", "/sdk/register", json=manifest)

    # -- content and events ----------------------------------------------------------

    def put_content(self, run_id: str, text: str) -> str:
        body = {"sync_run_id": run_id, "content": text, "content_type": "text/plain"}
        response = self._call("POST", "/sdk/content", json=body)
        return _content_id(response, "content")

    def extract_content(
        self, run_id: str, data: bytes, mime_type: str, filename: str | None = None
    ) -> str:
        """Hand a file to the manager's text extraction; waits out 429s (bounded)."""
        form = {"sync_run_id": run_id, "mime_type": mime_type}
        if filename:
            form["filename"] = filename
        files = {"data": (filename or "file", data, "application/octet-stream")}
        waited = 0.0
        while True:
            response = self._call(
                "POST", "/sdk/extract-content", data=form, files=files, allow_429=True
            )
            if response.status_code != 429:
                return _content_id(response, "extract-content")
            pause = min(_retry_after(response.headers.get("retry-after")), _MAX_429_WAIT)
            if waited + pause > _MAX_429_TOTAL:
                raise ManagerUnavailable(
                    f"the connector-manager's text extraction stayed busy (429) for "
                    f"{waited:.0f} s; the page will be retried later."
                )
            log.info("extraction busy, waiting %.1f s as the manager asks", pause)
            time.sleep(pause)
            waited += pause

    def events_batch(self, run_id: str, source_id: str, events: list[dict[str, Any]]) -> None:
        body = {"sync_run_id": run_id, "source_id": source_id, "events": events}
        self._call("POST", "/sdk/events/batch", json=body)

    def event(self, run_id: str, source_id: str, event: dict[str, Any]) -> None:
        body = {"sync_run_id": run_id, "source_id": source_id, "event": event}
        self._call("POST", "/sdk/events", json=body)

    def put_connector_state(self, source_id: str, state: dict[str, Any]) -> None:
        self._call("PUT", f"/sdk/source/{source_id}/connector-state", json=state)

    def close(self) -> None:
        self._session.close()

    # -- plumbing --------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        quote_body: bool = True,
        allow_429: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        url = self.base_url + path
        try:
            response = self._session.request(
                method, url, timeout=self.timeout, verify=self._verify, **kwargs
            )
        except requests.RequestException as exc:
            raise ManagerUnavailable(
                f"could not reach the connector-manager at {self.base_url} ({method} {path}: "
                f"{type(exc).__name__}); check CONNECTOR_MANAGER_URL and that it is running."
            ) from None
        status = response.status_code
        if status < 400 or (status == 429 and allow_429):
            return response
        detail = _excerpt(response) if quote_body else ""
        where = f"{method} {path} answered {status}{detail}"
        if status in _RETRY_STATUSES or status == 429:
            raise ManagerUnavailable(f"the connector-manager kept failing: {where}.")
        if status == 409:
            raise SyncConflict(f"the connector-manager refused: {where}.", status)
        if status == 404 and path.startswith("/sdk/source/"):
            raise SourceNotKnown(
                f"the connector-manager does not know this source ({where}); "
                "check the source id in Omni.",
                status,
            )
        raise ManagerRejected(f"the connector-manager rejected a request: {where}.", status)


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ManagerError(f"the connector-manager's answer to {what} is not JSON.") from None


def _content_id(response: requests.Response, what: str) -> str:
    body = _json(response, what)
    content_id = body.get("content_id") if isinstance(body, dict) else None
    if not isinstance(content_id, str) or not content_id:
        raise ManagerError(f"the connector-manager's answer to {what} holds no content_id.")
    return content_id


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def _excerpt(response: requests.Response) -> str:
    text = " ".join(response.text.split())[:200]
    return f" ({text})" if text else ""
