"""Periodic schedules kept in Redis by RedBeat: one pair of entries per standalone source.

Each enabled source of the registry gets an incremental sync at its own interval (else
`SYNC_INTERVAL_SECONDS`) and a full reconcile every `FULL_RECONCILE_INTERVAL_SECONDS`. The
scheduler re-reads the registry every `RECONCILE_SECONDS` and creates, changes or deletes
those entries, so `sources add/update/remove` take effect without restarting beat. The run
watchdog is a static entry.

In Omni mode the sources are the ones the front was asked to sync (`tasks.omni_sources`;
Omni never lists them to a connector), each with the same pair of entries at the settings'
intervals. Their ticks open the run in Omni first (`POST /sdk/sync/create`), so the manager
sees every run and refuses one that would collide with its own (a logged skip).

Several beats may run against one Redis: RedBeat lets one hold its lock and tick while the
others wait, and the per-source run lock turns a double tick around a failover into a skip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from celery import Celery
from celery.schedules import schedule as every
from redbeat import RedBeatScheduler, RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf, get_redis

from config.settings import Settings, get_settings
from tasks.schedule_tasks import SCHEDULED_SYNC

log = logging.getLogger(__name__)

KEY_PREFIX = "pc:beat:"
SOURCE_ENTRY_PREFIX = "source:"
WATCHDOG_TASK = "paperless.watchdog"
WATCHDOG_SECONDS = 60
RECONCILE_SECONDS = 30.0
# The queue the scheduler tasks are consumed from (`celery worker -Q control,pages`).
CONTROL_QUEUE = "control"


class SourceLike(Protocol):
    name: str
    interval_seconds: int | None
    enabled: bool


@dataclass(frozen=True)
class WantedEntry:
    name: str
    source_id: str
    mode: str
    seconds: float


@dataclass
class ScheduleChanges:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def entry_name(source_id: str, mode: str) -> str:
    return f"{SOURCE_ENTRY_PREFIX}{source_id}:{mode}"


def configure_beat(app: Celery, settings: Settings | None = None) -> None:
    """Point `celery -A worker beat` at RedBeat on the settings' Redis, with the watchdog."""
    settings = settings or get_settings()
    static = dict(app.conf.beat_schedule or {})
    static.setdefault(
        "watchdog",
        {
            "task": WATCHDOG_TASK,
            "schedule": float(WATCHDOG_SECONDS),
            "options": {"queue": CONTROL_QUEUE, "expires": WATCHDOG_SECONDS},
        },
    )
    include = tuple(app.conf.include or ())
    if "tasks.schedule_tasks" not in include:
        include += ("tasks.schedule_tasks",)
    app.conf.update(
        include=include,
        beat_schedule=static,
        beat_scheduler="worker.beat:SourceScheduler",
        # Beat wakes at least this often, so registry changes apply within that time and a
        # standby beat takes over within RedBeat's lock timeout (5 x this).
        beat_max_loop_interval=int(RECONCILE_SECONDS),
        redbeat_redis_url=settings.redis_url,
        redbeat_key_prefix=KEY_PREFIX,
        redbeat_lock_timeout=int(RECONCILE_SECONDS * 5),
        # Ride out a Redis restart for a minute instead of exiting at the first refused
        # connection; set explicitly so RedBeat does not borrow the broker's options.
        redbeat_redis_options={"retry_period": 60},
    )


@dataclass
class OmniSource:
    """A source Omni asked us to sync: scheduled at the settings' intervals."""

    name: str
    interval_seconds: int | None = None
    enabled: bool = True


def wanted_entries(sources: Iterable[SourceLike], settings: Settings) -> list[WantedEntry]:
    """The per-source entries the sources ask for."""
    wanted = []
    for source in sources:
        if not source.enabled:
            continue
        interval = source.interval_seconds or settings.sync_interval_seconds
        wanted.append(
            WantedEntry(
                entry_name(source.name, "incremental"), source.name, "incremental", interval
            )
        )
        wanted.append(
            WantedEntry(
                entry_name(source.name, "full"),
                source.name,
                "full",
                settings.full_reconcile_interval_seconds,
            )
        )
    return wanted


