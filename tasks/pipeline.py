"""The plain functions of a sync run: plan it, fetch a page, finalize it, fail it, watch it.

`tasks/sync_tasks.py` wraps each in a Celery task and decides about retries; everything
here runs without Celery. The order of effects is what keeps documents from getting lost:
a page is marked done only after its documents are durably in the sink, and the checkpoint
moves only in `finalize`, after the ledger shows every planned page done and while the run
still owns the source's fencing number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis.exceptions
import requests

from tasks import collector
from tasks.document import IndexedDocument
from tasks.listing import ListingMemo, expand_ranges, list_documents, moment, to_ranges
from tasks.locks import SourceLock, new_token
from tasks.paperless.client import PaperlessClient
from tasks.paperless.errors import BadResponseError, PaperlessError, TransientError
from tasks.paperless.models import utc_rfc3339
from tasks.render import (
    linked_ids,
    principals,
    render_document,
)
from tasks.runs import (
    ACTIVE_RUNS_KEY,
    ACTIVE_STATES,
    FINAL_STATES,
    RunRecord,
    RunState,
    RunStore,
    one_line,
)
from tasks.sinks.base import Checkpoint, RunInfo, SourceConfig, StoredState
from tasks.snapshot import LookupSnapshot
from tasks.wiring import Wiring, make_client, wiring

log = logging.getLogger(__name__)

MAX_UNFINISHED_DELIVERIES = 5  # a page whose worker died this often is poison
DELETE_BATCH = 500
CONTEXT_SECONDS = 600  # credentials stay in a process's memory at most this long


class PipelineError(Exception):
    """A run cannot go on; the message is one sentence for the user."""


class LockLost(PipelineError):
    pass


class PageFailed(PipelineError):
    pass


class RunStopped(Exception):
    """The run was cancelled or failed elsewhere: this task ends quietly."""


def hold(store: RunStore, lock: SourceLock, run_id: str) -> None:
    """Renew the run's lease on its source, unless the run stopped or lost the source."""
    if store.stop_reason(run_id):
        raise RunStopped(run_id)  # never retake the lock of a cancelled run
    store.heartbeat(run_id)
    if not lock.renew():
        raise LockLost(
            f"run {run_id} lost the lock of {lock.source_id} to another run; it stops so "
            "that only one run writes the source"
        )


def retryable(exc: BaseException) -> bool:
    """Worth another try later: the server, the network, Redis or the sink were busy."""
    from tasks.omni_client import ManagerUnavailable
    from tasks.sinks.local import LocalIndexError

    kinds = (
        TransientError,
        BadResponseError,  # a truncated or garbled answer usually heals
        requests.RequestException,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        sqlite3.OperationalError,
        LocalIndexError,
        ManagerUnavailable,
        ConnectionError,
        TimeoutError,
    )
    return isinstance(exc, kinds)


def retry_delay(exc: BaseException, retries: int) -> float:
    """Seconds before the next try: doubling from 1 s, at least the server's Retry-After."""
    delay = min(2.0**retries, 60.0)
    after = getattr(exc, "retry_after", None)
    if isinstance(after, int | float) and after > 0:
        delay = max(delay, min(float(after), 300.0))
    return delay


def cause_of(exc: BaseException) -> str:
    """One line for the run record: our errors already read well, others get their type."""
    if isinstance(exc, PaperlessError | PipelineError):
        return one_line(str(exc))
    text = one_line(str(exc)) or "no details"
    return one_line(f"{type(exc).__name__}: {text}")


# -- per-process context of a run ----------------------------------------------------------


@dataclass
class RunContext:
    run: RunInfo
    config: SourceConfig
    client: PaperlessClient
    snapshot: LookupSnapshot | None
    made: float


_contexts: OrderedDict[str, RunContext] = OrderedDict()


def run_info(record: RunRecord) -> RunInfo:
    return RunInfo(run_id=record.run_id, source_id=record.source_id, mode=record.mode)


