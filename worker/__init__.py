"""The Celery app, the CLI, the Omni connector front. `celery -A worker` finds `app` here."""

import sys

from config.settings import SettingsError

try:
    from worker.app import app
except SettingsError as exc:  # one line, not a traceback, for every entry point
    sys.stderr.write(f"error: {exc}\n")
    raise SystemExit(2) from None
from worker.beat import configure_beat
from worker.flower_config import install_flower_guard

configure_beat(app)
install_flower_guard()

__all__ = ["app"]
