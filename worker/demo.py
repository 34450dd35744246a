"""`paperless-connector run-demo`: the whole connector on this machine, nothing to set up.

It finds or starts Redis, starts the Paperless-ngx test double (or uses PAPERLESS_URL and
PAPERLESS_TOKEN), registers the source "demo", starts a Celery worker, runs a full sync with
a progress bar, prints a summary and a few searches of the local index, and stops
everything it started, also on Ctrl-C or an error.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import click
import redis
from kombu.utils.url import maybe_sanitize_url
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from config.settings import SettingsError, get_settings

REPO = Path(__file__).resolve().parents[1]
SOURCE = "demo"
RUN_TIMEOUT_SECONDS = 30 * 60
STOP_TIMEOUT_SECONDS = 20
SEARCHES = ("Rechnung", "tag:Inbox")
SNIPPET_CHARS = 150


class DemoError(click.ClickException):
    """The demo cannot go on; the message says what happened and what to do."""


@dataclass
class Started:
    """The processes the demo started, stopped in reverse order whatever happens."""

    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)

    def add(self, name: str, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.processes.append((name, process))
        return process

    def stop(self) -> None:
        for _name, process in reversed(self.processes):
            _stop(process)
        self.processes.clear()
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # Each child leads its own process group, so the prefork pool's children go with it.
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    # A warm shutdown can leave an orphaned pool child behind; nothing may outlive the demo.
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _spawn(argv: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, start_new_session=True, **kwargs)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def ensure_redis(url: str, started: Started, env: dict[str, str], console: Console) -> str:
    """REDIS_URL when it answers, else a private redis-server on a free loopback port."""
    if _answers(url):
        console.print(f"Redis: {maybe_sanitize_url(url)}")
        return url
    binary = shutil.which("redis-server")
    if binary is None:
        raise DemoError(
            f"Redis at {maybe_sanitize_url(url)} does not answer and redis-server is not "
            "installed; install Redis (apt-get install redis-server, brew install redis) or "
            "set REDIS_URL to a running server."
        )
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pc-demo-redis-"))
    started.dirs.append(workdir)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--maxmemory-policy", "noeviction", "--dir", str(workdir)]
    process = started.add("redis", _spawn(argv, env, stdout=subprocess.DEVNULL))
    private = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _answers(private):
        if process.poll() is not None or time.monotonic() > deadline:
            raise DemoError(f"the private redis-server on port {port} did not start; try again.")
        time.sleep(0.05)
    console.print(f"Redis: started a private redis-server at {private}")
    return private


def start_double(
    documents: int, started: Started, env: dict[str, str], logs: Path
) -> tuple[str, str]:
    """Start the Paperless-ngx test double; return its URL and the admin's token."""
    if not (REPO / "tests" / "paperless_double").is_dir():
        raise DemoError(
            "the Paperless-ngx test double (tests/paperless_double) is not in this install; "
            "run from a checkout of the repository or set PAPERLESS_URL and PAPERLESS_TOKEN."
        )
    argv = [sys.executable, "-m", "tests.paperless_double", "--documents", str(documents)]
    argv += ["--seed", "1", "--port", "0"]
    log = logs / "demo-paperless-double.log"
    # A file, not a pipe: a pipe nobody reads would stall the double once it filled up.
    with log.open("wb") as out:
        process = started.add(
            "paperless double", _spawn(argv, env, cwd=REPO, stdout=out, stderr=out)
        )
    announced = _first_json_line(log, process, timeout=120)
    try:
        url, tokens = str(announced["url"]), announced["tokens"]
        token = tokens.get("admin") or next(iter(tokens.values()))
    except (KeyError, TypeError, AttributeError, StopIteration):
        raise DemoError(
            f"the Paperless-ngx test double announced no URL and token; see {log}."
        ) from None
    return url, str(token)


