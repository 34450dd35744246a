"""Starting, resuming and cancelling runs: what the CLI, beat and the Omni front call.

A trigger only writes the run record and sends the scheduler task, so it answers at once:
all Paperless-ngx I/O happens in the worker. The record is created by a Lua script that
also claims the source, so two triggers racing for one source cannot both start a run.
"""

from __future__ import annotations

import logging
import os
import uuid

from celery import current_app

from tasks.locks import SourceLock
from tasks.runs import FINAL_STATES, RunRecord, RunState, RunStore, one_line
from tasks.wiring import get_redis, source_exists

log = logging.getLogger(__name__)

APP_NAME = "paperless_connector"
MODES = ("full", "incremental")


class AlreadyRunning(Exception):
    """The source has a run in progress; `run_id` names it."""

    def __init__(self, source_id: str, run_id: str | None) -> None:
        where = f"run {run_id}" if run_id else "Omni reports a sync of it in progress"
        super().__init__(
            f"a sync of {source_id} is already running ({where}); wait for it to end or cancel it"
        )
        self.source_id = source_id
        self.run_id = run_id


_stores: dict[int, RunStore] = {}


def get_store() -> RunStore:
    """The run store on the settings' Redis (one per process)."""
    pid = os.getpid()
    if pid not in _stores:
        _stores.clear()
        _stores[pid] = RunStore(get_redis())
    return _stores[pid]


def trigger_sync(
    source_id: str,
    mode: str = "incremental",
    *,
    run_id: str | None = None,
    trigger: str = "cli",
    is_resume: bool = False,
) -> RunRecord:
    """Record a run of `source_id` and queue its scheduler; returns the run as recorded.

    With the id of an existing run, resumes it if it was interrupted or failed (only its
    missing pages are fetched again) or when `is_resume` says so; a completed or cancelled
    run is returned as it is. Raises `AlreadyRunning` when another run holds the source,
    `config.sources.SourceNotFound` for a source the registry does not know.
    """
    if mode not in MODES:
        raise ValueError(f"sync mode {mode!r} is not one of: full, incremental")
    _require_app()
    store = get_store()
    if run_id is not None and store.get(run_id) is not None:
        return _resume(store, run_id, source_id, is_resume)
    if source_exists(source_id) is False:
        from config.sources import SourceNotFound

        raise SourceNotFound(source_id)
    opened_in_omni = run_id is None and _omni_mode()
    if opened_in_omni:
        run_id = _open_omni_run(store, source_id, mode)
    run_id = run_id or uuid.uuid4().hex
    blocking = store.create(run_id, source_id, mode, trigger)
    if blocking is not None and _stale(store, blocking):
        _fail_stale(store, blocking)
        blocking = store.create(run_id, source_id, mode, trigger)
    if blocking is not None:
        if opened_in_omni:
            _close_omni_run(run_id, f"a sync of {source_id} is already running (run {blocking})")
        raise AlreadyRunning(source_id, blocking)
    _send_start(run_id, 1)
    record = store.get(run_id)
    assert record is not None
    return record


def _resume(store: RunStore, run_id: str, source_id: str, is_resume: bool) -> RunRecord:
    record = store.get(run_id)
    assert record is not None
    if record.source_id != source_id:
        raise ValueError(f"run {run_id} belongs to source {record.source_id}, not {source_id}")
    if record.state in (RunState.COMPLETED, RunState.CANCELLED):
        return record
    if record.running and not is_resume and _alive(store, record):
        raise AlreadyRunning(source_id, run_id)
    answer = store.reopen(run_id, source_id)
    if isinstance(answer, str):
        if not _stale(store, answer):
            raise AlreadyRunning(source_id, answer)
        _fail_stale(store, answer)
        answer = store.reopen(run_id, source_id)
        if isinstance(answer, str):
            raise AlreadyRunning(source_id, answer)
    if answer == 0:  # it finished meanwhile
        return store.get(run_id) or record
    _send_start(run_id, answer)
    return store.get(run_id) or record


def cancel_run(run_id: str) -> bool:
    """Cancel a queued or running run; False if there is no such run or it already ended.

    Its page tasks see the cancel flag and skip their work; nothing is committed; the
    source is free again at once.
    """
    store = get_store()
    record = store.get(run_id)
    if record is None or record.state in FINAL_STATES:
        return False
    if not store.mark_cancelled(run_id):
        return False
    _release(store, record)
    return True


def _alive(store: RunStore, record: RunRecord) -> bool:
    """Queued and recent, or running and still holding its source's lock."""
    if _stale(store, record.run_id):
        return False
    if record.state == RunState.QUEUED:
        return True
    token = store.field(record.run_id, "lock_token")
    return token is not None and _lock(store, record, token).holder() == token


def _stale(store: RunStore, run_id: str) -> bool:
    from config.settings import get_settings

    idle = store.seconds_since_heartbeat(run_id)
    return idle is not None and idle > get_settings().run_stale_seconds


def _fail_stale(store: RunStore, run_id: str) -> None:
    record = store.get(run_id)
    if record is None:
        return
    store.record_cause(run_id, "no progress for too long; a newer trigger replaced it")
    store.mark_failed(run_id, store.cause(run_id) or "stale")
    store.request_stop(run_id, "failed")
    _release(store, record)


def _release(store: RunStore, record: RunRecord) -> None:
    token = store.field(record.run_id, "lock_token")
    if token is not None:
        _lock(store, record, token).release()


def _lock(store: RunStore, record: RunRecord, token: str) -> SourceLock:
    return SourceLock(store.redis, record.source_id, token, ttl_seconds=60)


def _omni_mode() -> bool:
    from config.settings import get_settings

    return get_settings().omni_mode


def _open_omni_run(store: RunStore, source_id: str, mode: str) -> str:
    """A run we start ourselves (CLI, beat) must exist in Omni before it reports there."""
    from tasks.omni_client import SyncConflict
    from tasks.sinks.omni import create_omni_run

    active = store.active_run(source_id)
    if active is not None and not _stale(store, active):
        raise AlreadyRunning(source_id, active)  # no need to bother the manager
    try:
        return create_omni_run(source_id, mode)
    except SyncConflict:
        raise AlreadyRunning(source_id, None) from None


def _close_omni_run(run_id: str, reason: str) -> None:
    from tasks.sinks.omni import fail_omni_run

    try:
        fail_omni_run(run_id, reason)
    except Exception as exc:  # the manager will time the run out itself
        log.warning("could not close Omni run %s: %s", run_id, one_line(str(exc)))


def _send_start(run_id: str, attempt: int) -> None:
    current_app.send_task(
        "paperless.start_sync",
        args=[run_id, attempt],
        task_id=f"{run_id}:start:{attempt}",
        queue="control",
    )


def _require_app() -> None:
    """Sending through Celery's default app would go to a broker nobody listens to."""
    if current_app.main != APP_NAME:
        raise RuntimeError(
            "the connector's Celery app is not loaded in this process: import `worker` "
            "before triggering a sync"
        )