def context(w: Wiring, store: RunStore, record: RunRecord, *, fresh: bool = False) -> RunContext:
    """Config, credentials, client and snapshot of a run, loaded once per process.

    The token comes from the source backend and stays in this process's memory only.
    """
    now = time.monotonic()
    for run_id, ctx in list(_contexts.items()):
        if now - ctx.made > CONTEXT_SECONDS or (fresh and run_id == record.run_id):
            forget(run_id)
    found = _contexts.get(record.run_id)
    if found is not None:
        ctx = found
    else:
        run = run_info(record)
        config = w.backend.load(run)
        _register_secret(config.token)
        client = make_client(config, w.settings, w.redis)
        ctx = RunContext(run=run, config=config, client=client, snapshot=None, made=now)
        _contexts[record.run_id] = ctx
        while len(_contexts) > 4:
            forget(next(iter(_contexts)))
    if ctx.snapshot is None and not fresh:
        payload = store.load_snapshot(record.run_id)
        if payload is None:
            raise PageFailed(
                f"the lookup snapshot of run {record.run_id} is gone from Redis (was Redis "
                "restarted?); trigger the sync again"
            )
        ctx.snapshot = LookupSnapshot.model_validate_json(payload)
    return ctx


def forget(run_id: str) -> None:
    ctx = _contexts.pop(run_id, None)
    if ctx is not None:
        ctx.client.close()


def _register_secret(token: str) -> None:
    try:
        from config.logging import register_secret
    except ImportError:  # pragma: no cover - logging setup is optional
        return
    register_secret(token)


def source_lock(w: Wiring, store: RunStore, record: RunRecord) -> SourceLock:
    token = store.set_field_once(record.run_id, "lock_token", new_token())
    return SourceLock(
        w.redis,
        record.source_id,
        token,
        w.settings.lock_ttl_seconds,
        alive=lambda: store.get(record.run_id) is not None,
    )


# -- 1. the scheduler ----------------------------------------------------------------------


def start_run(run_id: str, attempt: int) -> list[int] | None:
    """Take the source, plan the run (or pick up its plan on resume): the pages to fetch.

    None means there is nothing to dispatch (the run is gone, stale, finished or refused).
    An empty list still needs the finalizer: an incremental run with nothing to fetch
    commits its new watermark and deletions.
    """
    w = wiring()
    store = RunStore(w.redis)
    record = store.get(run_id)
    if record is None or record.attempt != attempt or record.state not in ACTIVE_STATES:
        return None
    lock = source_lock(w, store, record)
    if not lock.acquire():
        fail_run(
            run_id,
            f"a sync of {record.source_id} is already running; wait for it to end or cancel it",
            attempt=attempt,
        )
        return None
    if record.state == RunState.QUEUED and not store.mark_running(run_id):
        lock.release()  # cancelled while it waited in the queue
        return None
    fence = store.field(run_id, "fence")
    plan_intact = store.plan(run_id) is not None and store.has_snapshot(run_id)
    if plan_intact and fence is not None and lock.fence() == int(fence):
        missing = store.missing_pages(run_id)
        store.reset_deliveries(run_id, missing)
        log.info("run %s resumes with %d missing pages", run_id, len(missing))
        return missing
    store.set_fields(run_id, fence=lock.take_fence())
    try:
        with collector.paused():  # half the time of a plan at 100,000 documents
            return list(range(plan_run(w, store, record, lock)))
    except RunStopped:
        lock.release()
        return None


