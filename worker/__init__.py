"""The Celery app, the CLI, the Omni connector front. `celery -A worker` finds `app` here."""

from worker.app import app
from worker.beat import configure_beat

configure_beat(app)

__all__ = ["app"]