def _definition(app: Celery, wanted: WantedEntry) -> RedBeatSchedulerEntry:
    return RedBeatSchedulerEntry(
        name=wanted.name,
        task=SCHEDULED_SYNC,
        schedule=every(run_every=timedelta(seconds=wanted.seconds)),
        args=[wanted.source_id, wanted.mode],
        # A tick nobody consumed within one interval is stale: the next one replaces it.
        options={"queue": CONTROL_QUEUE, "expires": int(wanted.seconds)},
        app=app,
    )


def _same(current: RedBeatSchedulerEntry, new: RedBeatSchedulerEntry) -> bool:
    return (
        current.task == new.task
        and list(current.args) == list(new.args)
        and dict(current.options) == dict(new.options)
        and getattr(current.schedule, "run_every", None) == new.schedule.run_every
    )


def current_source_entries(app: Celery) -> set[str]:
    """Names of the per-source entries RedBeat holds now."""
    ensure_conf(app)
    client = get_redis(app)
    pattern = f"{KEY_PREFIX}{SOURCE_ENTRY_PREFIX}*"
    return {key[len(KEY_PREFIX) :] for key in client.scan_iter(match=pattern, count=500)}


def reconcile_schedules(
    app: Celery, sources: Iterable[SourceLike], settings: Settings
) -> ScheduleChanges:
    """Make RedBeat's per-source entries match the registry; keep each entry's last run."""
    changes = ScheduleChanges()
    wanted = {w.name: w for w in wanted_entries(sources, settings)}
    present = current_source_entries(app)
    for name, want in wanted.items():
        new = _definition(app, want)
        if name in present:
            current = RedBeatSchedulerEntry.from_key(new.key, app=app)
            if _same(current, new):
                continue
            new.last_run_at = current.last_run_at
            changes.updated.append(name)
        else:
            # A new source syncs on the next tick; its first full reconcile waits one period
            # (its first incremental run, having no checkpoint, fetches everything anyway).
            # An Omni source is new to us because Omni just asked for a sync of it: its
            # first periodic one waits an interval too.
            due_now = want.mode == "incremental" and not settings.omni_mode
            new.last_run_at = None if due_now else app.now()
            changes.added.append(name)
        new.save()
    for name in sorted(present - wanted.keys()):
        RedBeatSchedulerEntry(name=name, app=app).delete()
        changes.removed.append(name)
    return changes


def omni_sources(app: Celery) -> list[OmniSource]:
    """The sources the front was asked to sync (ids only, from the settings' Redis)."""
    from tasks.omni_sources import OmniSources

    ensure_conf(app)
    return [OmniSource(source_id) for source_id in OmniSources(get_redis(app)).ids()]


def registry_sources(settings: Settings) -> list[Any]:
    """The standalone sources; loaded late because beat must start before any source exists."""
    from config.sources import SourceRegistry

    return list(SourceRegistry.from_settings(settings).list())


class SourceScheduler(RedBeatScheduler):
    """RedBeat, plus: every `RECONCILE_SECONDS` the per-source entries follow the registry."""

    reconcile_every = RECONCILE_SECONDS
    _next_reconcile = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        if now >= self._next_reconcile:
            self._next_reconcile = now + self.reconcile_every
            self.follow_registry()
        remaining = float(super().tick(*args, **kwargs))
        return max(0.5, min(remaining, self._next_reconcile - time.monotonic()))

    def follow_registry(self) -> ScheduleChanges | None:
        settings = get_settings()
        try:
            sources = omni_sources(self.app) if settings.omni_mode else registry_sources(settings)
        except Exception as exc:
            # An unreadable registry must not wipe the schedules: keep them, retry next time.
            where = "Omni sources in Redis" if settings.omni_mode else "source registry"
            log.warning("beat: could not read the %s, schedules unchanged: %s", where, exc)
            return None
        try:
            changes = reconcile_schedules(self.app, sources, settings)
        except Exception as exc:
            log.warning("beat: could not update the schedules in Redis, will retry: %s", exc)
            return None
        if changes:
            log.info(
                "beat: schedules follow the registry: added %s, updated %s, removed %s",
                changes.added or "-",
                changes.updated or "-",
                changes.removed or "-",
            )
        return changes
