"""The Celery app. Configuration lives here; tasks live in `tasks/`.

The settings follow from how chords, acknowledgements and redelivery behave on Redis
(see celery-notes in the design references): late acknowledgement so that a task whose
worker died runs again (every task is idempotent), one message prefetched at a time, a
visibility timeout above the longest task plus the longest retry countdown, and JSON only,
with no task arguments stored in the result backend.

`celery -A worker worker -Q control,pages` consumes both queues: `control` carries the
short planning, finalizing and bookkeeping tasks, `pages` the many page fetches, so a
deployment can give pages their own workers.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from config.settings import get_settings

settings = get_settings()

# Seconds; above the time limit plus the longest retry countdown. Only tests of a worker
# killed outright set it low, to see its unacknowledged tasks come back within seconds.
VISIBILITY_TIMEOUT = settings.visibility_timeout_seconds
TASK_TIME_LIMIT = min(1800, VISIBILITY_TIMEOUT // 2)  # a page or a plan stays well below
TASK_SOFT_TIME_LIMIT = TASK_TIME_LIMIT - max(5, TASK_TIME_LIMIT // 20)

app = Celery(
    "paperless_connector",
    broker=settings.redis_url,
    backend=settings.redis_url,
    include=["tasks.sync_tasks"],
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_concurrency=settings.worker_concurrency,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    broker_connection_retry_on_startup=True,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    task_time_limit=TASK_TIME_LIMIT,
    task_soft_time_limit=TASK_SOFT_TIME_LIMIT,
    task_send_sent_event=True,
    worker_send_task_events=True,
    result_extended=False,  # when on, raw task arguments would be stored in Redis
    result_expires=7 * 24 * 3600,
    result_backend_always_retry=True,
    worker_soft_shutdown_timeout=10.0,
    task_default_queue="control",
    task_routes={
        "paperless.fetch_page": {"queue": "pages"},
        "paperless.*": {"queue": "control"},
    },
    worker_hijack_root_logger=False,
    timezone="UTC",
    enable_utc=True,
)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Our logging (with token redaction) instead of Celery's."""
    try:
        from config.logging import setup_logging
    except ImportError:  # pragma: no cover - the logging module is optional
        logging.basicConfig(level=settings.log_level)
        return
    setup_logging(settings)
