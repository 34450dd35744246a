"""The task a beat tick sends for one source: start a run unless one is already going.

Beat can fire twice around a RedBeat failover, and a slow run can outlast its interval, so
"already running" is the normal answer to a tick, not an error: the tick is skipped and the
run in progress carries on. Arguments and results hold the source name and run ids only.
"""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)

SCHEDULED_SYNC = "paperless.scheduled_sync"
MODES = ("incremental", "full")


@shared_task(name=SCHEDULED_SYNC, ignore_result=False)
def scheduled_sync(source_id: str, mode: str = "incremental") -> dict[str, str]:
    """Trigger a `mode` run of `source_id` for beat; skip when the source is busy or gone."""
    # Imported here so that beat, which only sends this task by name, never loads the pipeline.
    from config.sources import SourceNotFound
    from tasks.trigger import AlreadyRunning, trigger_sync

    if mode not in MODES:
        raise ValueError(f"scheduled sync mode {mode!r} is not one of {', '.join(MODES)}")
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
