"""The Celery app. Configuration lives here; tasks live in `tasks/`."""

from __future__ import annotations

from celery import Celery

from config.settings import get_settings

settings = get_settings()

app = Celery("paperless_connector", broker=settings.redis_url, backend=settings.redis_url)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)