def plan_run(w: Wiring, store: RunStore, record: RunRecord, lock: SourceLock) -> int:
    """Probe, snapshot the lookups, list every document and store the pages: their count."""
    ctx = context(w, store, record, fresh=True)
    client, run = ctx.client, ctx.run
    client.probe()  # a wrong token fails here, before any other work
    snapshot = LookupSnapshot.load(client)
    ctx.snapshot = snapshot
    store.save_snapshot(run.run_id, snapshot.model_dump_json())
    if snapshot.degraded:
        store.note_degraded(run.run_id, snapshot.degraded)
    w.sink.record_principals(run, principals(snapshot, run.source_id))
    hold(store, lock, run.run_id)
    stored = w.sink.stored_states(run.source_id)
    checkpoint = ctx.config.checkpoint or Checkpoint()
    lookups = lookups_digest(snapshot)
    # A committed run wrote every document whose names or access changed with its lookups;
    # while the lookups are the same and no later run wrote with others (one that failed,
    # say, after a rename that was then undone), a document whose raw listing values are
    # the same is unchanged: its names need not be resolved again.
    same = checkpoint.lookups == lookups and store.lookups_written(run.source_id) == lookups
    unchanged = stored if same else None
    recalled = _recall_listing(store, run.source_id, checkpoint) if same else None
    store.note_lookups(run.source_id, lookups)
    listing, memo = list_documents(
        client, snapshot, unchanged, needs_fingerprints=run.mode != "full", recalled=recalled
    )
    del recalled
    # Before the pages are stored: from here on, the memo the checkpoint names is gone,
    # and only this run's commit names the new one.
    blob = memo.dumps(listing.links) if memo.whole else None
    store.note_listing(run.source_id, blob)
    hold(store, lock, run.run_id)
    known = expand_ranges(checkpoint.known_ids) | set(stored)
    gone = known - set(listing.ids) if known else set()
    if run.mode == "full" or not checkpoint.watermark:
        # Every listed document (pages skip the unchanged ones), without the sets and
        # fingerprint texts an incremental choice needs: 100,000 of each at the peak.
        targets = sorted(listing.ids)
    else:
        targets = choose_targets(run.mode, listing.entries(), stored, checkpoint.watermark)
        targets = with_linking_documents(targets, listing.links, gone)
    page_size = w.settings.page_size
    pages = [targets[i : i + page_size] for i in range(0, len(targets), page_size)]
    overlap = timedelta(seconds=w.settings.watermark_overlap_seconds)
    watermark = utc_rfc3339(listing.server_time - overlap)
    store.save_plan(
        run.run_id,
        pages,
        {
            "watermark": watermark,
            "known_ids": json.dumps(to_ranges(listing.ids)),
            "deletions": json.dumps(to_ranges(gone)),
            "listed": str(len(listing)),
            "targets": str(len(targets)),
            "lookups": lookups,
            "listing": ListingMemo.digest(blob) if blob is not None else "",
        },
    )
    log.info(
        "run %s of %s planned: %d listed (%d listing pages as last committed), "
        "%d to fetch in %d pages, %d to delete",
        run.run_id, run.source_id, len(listing), memo.recalled_pages,
        len(targets), len(pages), len(gone),
    )  # fmt: skip
    return len(pages)


def _recall_listing(store: RunStore, source_id: str, checkpoint: Checkpoint) -> ListingMemo | None:
    """The memo of the committed run's listing, if that is what Redis holds."""
    blob = store.listing_memo(source_id) if checkpoint.listing else None
    if blob is None or ListingMemo.digest(blob) != checkpoint.listing:
        return None
    return ListingMemo.loads(blob)


def lookups_digest(snapshot: LookupSnapshot) -> str:
    """A digest of everything a light fingerprint resolves names and access from."""
    return hashlib.sha256(snapshot.model_dump_json().encode()).hexdigest()


def choose_targets(
    mode: str,
    listed: Iterable[tuple[int, str, Any]],
    stored: dict[int, StoredState],
    watermark: str | None,
) -> list[int]:
    """The ids to fetch, sorted.

    Full mode, or no watermark yet: every listed id (pages still skip unchanged documents).
    Incremental: new to the sink, a different light fingerprint (renames, shares, bulk
    edits that leave `modified` alone), or modified after the watermark.
    """
    if mode == "full" or not watermark:
        return sorted(doc_id for doc_id, _, _ in listed)
    since = moment(watermark)
    targets = []
    for doc_id, light, modified in listed:
        held = stored.get(doc_id)
        if held is None or held.light_fingerprint != light:
            targets.append(doc_id)
            continue
        changed = moment(modified)
        if since is None or changed is None or changed > since:
            targets.append(doc_id)
    return sorted(targets)


def with_linking_documents(
    targets: list[int], links: dict[int, tuple[int, ...]], gone: set[int]
) -> list[int]:
    """Add the documents whose documentlink fields name a target or a deleted document.

    They show the linked documents' titles, which may change without touching them.
    """
    changed = set(targets) | gone
    linking = {doc_id for doc_id, linked in links.items() if not changed.isdisjoint(linked)}
    return sorted(set(targets) | linking)


# -- 2. one page ---------------------------------------------------------------------------


