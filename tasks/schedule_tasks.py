"""The task a beat tick sends for one source: start a run unless one is already going.

Beat can fire twice around a RedBeat failover, and a slow run can outlast its interval, so
"already running" is the normal answer to a tick, not an error: the tick is skipped and the
run in progress carries on. Arguments and results hold the source name and run ids only.

In Omni mode every run must exist in Omni before we do it, so the tick first asks the
connector-manager for one (`POST /sdk/sync/create`) and starts our run under that id. The
manager's refusals are skips: 409 (a sync of the source runs, or it is at its concurrency
limit), 400 (the source is switched off), 404 (the source was deleted: it is forgotten,
and beat drops its entries at its next reconcile).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import shared_task

log = logging.getLogger(__name__)

SCHEDULED_SYNC = "paperless.scheduled_sync"
MODES = ("incremental", "full")


@shared_task(name=SCHEDULED_SYNC, ignore_result=False)
def scheduled_sync(source_id: str, mode: str = "incremental") -> dict[str, str]:
    """Trigger a `mode` run of `source_id` for beat; skip when the source is busy or gone."""
    # Imported here so that beat, which only sends this task by name, never loads the pipeline.
    from config.settings import get_settings
    from config.sources import SourceNotFound
    from tasks.trigger import AlreadyRunning, trigger_sync

    if mode not in MODES:
        raise ValueError(f"scheduled sync mode {mode!r} is not one of {', '.join(MODES)}")
    if get_settings().omni_mode:
        return _omni_tick(source_id, mode)
    try:
        record = trigger_sync(source_id, mode, trigger="beat")
    except AlreadyRunning as busy:
        log.info("beat: %s sync of %s skipped, run %s is in progress", mode, source_id, busy.run_id)
        return {"skipped": "already running", "run_id": str(busy.run_id or "")}
    except SourceNotFound:
        # The source was removed after beat read the registry; the next reconcile drops it.
        log.info("beat: %s sync of %s skipped, the source no longer exists", mode, source_id)
        return {"skipped": "source not found", "run_id": ""}
    log.info("beat: started %s sync of %s as run %s", mode, source_id, record.run_id)
    return {"run_id": record.run_id, "state": str(record.state)}


def _omni_tick(source_id: str, mode: str) -> dict[str, str]:
    from tasks.omni_client import SourceInactive, SourceNotKnown, SyncConflict
    from tasks.sinks.omni import create_omni_run, fail_omni_run
    from tasks.trigger import AlreadyRunning, trigger_sync

    try:
        run_id = create_omni_run(source_id, mode)
    except SyncConflict:
        log.info("beat: %s sync of %s skipped, Omni has a sync of it running", mode, source_id)
        return {"skipped": "already running in Omni", "run_id": ""}
    except SourceInactive:
        log.info("beat: %s sync of %s skipped, the source is inactive in Omni", mode, source_id)
        return {"skipped": "source inactive", "run_id": ""}
    except SourceNotKnown:
        _forget(source_id)
        log.info("beat: %s is no longer a source in Omni; its periodic syncs stop", source_id)
        return {"skipped": "source not found", "run_id": ""}
    try:
        record = trigger_sync(source_id, mode, run_id=run_id, trigger="beat")
    except AlreadyRunning as busy:
        # Omni thinks no sync runs but ours does: close the run Omni just opened for us.
        _close(fail_omni_run, run_id, f"skipped: run {busy.run_id} of this source is in progress")
        log.info("beat: %s sync of %s skipped, run %s is in progress", mode, source_id, busy.run_id)
        return {"skipped": "already running", "run_id": str(busy.run_id or "")}
    except Exception as exc:
        _close(
            fail_omni_run, run_id, f"the connector could not start the run ({type(exc).__name__})"
        )
        raise
    log.info("beat: started %s sync of %s as Omni run %s", mode, source_id, record.run_id)
    return {"run_id": record.run_id, "state": str(record.state)}


def _close(fail: Callable[[str, str], None], run_id: str, reason: str) -> None:
    """Fail the Omni run we will not do; if the manager cannot be told, it times the run out."""
    try:
        fail(run_id, reason)
    except Exception as exc:
        log.warning("beat: could not close Omni run %s: %s", run_id, exc)


def _forget(source_id: str) -> None:
    from tasks.omni_sources import OmniSources
    from tasks.wiring import get_redis

    redis = get_redis()
    try:
        OmniSources(redis).forget(source_id)
    finally:
        redis.close()
