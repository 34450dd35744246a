"""`RunStore`: the record of every sync run, kept in Redis so any process can follow it.

A run's hash (`pc:run:{id}`) holds its state, times and counters; beside it live the ledger
of planned and finished pages, the ids of each page, the lookup snapshot, per-document
errors and a few guards (see docs/architecture.md). Several worker processes update one run
at once, so every change that must not be lost or doubled is a single Redis command or a
small Lua script: counters only ever move through HINCRBY inside the script that marks a
page done, and that script adds a page's counts once however often the page runs.

States only move forward (queued → running → completed / failed / cancelled). The one
exception is an explicit resume (`reopen`), which turns an interrupted or failed run back
into a queued one keeping its ledger, so that only the missing pages are fetched again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from redis import Redis

PREFIX = "pc:"
RUN_TTL_SECONDS = 30 * 24 * 3600  # run records stay visible for a month
WORK_TTL_SECONDS = 7 * 24 * 3600  # ledger, page ids, snapshot: long enough to resume
RUNS_KEPT_PER_SOURCE = 50
ERRORS_KEPT = 1000
COUNTERS = ("scanned", "written", "unchanged", "deleted", "failed", "vanished")


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES = (RunState.QUEUED, RunState.RUNNING)
FINAL_STATES = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED)


class RunRecord(BaseModel):
    run_id: str
    source_id: str
    mode: str
    state: RunState
    trigger: str
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    pages_total: int = 0
    pages_done: int = 0
    scanned: int = 0
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    vanished: int = 0
    error: str | None = None
    degraded: list[str] = Field(default_factory=list)
    attempt: int = 1  # 1 for the first go, +1 on every resume

    @property
    def running(self) -> bool:
        return self.state in ACTIVE_STATES


def now_rfc3339() -> str:
    """The worker's clock, for display only (watermarks use the server's clock)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Keys:
    """Every Redis key of a run, in one place."""

    def __init__(self, run_id: str) -> None:
        base = f"{PREFIX}run:{run_id}"
        self.run = base
        self.pages = f"{base}:pages"
        self.done = f"{base}:done"
        self.snapshot = f"{base}:snapshot"
        self.errors = f"{base}:errors"
        self.finalized = f"{base}:finalized"
        self.plan = f"{base}:plan"
        self.stop = f"{base}:stop"
        self._base = base

    def page(self, page: int) -> str:
        return f"{self._base}:page:{page}"

    def deliveries(self, page: int) -> str:
        return f"{self._base}:page:{page}:deliveries"


def source_runs_key(source_id: str) -> str:
    return f"{PREFIX}source:{source_id}:runs"


def source_active_key(source_id: str) -> str:
    return f"{PREFIX}source:{source_id}:active"


def source_lookups_key(source_id: str) -> str:
    return f"{PREFIX}source:{source_id}:lookups"


def source_listing_key(source_id: str) -> str:
    return f"{PREFIX}source:{source_id}:listing"


ACTIVE_RUNS_KEY = f"{PREFIX}runs:active"

# KEYS: run hash, active-runs set, source's active pointer.
# ARGV: run id, target state, n of allowed states, allowed states…, then field/value pairs.
# Moves the run only from an allowed state; keeps the active set and pointer in step.
_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
local n = tonumber(ARGV[3])
local allowed = false
for i = 4, 3 + n do if ARGV[i] == state then allowed = true end end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
for i = 4 + n, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('HSET', KEYS[1], 'heartbeat', redis.call('TIME')[1])
if ARGV[2] == 'queued' or ARGV[2] == 'running' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
  if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
end
return 1
"""

# KEYS: run hash, source's active pointer, active-runs set, source's run list.
# ARGV: run id, ttl, runs kept, then field/value pairs of the new record.
# Creates the run only if the source has no active run; returns the active run id if not.
_CREATE = """
local holder = redis.call('GET', KEYS[2])
if holder then return holder end
if redis.call('EXISTS', KEYS[1]) == 1 then return '' end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'heartbeat', redis.call('TIME')[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('LPUSH', KEYS[4], ARGV[1])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[3]) - 1)
redis.call('EXPIRE', KEYS[4], ARGV[2])
return false
"""

# KEYS: run hash, source's active pointer, active-runs set, stop flag, finalized guard.
# ARGV: run id, ttl.  Reopens an unfinished or failed run for a resume: back to queued, next
# attempt. Returns the new attempt, 0 if the run may not be resumed, or the id of another
# run that holds the source.
_REOPEN = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' and state ~= 'failed' then return 0 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('HSET', KEYS[1], 'state', 'queued', 'heartbeat', redis.call('TIME')[1])
redis.call('HDEL', KEYS[1], 'finished_at', 'error', 'cause')
return redis.call('HINCRBY', KEYS[1], 'attempt', 1)
"""

