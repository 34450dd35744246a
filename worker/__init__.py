"""The Celery app, the CLI, the Omni connector front. `celery -A worker` finds `app` here."""

from worker.app import app

__all__ = ["app"]