def _first_json_line(log: Path, process: subprocess.Popen[bytes], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{") and line.rstrip().endswith("}"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise DemoError(f"the Paperless-ngx test double did not start; see {log}.")


def register_source(url: str, token: str) -> None:
    """Register "demo" afresh: a previous demo's source, checkpoint and documents go first."""
    from config.sources import SourceRegistry
    from tasks.sinks.local import LocalIndex

    settings = get_settings()
    registry = SourceRegistry.from_settings(settings)
    registry.remove(SOURCE)
    index = LocalIndex(settings.index_path)
    try:
        index.remove_source(SOURCE)
    finally:
        index.close()
    registry.add(SOURCE, url, token, allow_insecure_http=settings.allow_insecure_http)


def start_worker(started: Started, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    concurrency = max(2, min(8, os.cpu_count() or 2))
    argv = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "control,pages"]
    argv += ["--loglevel", "INFO", "--concurrency", str(concurrency)]
    argv += ["-n", f"demo-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    with (logs / "demo-worker.log").open("wb") as out:
        return started.add("worker", _spawn(argv, env, stdout=out, stderr=out))


def point_app_at(redis_url: str) -> None:
    """This process sends the sync too: its Celery app must use the Redis chosen above."""
    from worker.app import app

    app.conf.update(broker_url=redis_url, result_backend=redis_url, redbeat_redis_url=redis_url)


def start_run(console: Console) -> str:
    from tasks.trigger import AlreadyRunning, cancel_run, trigger_sync

    for attempt in range(2):
        try:
            return trigger_sync(SOURCE, "full", trigger="demo").run_id
        except AlreadyRunning as busy:
            if attempt:
                raise DemoError(
                    f"run {busy.run_id} of the demo source is still going; wait for it or "
                    f"cancel it with `paperless-connector cancel {busy.run_id}`."
                ) from None
            console.print(f"Cancelling run {busy.run_id} left over from an earlier demo.")
            cancel_run(str(busy.run_id))
            time.sleep(1)
    raise AssertionError("unreachable")


def follow_run(
    run_id: str, worker: subprocess.Popen[bytes], console: Console, worker_log: Path
) -> Any:
    """Show the run's progress until it ends; return its final `RunRecord`."""
    from tasks.trigger import get_store

    store = get_store()
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task("queued", total=None)
        while True:
            record = store.get(run_id)
            if record is not None:
                progress.update(
                    bar,
                    description=f"{record.state} · {record.scanned} documents · pages",
                    total=record.pages_total or None,
                    completed=record.pages_done,
                )
                if not record.running:
                    return record
            if worker.poll() is not None:
                raise DemoError(f"the Celery worker stopped during the sync; see {worker_log}.")
            if time.monotonic() > deadline:
                raise DemoError(f"the sync did not end within 30 minutes; see {worker_log}.")
            time.sleep(0.2)


def pick_user(url: str, token: str) -> str | None:
    """An ordinary user's email, to show the same search through their permissions."""
    from tasks.paperless.client import PaperlessClient

    settings = get_settings()
    client = PaperlessClient(
        url, token, retries=1, read_timeout=10, verify=settings.tls,
        allow_insecure_http=settings.allow_insecure_http,
    )  # fmt: skip
    try:
        users = client.list_lookup("users")
    except Exception:
        return None  # the token may not list users: the example is skipped, nothing more
    finally:
        client.close()
    ordinary = [u for u in users if u.get("email") and not u.get("is_superuser")]
    return str(ordinary[0]["email"]) if ordinary else None


def print_summary(console: Console, record: Any, seconds: float) -> None:
    from tasks.sinks.local import LocalIndex
    from tasks.trigger import get_store

    index = LocalIndex(get_settings().index_path)
    try:
        held = index.count(SOURCE)
    finally:
        index.close()
    table = Table(title=f"Full sync of {SOURCE!r}: {record.state}", show_header=False)
    table.add_row("documents scanned", str(record.scanned))
    table.add_row("written to the index", str(record.written))
    table.add_row(
        "unchanged / deleted / failed", f"{record.unchanged} / {record.deleted} / {record.failed}"
    )
    table.add_row("pages", f"{record.pages_done} of {record.pages_total}")
    rate = record.scanned / seconds if seconds > 0 else 0.0
    table.add_row("time", f"{seconds:.1f} s ({rate:.0f} documents/s)")
    table.add_row("documents in the index", f"{held} in {get_settings().index_path}")
    for note in record.degraded:
        table.add_row("degraded", note)
    if record.error:
        table.add_row("error", record.error)
    console.print(table)
    for error in get_store().errors(record.run_id, limit=5):
        console.print(f"  document {error.get('doc_id')}: {error.get('reason')}")


def print_searches(console: Console, as_email: str | None) -> None:
    from tasks.sinks.local import LocalIndex

    index = LocalIndex(get_settings().index_path)
    try:
        for query in SEARCHES:
            _show_hits(console, f"search {query!r}", index.search(query, source_id=SOURCE, limit=3))
        if as_email:
            everyone = index.search(SEARCHES[0], source_id=SOURCE, limit=1000)
            theirs = index.search(SEARCHES[0], source_id=SOURCE, as_email=as_email, limit=1000)
            title = (
                f"search {SEARCHES[0]!r} --as {as_email}: "
                f"{len(theirs)} of {len(everyone)} hits are theirs to see"
            )
            _show_hits(console, title, theirs[:3])
    finally:
        index.close()
    console.print(
        "Search it yourself: paperless-connector search 'tag:Inbox Rechnung'"
        + (f" --as {as_email}" if as_email else "")
    )


def _show_hits(console: Console, title: str, hits: list[Any]) -> None:
    console.print(f"\n[bold]{title}[/bold]")
    if not hits:
        console.print("  (no hits)")
    for hit in hits:
        facets = " · ".join(
            part for part in (hit.correspondent, hit.document_type, ", ".join(hit.tags)) if part
        )
        console.print(f"  #{hit.doc_id} {hit.title}  [dim]{facets}[/dim]", highlight=False)
        snippet = " ".join(hit.snippet.split())
        if snippet:
            cut = snippet if len(snippet) <= SNIPPET_CHARS else snippet[:SNIPPET_CHARS] + "…"
            console.print(f"      {cut}", highlight=False, markup=False)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # a SIGTERM cleans up exactly like Ctrl-C


def _use_environment(env: dict[str, str], **values: str) -> None:
    """Children and this process (its cached settings, its Celery app) see the same values."""
    env.update(values)
    os.environ.update(values)
    get_settings.cache_clear()


@click.command("run-demo")
@click.option("--documents", default=500, show_default=True, type=click.IntRange(1, 100_000),
              help="Documents in the Paperless-ngx test double.")  # fmt: skip
@click.option("--as", "as_email", default=None, help="Show a search as this user (email).")
def command(documents: int, as_email: str | None) -> None:
    """Run the whole connector here: Redis, a Paperless-ngx double, a worker, a full sync.

    Stops everything it started when done. With PAPERLESS_URL and PAPERLESS_TOKEN set it
    syncs that Paperless-ngx instead of the double.

    \b
    Examples:
      paperless-connector run-demo
      paperless-connector run-demo --documents 2000 --as alice@example.com
    """
    console = Console()
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise DemoError(str(exc)) from None
    env = dict(os.environ)
    os.environ.pop("CONNECTOR_MANAGER_URL", None)  # the demo fills the local index, never Omni
    env.pop("CONNECTOR_MANAGER_URL", None)
    env.pop("PAPERLESS_TOKEN", None)  # children read the token from the encrypted registry
    data_dir = settings.connector_data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    started = Started()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    run_id: str | None = None
    try:
        redis_url = ensure_redis(settings.redis_url, started, env, console)
        _use_environment(env, REDIS_URL=redis_url, CONNECTOR_DATA_DIR=str(data_dir))
        point_app_at(redis_url)
        url, token = _paperless(documents, started, env, data_dir, console)
        register_source(url, token)
        as_email = as_email or pick_user(url, token)
        worker = start_worker(started, env, data_dir)
        begin = time.monotonic()
        run_id = start_run(console)
        record = follow_run(run_id, worker, console, data_dir / "demo-worker.log")
        run_id = None if not record.running else run_id
        print_summary(console, record, time.monotonic() - begin)
        if record.state != "completed":
            raise DemoError(
                f"the demo sync {record.state}: {record.error or 'see the worker log'}."
            )
        print_searches(console, as_email)
    except KeyboardInterrupt:
        console.print("Interrupted: stopping everything the demo started.")
        _cancel(run_id)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        started.stop()


def _paperless(
    documents: int, started: Started, env: dict[str, str], data_dir: Path, console: Console
) -> tuple[str, str]:
    url, token = os.environ.get("PAPERLESS_URL"), os.environ.get("PAPERLESS_TOKEN")
    if url and token:
        console.print(f"Paperless-ngx: {maybe_sanitize_url(url)} (PAPERLESS_URL)")
        return url, token
    url, token = start_double(documents, started, env, data_dir)
    console.print(f"Paperless-ngx: the test double with {documents} documents at {url}")
    return url, token


def _cancel(run_id: str | None) -> None:
    if run_id is None:
        return
    try:
        from tasks.trigger import cancel_run

        cancel_run(run_id)
    except Exception:
        pass  # best effort: the watchdog fails a run that stopped moving


run_demo_command = command  # the name worker/cli.py looks for


if __name__ == "__main__":
    command()