# KEYS: run hash, done set, errors list.  ARGV: page, errors kept, n counters,
# counter/value pairs…, error JSON…  Adds one page's outcome exactly once.
_PAGE_DONE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'pages_done', 1)
local n = tonumber(ARGV[3])
for i = 4, 3 + 2 * n, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
local kept = tonumber(ARGV[2])
for i = 4 + 2 * n, #ARGV do
  if redis.call('LLEN', KEYS[3]) < kept then redis.call('RPUSH', KEYS[3], ARGV[i]) end
end
redis.call('HSET', KEYS[1], 'heartbeat', redis.call('TIME')[1])
return 1
"""


class RunStore:
    """Run records over Redis. Cheap to build; share one per process (`tasks.trigger.get_store`)."""

    def __init__(self, redis: Redis) -> None:
        # redis-py types every reply as "value or awaitable"; this client is synchronous.
        self.redis: Any = redis
        self._transition = redis.register_script(_TRANSITION)
        self._create = redis.register_script(_CREATE)
        self._reopen = redis.register_script(_REOPEN)
        self._page_done = redis.register_script(_PAGE_DONE)

    # -- reading ---------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord | None:
        raw = self.redis.hgetall(Keys(run_id).run)
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if "run_id" not in fields or "source_id" not in fields:
            # A remnant: a late heartbeat or counter of a run that Redis lost (a restart
            # without persistence) recreated the hash with those fields only.
            return None
        fields["degraded"] = json.loads(fields.get("degraded") or "[]")
        known = set(RunRecord.model_fields)
        return RunRecord.model_validate({k: v for k, v in fields.items() if k in known})

    def field(self, run_id: str, name: str) -> str | None:
        value = self.redis.hget(Keys(run_id).run, name)
        return None if value is None else _text(value)

    def runs_for(self, source_id: str, limit: int = 10) -> list[RunRecord]:
        ids = self.redis.lrange(source_runs_key(source_id), 0, max(limit, 1) - 1)
        records = (self.get(_text(run_id)) for run_id in ids)
        return [record for record in records if record is not None]

    def active_run(self, source_id: str) -> str | None:
        """The run that holds the source (queued or running), if any."""
        value = self.redis.get(source_active_key(source_id))
        return None if value is None else _text(value)

    def active_runs(self) -> list[str]:
        return sorted(_text(run_id) for run_id in self.redis.smembers(ACTIVE_RUNS_KEY))

    def errors(self, run_id: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.redis.lrange(Keys(run_id).errors, 0, max(limit, 1) - 1)
        return [json.loads(row) for row in rows]

    def seconds_since_heartbeat(self, run_id: str) -> float | None:
        beat = self.field(run_id, "heartbeat")
        if beat is None:
            return None
        now = self.redis.time()[0]
        return float(now - int(beat))

    # -- lifecycle ---------------------------------------------------------------------

    def create(self, run_id: str, source_id: str, mode: str, trigger: str) -> str | None:
        """Record a queued run; returns None, or the id of the active run that blocks it.

        Raises `ValueError` when a run with this id already exists.
        """
        record = {
            "run_id": run_id,
            "source_id": source_id,
            "mode": mode,
            "state": RunState.QUEUED.value,
            "trigger": trigger,
            "created_at": now_rfc3339(),
            "attempt": "1",
        }
        pairs = [item for pair in record.items() for item in pair]
        keys = [
            Keys(run_id).run,
            source_active_key(source_id),
            ACTIVE_RUNS_KEY,
            source_runs_key(source_id),
        ]
        answer = self._create(keys, [run_id, RUN_TTL_SECONDS, RUNS_KEPT_PER_SOURCE, *pairs])
        if answer is None:
            return None
        if _text(answer) == "":
            raise ValueError(f"run {run_id} already exists: give a new run id")
        return _text(answer)

    def reopen(self, run_id: str, source_id: str) -> int | str:
        """Make an unfinished or failed run queued again for a resume.

        Returns the new attempt number, 0 when the run is completed or cancelled, or the id
        of another run that holds the source.
        """
        keys = Keys(run_id)
        answer = self._reopen(
            [keys.run, source_active_key(source_id), ACTIVE_RUNS_KEY, keys.stop, keys.finalized],
            [run_id, RUN_TTL_SECONDS],
        )
        if isinstance(answer, bytes | str):
            return _text(answer)
        return int(answer)

    def mark_running(self, run_id: str) -> bool:
        return self._move(
            run_id,
            RunState.RUNNING,
            (RunState.QUEUED,),
            {"started_at": self.field(run_id, "started_at") or now_rfc3339()},
        )

    def mark_completed(self, run_id: str) -> bool:
        return self._move(
            run_id, RunState.COMPLETED, (RunState.RUNNING,), {"finished_at": now_rfc3339()}
        )

    def mark_failed(self, run_id: str, cause: str) -> bool:
        changes = {"finished_at": now_rfc3339(), "error": one_line(cause)}
        return self._move(run_id, RunState.FAILED, ACTIVE_STATES, changes)

    def mark_cancelled(self, run_id: str) -> bool:
        moved = self._move(
            run_id, RunState.CANCELLED, ACTIVE_STATES, {"finished_at": now_rfc3339()}
        )
        if moved:
            self.redis.set(Keys(run_id).stop, "cancelled", ex=WORK_TTL_SECONDS)
        return moved

    def _move(
        self,
        run_id: str,
        target: RunState,
        allowed: Iterable[RunState],
        changes: dict[str, str],
    ) -> bool:
        source_id = self.field(run_id, "source_id") or ""
        names = [state.value for state in allowed]
        pairs = [item for pair in changes.items() for item in pair]
        answer = self._transition(
            [Keys(run_id).run, ACTIVE_RUNS_KEY, source_active_key(source_id)],
            [run_id, target.value, len(names), *names, *pairs],
        )
        return int(answer) == 1

    # -- bookkeeping of a running run ----------------------------------------------------

    def set_fields(self, run_id: str, **values: str | int) -> None:
        self.redis.hset(Keys(run_id).run, mapping={k: str(v) for k, v in values.items()})

    def set_field_once(self, run_id: str, name: str, value: str) -> str:
        """Set `name` unless it is set already; returns the value it holds now."""
        key = Keys(run_id).run
        self.redis.hsetnx(key, name, value)
        return _text(self.redis.hget(key, name) or b"")

    def heartbeat(self, run_id: str) -> None:
        self.redis.hset(Keys(run_id).run, "heartbeat", self.redis.time()[0])

    def lookups_written(self, source_id: str) -> str | None:
        """The digest of the lookups the source's latest run planned with (None: unknown)."""
        value = self.redis.get(source_lookups_key(source_id))
        return _text(value) if value is not None else None

    def note_lookups(self, source_id: str, digest: str) -> None:
        """Said by a plan before any page writes with these lookups (no expiry: a lost key
        only costs the next plan resolving every document's names again)."""
        self.redis.set(source_lookups_key(source_id), digest)

    def listing_memo(self, source_id: str) -> bytes | None:
        """The memo of the light listing the source's latest plan read (`tasks.listing`)."""
        value = self.redis.get(source_listing_key(source_id))
        return bytes(value) if value is not None else None

    def note_listing(self, source_id: str, blob: bytes | None) -> None:
        """Said by a plan before its pages are stored; None forgets the last one. No expiry:
        a lost memo only costs the next plan decoding the whole listing again."""
        if blob is None:
            self.redis.delete(source_listing_key(source_id))
        else:
            self.redis.set(source_listing_key(source_id), blob)

    def note_degraded(self, run_id: str, notes: list[str]) -> None:
        self.redis.hset(Keys(run_id).run, "degraded", json.dumps(sorted(set(notes))))

    def record_cause(self, run_id: str, cause: str) -> None:
        """Keep the first real cause of a failure; later ones are consequences."""
        self.redis.hsetnx(Keys(run_id).run, "cause", one_line(cause))

    def cause(self, run_id: str) -> str | None:
        return self.field(run_id, "cause")

    def request_stop(self, run_id: str, reason: str) -> None:
        """Tell the run's page tasks to skip their work (a page failed for good, or cancel)."""
        self.redis.set(Keys(run_id).stop, reason, ex=WORK_TTL_SECONDS, nx=True)

    def stop_reason(self, run_id: str) -> str | None:
        value = self.redis.get(Keys(run_id).stop)
        return None if value is None else _text(value)

    # -- the plan and the ledger ---------------------------------------------------------

    def save_plan(self, run_id: str, pages: list[list[int]], plan: dict[str, str]) -> None:
        """Store the page ids, the ledger of planned pages and the finalizer's plan at once."""
        keys = Keys(run_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.pages, keys.done, keys.plan)
        for number, ids in enumerate(pages):
            pipe.set(keys.page(number), ",".join(map(str, ids)), ex=WORK_TTL_SECONDS)
        if pages:
            pipe.sadd(keys.pages, *range(len(pages)))
        pipe.hset(keys.plan, mapping={**plan, "pages": str(len(pages))})
        for key in (keys.pages, keys.plan):
            pipe.expire(key, WORK_TTL_SECONDS)
        pipe.hset(keys.run, mapping={"pages_total": len(pages), "pages_done": 0})
        pipe.execute()

    def plan(self, run_id: str) -> dict[str, str] | None:
        raw = self.redis.hgetall(Keys(run_id).plan)
        return {_text(k): _text(v) for k, v in raw.items()} or None

    def page_ids(self, run_id: str, page: int) -> list[int] | None:
        raw = self.redis.get(Keys(run_id).page(page))
        if raw is None:
            return None
        return [int(part) for part in _text(raw).split(",") if part]

    def planned_pages(self, run_id: str) -> set[int]:
        return {int(page) for page in self.redis.smembers(Keys(run_id).pages)}

    def missing_pages(self, run_id: str) -> list[int]:
        keys = Keys(run_id)
        return sorted(int(page) for page in self.redis.sdiff(keys.pages, keys.done))

    def is_page_done(self, run_id: str, page: int) -> bool:
        return bool(self.redis.sismember(Keys(run_id).done, page))

    def page_done(
        self, run_id: str, page: int, counts: dict[str, int], errors: list[dict[str, Any]]
    ) -> bool:
        """Mark a page durably written and add its counts; False if it was already done."""
        keys = Keys(run_id)
        pairs = [item for name in COUNTERS if counts.get(name) for item in (name, counts[name])]
        rows = [json.dumps(error, ensure_ascii=False) for error in errors]
        answer = self._page_done(
            [keys.run, keys.done, keys.errors],
            [page, ERRORS_KEPT, len(pairs) // 2, *pairs, *rows],
        )
        self.redis.expire(keys.done, WORK_TTL_SECONDS)
        self.redis.expire(keys.errors, RUN_TTL_SECONDS)
        return int(answer) == 1

    def begin_delivery(self, run_id: str, page: int) -> int:
        """Count a delivery of a page task; returns the deliveries that never finished."""
        key = Keys(run_id).deliveries(page)
        count = int(self.redis.incr(key))
        self.redis.expire(key, WORK_TTL_SECONDS)
        return count

    def end_delivery(self, run_id: str, page: int) -> None:
        self.redis.decr(Keys(run_id).deliveries(page))

    def reset_deliveries(self, run_id: str, pages: Iterable[int]) -> None:
        keys = Keys(run_id)
        names = [keys.deliveries(page) for page in pages]
        if names:
            self.redis.delete(*names)

    def save_snapshot(self, run_id: str, payload: str) -> None:
        self.redis.set(Keys(run_id).snapshot, payload, ex=WORK_TTL_SECONDS)

    def has_snapshot(self, run_id: str) -> bool:
        return bool(self.redis.exists(Keys(run_id).snapshot))

    def load_snapshot(self, run_id: str) -> str | None:
        raw = self.redis.get(Keys(run_id).snapshot)
        return None if raw is None else _text(raw)

    def claim_finalize(self, run_id: str, claimant: str) -> bool:
        """True for the first finalizer of a run, and for redeliveries of that same one."""
        key = Keys(run_id).finalized
        if self.redis.set(key, claimant, nx=True, ex=WORK_TTL_SECONDS):
            return True
        holder = self.redis.get(key)
        return holder is not None and _text(holder) == claimant

    def count(self, run_id: str, name: str, amount: int = 1) -> int:
        return int(self.redis.hincrby(Keys(run_id).run, name, amount))

    def drop_work(self, run_id: str) -> None:
        """Free the bulky keys of a finished run; the record and its errors stay."""
        keys = Keys(run_id)
        pages = self.planned_pages(run_id)
        names = [keys.snapshot, keys.plan, keys.pages, keys.done]
        names += [keys.page(page) for page in pages]
        names += [keys.deliveries(page) for page in pages]
        for start in range(0, len(names), 500):
            self.redis.delete(*names[start : start + 500])


def one_line(text: str, limit: int = 500) -> str:
    """Errors shown to users are one line; long ones are cut."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
