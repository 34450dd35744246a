"""The Celery app, the CLI, the Omni connector front. `celery -A worker` finds `app` here."""

from worker.app import app
from worker.beat import configure_beat
from worker.flower_config import install_flower_guard

configure_beat(app)
install_flower_guard()

__all__ = ["app"]