def fetch_page(run_id: str, page: int, attempt: int | None = None) -> dict[str, int]:
    """Fetch, render and write one page of the run; idempotent.

    The result is deterministic (Celery's chord counts identical results once); the counts
    go to the run record, once per page. A page message of an earlier attempt of a resumed
    run (still queued when its worker died) is skipped: the resume sent the page again.
    """
    w = wiring()
    store = RunStore(w.redis)
    result = {"page": page}
    record = store.get(run_id)
    if record is None or record.state in FINAL_STATES or store.is_page_done(run_id, page):
        return result
    if attempt is not None and record.attempt != attempt:
        return result
    if store.stop_reason(run_id):
        return result
    unfinished = store.begin_delivery(run_id, page)
    try:
        if unfinished > MAX_UNFINISHED_DELIVERIES:
            raise PageFailed(
                f"page {page} of run {run_id} was started {unfinished - 1} times and its worker "
                "died each time; check the worker's log and memory limit"
            )
        lock = source_lock(w, store, record)
        hold(store, lock, run_id)
        ids = store.page_ids(run_id, page)
        if ids is None:
            raise PageFailed(
                f"the ids of page {page} of run {run_id} are gone from Redis (was Redis "
                "restarted?); trigger the sync again"
            )
        ctx = context(w, store, record)
        docs, counts, errors = read_documents(ctx, ids)
        hold(store, lock, run_id)
        write_changed(w, ctx.run, docs, counts, errors, ctx.client)
        if store.page_done(run_id, page, counts, errors):
            w.sink.progress(ctx.run, counts["scanned"])
        return result
    except RunStopped:
        return result
    finally:
        store.end_delivery(run_id, page)


def read_documents(
    ctx: RunContext, ids: list[int]
) -> tuple[list[IndexedDocument], dict[str, int], list[dict[str, Any]]]:
    """Fetch and render the documents; bad data becomes a per-document error."""
    assert ctx.snapshot is not None
    snapshot, client = ctx.snapshot, ctx.client
    raws = client.get_documents(ids)
    titles = {int(raw["id"]): str(raw.get("title") or "") for raw in raws if "id" in raw}
    wanted: set[int] = set()
    for raw in raws:
        try:
            wanted |= linked_ids(raw, snapshot)
        except Exception:  # a malformed field is reported by render_document below
            continue
    wanted -= set(titles)
    link_titles = {**titles, **(client.get_titles(sorted(wanted)) if wanted else {})}
    docs: list[IndexedDocument] = []
    errors: list[dict[str, Any]] = []
    for raw in raws:
        try:
            docs.append(
                render_document(
                    raw,
                    snapshot,
                    source_id=ctx.run.source_id,
                    base_url=ctx.config.base_url,
                    link_titles=link_titles,
                )
            )
        except PaperlessError:
            raise
        except Exception as exc:  # any data problem of one document must not sink the page
            errors.append({"doc_id": raw.get("id"), "reason": cause_of(exc)})
    counts = {
        "scanned": len(raws),
        "failed": len(errors),
        "vanished": len(set(ids) - set(titles)),
    }
    return docs, counts, errors


def write_changed(
    w: Wiring,
    run: RunInfo,
    docs: list[IndexedDocument],
    counts: dict[str, int],
    errors: list[dict[str, Any]],
    files: PaperlessClient,
) -> None:
    """Write the documents whose fingerprints differ from what the sink holds."""
    held = w.sink.stored_states(run.source_id, [doc.doc_id for doc in docs]) if docs else {}
    changed = [doc for doc in docs if _differs(held.get(doc.doc_id), doc)]
    written = changed
    if changed:
        try:
            w.sink.write(run, changed, files=files)
        except Exception as exc:
            if retryable(exc) or len(changed) == 1:
                raise
            # One document the sink refuses must not hold back the others of the page.
            written = []
            for doc in changed:
                try:
                    w.sink.write(run, [doc], files=files)
                except Exception as single:
                    if retryable(single):
                        raise
                    errors.append({"doc_id": doc.doc_id, "reason": cause_of(single)})
                else:
                    written.append(doc)
    counts["written"] = len(written)
    counts["unchanged"] = len(docs) - len(changed)
    counts["failed"] += len(changed) - len(written)


def _differs(held: StoredState | None, doc: IndexedDocument) -> bool:
    return (
        held is None
        or held.fingerprint != doc.fingerprint
        or held.light_fingerprint != doc.light_fingerprint
    )


def page_failed(run_id: str, page: int, exc: BaseException) -> str:
    """A page gave up for good: the run fails now, its other pages skip their work."""
    cause = one_line(f"page {page} failed: {cause_of(exc)}")
    fail_run(run_id, cause)
    return cause


# -- 3. the finalizer --------------------------------------------------------------------


