"""The Celery tasks of a sync run: thin wrappers over `tasks/pipeline.py`.

Arguments are ids only (a run id, a page number, an attempt number); results are small and
the same every time a task runs, because Celery's chord counts a rerun with a different
result twice. Retries follow one policy: transient trouble (the server, the network, Redis,
the sink) is retried with doubling delays that honour Retry-After, up to HTTP_RETRIES times;
anything else fails the run at once with its cause.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import chord, group, shared_task
from celery.result import AsyncResult

from config.settings import get_settings
from tasks import pipeline
from tasks.runs import RunStore
from tasks.wiring import wiring

log = logging.getLogger(__name__)

START_SYNC = "paperless.start_sync"
FETCH_PAGE = "paperless.fetch_page"
FINALIZE = "paperless.finalize"
RUN_FAILED = "paperless.run_failed"
WATCHDOG = "paperless.watchdog"


def _retry_or_raise(task: Any, exc: Exception) -> None:
    """Raise Celery's Retry when `exc` is transient and tries are left; else return."""
    retries = int(task.request.retries or 0)
    if pipeline.retryable(exc) and retries < get_settings().http_retries:
        countdown = pipeline.retry_delay(exc, retries)
        log.info("%s retries in %.0f s: %s", task.name, countdown, pipeline.cause_of(exc))
        raise task.retry(exc=exc, countdown=countdown)


@shared_task(name=START_SYNC, bind=True, max_retries=None)
def start_sync(self: Any, run_id: str, attempt: int = 1) -> dict[str, int]:
    """Take the source, plan the run and start its pages and finalizer."""
    try:
        pages = pipeline.start_run(run_id, attempt)
    except Exception as exc:
        _retry_or_raise(self, exc)
        pipeline.fail_run(run_id, pipeline.cause_of(exc), attempt=attempt)
        if not isinstance(exc, pipeline.PipelineError | pipeline.PaperlessError):
            log.exception("planning run %s failed", run_id)
        return {"pages": 0}
    if pages is None:
        return {"pages": 0}
    dispatch(run_id, attempt, pages)
    return {"pages": len(pages)}


def dispatch(run_id: str, attempt: int, pages: list[int]) -> None:
    """chord(pages, finalize) with run_failed as the error callback of the finalizer.

    An empty header sends the finalizer at once. Task ids name the run, the page and the
    attempt, so a run can be traced in Flower and a resume never reuses an old result.
    """
    header = group(
        fetch_page.si(run_id, page, attempt).set(task_id=f"{run_id}:page:{page}:{attempt}")
        for page in pages
    )
    # A redelivered finalizer keeps its id and may go on; a duplicate chord's finalizer
    # (the scheduler redelivered after dispatching) has another id and is turned away.
    nonce = uuid.uuid4().hex[:8]
    body = finalize.si(run_id, attempt).set(task_id=f"{run_id}:finalize:{attempt}:{nonce}")
    body.link_error(run_failed.si(run_id, attempt=attempt))
    chord(header, body).apply_async()


@shared_task(name=FETCH_PAGE, bind=True, max_retries=None)
def fetch_page(self: Any, run_id: str, page: int, attempt: int | None = None) -> dict[str, int]:
    """Fetch, render and write one page of documents."""
    try:
        return pipeline.fetch_page(run_id, page, attempt)
    except Exception as exc:
        _retry_or_raise(self, exc)
        cause = pipeline.page_failed(run_id, page, exc)
        raise pipeline.PageFailed(cause) from None


@shared_task(name=FINALIZE, bind=True, max_retries=None)
def finalize(self: Any, run_id: str, attempt: int = 1) -> dict[str, str]:
    """After every page: delete what is gone, commit the checkpoint, complete the run."""
    try:
        return pipeline.finalize(run_id, attempt, claimant=str(self.request.id))
    except Exception as exc:
        _retry_or_raise(self, exc)
        cause = pipeline.cause_of(exc)
        pipeline.fail_run(run_id, f"finalizing failed: {cause}", attempt=attempt)
        raise pipeline.PipelineError(cause) from None


@shared_task(name=RUN_FAILED, bind=True, max_retries=3)
def run_failed(self: Any, run_id: str, *, attempt: int = 1) -> dict[str, bool]:
    """Error callback of the chord: fail the run with the first real cause."""
    store = RunStore(wiring().redis)
    cause = store.cause(run_id) or _cause_from_results(run_id, attempt)
    return {"failed": pipeline.fail_run(run_id, cause, attempt=attempt)}


def _cause_from_results(run_id: str, attempt: int) -> str:
    """When no task recorded why (a time limit killed it), ask the result backend."""
    store = RunStore(wiring().redis)
    for page in store.missing_pages(run_id)[:50]:
        result = AsyncResult(f"{run_id}:page:{page}:{attempt}")
        if result.state == "FAILURE":
            return pipeline.one_line(f"page {page} failed: {result.result!r}")
    return "a task of the run failed without saying why; see the worker's log"


@shared_task(name=WATCHDOG)
def watchdog() -> dict[str, int]:
    """Fail runs without progress for RUN_STALE_SECONDS (beat calls it every minute)."""
    return {"failed": len(pipeline.watchdog())}