def finalize(run_id: str, attempt: int, claimant: str) -> dict[str, str]:
    """Delete what is gone, commit the checkpoint, complete the run; once per run."""
    w = wiring()
    store = RunStore(w.redis)
    record = store.get(run_id)
    if record is None or record.attempt != attempt:
        return {"outcome": "stale"}
    if not store.claim_finalize(run_id, claimant):
        return {"outcome": "duplicate"}
    lock = source_lock(w, store, record)
    if record.state != RunState.RUNNING or store.stop_reason(run_id):
        lock.release()
        forget(run_id)
        return {"outcome": str(record.state)}
    plan = store.plan(run_id)
    missing = store.missing_pages(run_id)
    if plan is None or missing or len(store.planned_pages(run_id)) != int(plan["pages"]):
        fail_run(
            run_id,
            f"run {run_id} reached its end with pages not written ({len(missing)} missing, "
            "or its ledger is gone); nothing was committed, trigger the sync again to resume",
            attempt=attempt,
        )
        return {"outcome": "failed"}
    run = run_info(record)
    deletions = sorted(expand_ranges(json.loads(plan["deletions"])))
    for start in range(0, len(deletions), DELETE_BATCH):
        w.sink.delete(run, deletions[start : start + DELETE_BATCH])
    store.set_fields(run_id, deleted=len(deletions))
    fence = int(store.field(run_id, "fence") or -1)
    if not lock.still_owns(fence):
        fail_run(
            run_id,
            f"a newer sync of {record.source_id} took over, so run {run_id} did not commit its "
            "checkpoint; the newer run carries the changes",
            attempt=attempt,
        )
        return {"outcome": "failed"}
    final = store.get(run_id) or record
    counts = {name: getattr(final, name) for name in ("scanned", "written", "unchanged", "failed")}
    # A document that failed may still hold fingerprints of older lookups: then the next
    # plan resolves every document's names again rather than trust them. The listing memo
    # holds rows as this run listed them: a document that vanished before its fetch was
    # listed but not written, and may come back with the same row.
    lookups = plan.get("lookups") if not counts["failed"] else None
    memo = (plan.get("listing") or None) if lookups and not final.vanished else None
    checkpoint = Checkpoint(
        watermark=plan["watermark"],
        known_ids=json.loads(plan["known_ids"]),
        lookups=lookups,
        listing=memo,
    )

    counts["deleted"] = len(deletions)
    if store.field(run_id, "commits") is None:  # a redelivered finalizer committed already
        w.backend.commit(run, checkpoint, counts)
        store.count(run_id, "commits")
    # Free the source before the run shows completed: a sync triggered once it shows
    # completed must not find the lock still held and fail with "already running".
    lock.release()
    store.mark_completed(run_id)
    store.drop_work(run_id)
    forget(run_id)
    log.info("run %s of %s completed: %s", run_id, record.source_id, counts)
    # The finalizer's result is what Flower shows of a finished run.
    return {"outcome": "completed", **{name: str(value) for name, value in counts.items()}}


# -- 4. failing a run, and the watchdog ----------------------------------------------------


def fail_run(run_id: str, cause: str, *, attempt: int | None = None) -> bool:
    """Mark the run failed with its first real cause; keep the checkpoint; free the source.

    Safe to call more than once and from any task: only the first call reports to the
    source backend. A call for an older attempt of a resumed run does nothing.
    """
    w = wiring()
    store = RunStore(w.redis)
    record = store.get(run_id)
    if record is None or (attempt is not None and record.attempt != attempt):
        return False
    if not record.running:
        source_lock(w, store, record).release()
        return False
    store.record_cause(run_id, cause)
    store.request_stop(run_id, "failed")
    first = store.cause(run_id) or one_line(cause)
    moved = store.mark_failed(run_id, first)
    source_lock(w, store, record).release()
    forget(run_id)
    if moved:
        log.warning("run %s of %s failed: %s", run_id, record.source_id, first)
        try:
            w.backend.fail(run_info(record), first)
        except Exception as exc:  # the run is failed here; reporting it is best effort
            log.warning("could not report the failure of run %s: %s", run_id, cause_of(exc))
    return moved


def watchdog() -> list[str]:
    """Fail the runs that made no progress for RUN_STALE_SECONDS and free their sources."""
    w = wiring()
    store = RunStore(w.redis)
    limit = w.settings.run_stale_seconds
    failed = []
    for run_id in store.active_runs():
        record = store.get(run_id)
        if record is None or not record.running:
            store.redis.srem(ACTIVE_RUNS_KEY, run_id)
            continue
        idle = store.seconds_since_heartbeat(run_id)
        if idle is not None and idle > limit:
            cause = (
                f"no progress for {idle:.0f} s (its worker stopped or lost its tasks); "
                "trigger the sync again to resume it"
            )
            if fail_run(run_id, cause, attempt=record.attempt):
                failed.append(run_id)
    return failed
