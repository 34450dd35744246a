"""A real Celery worker for integration tests, and the environment it shares with the test.

    from tests.support.worker import sync_env, worker  # noqa: F401  (fixtures)

    def test_x(sync_env, worker, paperless):
        sync_env.add_source("main", paperless)
        record = trigger_sync("main", "full")
        done = sync_env.wait(record.run_id)

`sync_env` gives the test its own Redis database (flushed), data directory and secret key,
sets them in the test's environment (so `tasks.trigger`, `RunStore` and `LocalIndex` in the
test process see what the worker sees) and makes a Celery app on that Redis the current
app while the test runs. `worker` starts `celery -A worker worker -Q control,pages -P prefork`
in its own process group with that environment, waits until it is ready, and stops it
afterwards; its log is in `worker.log_path` (`worker.log()`). More workers, or other
settings for a worker: `sync_env.start_worker(page_size="5", connector_manager_url=...)`
(keyword names are environment variables, for that worker only). Test settings: PAGE_SIZE
25, HTTP_RETRIES 1 (a failing page gives up in seconds), LOCK_TTL_SECONDS 30.
`shared_sync_env` is the same with one worker for a whole module. Never eager mode: tasks
run in the worker process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, current_app
from cryptography.fernet import Fernet

from config.settings import get_settings
from tasks.runs import RunRecord, RunStore
from tests.support.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")
SYNC_DB = 12  # the Redis databases of these tests (others use their own numbers)
SHARED_DB = 14


class WorkerProcess:
    """One `celery worker` subprocess with its log file."""

    def __init__(self, env: dict[str, str], log_path: Path, concurrency: int = 2) -> None:
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        command = [
            str(CELERY), "-A", "worker", "worker",
            "-Q", "control,pages", "-P", "prefork", "-c", str(self.concurrency),
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "-n", self.name, "--loglevel", "INFO",
        ]  # fmt: skip
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches the pool too
            )
        deadline = time.monotonic() + timeout
        while " ready." not in self.log(offset):
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited at start:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"the worker was not ready in {timeout} s:\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)
        return self

    def log(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stop(self, timeout: float = 20.0, *, warm: bool = False) -> None:
        """Stop: cold (SIGQUIT) unless `warm` (SIGTERM); SIGKILL if it takes too long."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM if warm else signal.SIGQUIT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap_group()

    def kill(self) -> None:
        """Kill the worker and its pool children at once, as a crash or OOM would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def _reap_group(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class SyncEnv:
    """What a sync test and its worker share: Redis, data directory, settings."""

    redis_url: str
    data_dir: Path
    env: dict[str, str]
    store: RunStore
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, concurrency: int = 2, **extra_env: str) -> WorkerProcess:
        env = {**self.env, **{k.upper(): v for k, v in extra_env.items()}}
        worker = WorkerProcess(env, self.data_dir / "worker.log", concurrency)
        self.workers.append(worker)
        return worker.start()

    def add_source(self, name: str, double: Any, user: str = "admin") -> None:
        """Register the Paperless-ngx double as a standalone source (token encrypted)."""
        from config.sources import SourceRegistry

        registry = SourceRegistry.from_settings(get_settings())
        registry.add(name, double.url, double.token(user))

    def checkpoint(self, name: str) -> dict[str, Any] | None:
        from config.sources import SourceRegistry

        source = SourceRegistry.from_settings(get_settings()).get(name)
        return None if source is None else source.checkpoint

    def index(self) -> Any:
        from tasks.sinks.local import LocalIndex

        return LocalIndex(get_settings().index_path)

    def wait(self, run_id: str, timeout: float = 60.0) -> RunRecord:
        """Poll the run until it is no longer queued or running."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.store.get(run_id)
            if record is not None and not record.running:
                return record
            if time.monotonic() > deadline:
                logs = "\n".join(w.log()[-4000:] for w in self.workers[-1:])
                raise AssertionError(f"run {run_id} still {record} after {timeout} s\n{logs}")
            time.sleep(0.1)

    def wait_for(self, condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached in {timeout} s")
            time.sleep(0.05)


@contextlib.contextmanager
def sync_environment(redis_server: RedisServer, db: int, data_dir: Path) -> Iterator[SyncEnv]:
    """Settings in this process's environment, a flushed Redis database, a current app."""
    url = redis_server.url(db)
    redis = redis_server.client(db)
    redis.flushdb()
    settings = {
        "REDIS_URL": url,
        "CONNECTOR_DATA_DIR": str(data_dir),
        "CONNECTOR_SECRET_KEYS": Fernet.generate_key().decode(),
        "CONNECTOR_MANAGER_URL": "",
        "PAGE_SIZE": "25",
        "HTTP_RETRIES": "1",
        "HTTP_READ_TIMEOUT": "10",
        "LOCK_TTL_SECONDS": "30",
        "LOG_LEVEL": "INFO",
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        env = {**os.environ, **settings, "PYTHONPATH": str(REPO)}
        get_settings.cache_clear()
        _forget_process_caches()
        previous = current_app._get_current_object()
        app = Celery("paperless_connector", broker=url, backend=url, set_as_current=True)
        app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
        environment = SyncEnv(redis_url=url, data_dir=data_dir, env=env, store=RunStore(redis))
        try:
            yield environment
        finally:
            for worker in environment.workers:
                worker.stop(timeout=2, warm=True)  # SIGTERM, SIGKILL after 2 s
            previous.set_current()
            app.close()
            get_settings.cache_clear()
            _forget_process_caches()


@pytest.fixture
def sync_env(redis_server: RedisServer, tmp_path: Path) -> Iterator[SyncEnv]:
    """A fresh environment for one test (start workers with `sync_env.start_worker`)."""
    with sync_environment(redis_server, SYNC_DB, tmp_path / "data") as environment:
        yield environment


@pytest.fixture
def worker(sync_env: SyncEnv) -> WorkerProcess:
    """A started worker (stopped by `sync_env` at the end of the test)."""
    return sync_env.start_worker()


@pytest.fixture(scope="module")
def shared_sync_env(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncEnv]:
    """One environment and one running worker for a whole test module (faster).

    Tests that share it must use their own source names: state is not flushed between them.
    """
    data_dir = tmp_path_factory.mktemp("shared") / "data"
    with sync_environment(redis_server, SHARED_DB, data_dir) as environment:
        environment.start_worker()
        yield environment


def _forget_process_caches() -> None:
    """Module caches built from the previous test's settings."""
    from tasks import pipeline, trigger, wiring

    trigger._stores.clear()
    wiring._cache.clear()
    for run_id in list(pipeline._contexts):
        pipeline.forget(run_id)


# -- comparing the sink with the server ----------------------------------------------------


def server_documents(double: Any, source_id: str, user: str = "admin") -> dict[int, Any]:
    """What the sink should hold: every visible document freshly read and rendered."""
    from tasks.paperless.client import PaperlessClient
    from tasks.render import render_document
    from tasks.snapshot import LookupSnapshot

    with PaperlessClient(double.url, double.token(user)) as client:
        snapshot = LookupSnapshot.load(client)
        ids = [int(doc["id"]) for doc in double.visible_documents(user)]
        raws = client.get_documents(ids)
        titles = {int(raw["id"]): str(raw.get("title") or "") for raw in raws}
        rendered = {}
        for raw in raws:
            doc = render_document(
                raw, snapshot, source_id=source_id, base_url=double.url, link_titles=titles
            )
            rendered[doc.doc_id] = doc
    return rendered


def server_fingerprints(double: Any, source_id: str, user: str = "admin") -> dict[int, str]:
    return {i: doc.fingerprint for i, doc in server_documents(double, source_id, user).items()}


def sink_fingerprints(sync_env: SyncEnv, source_id: str) -> dict[int, str]:
    return {int(row["doc_id"]): row["fingerprint"] for row in sync_env.index().export(source_id)}


def page_fetches(double: Any) -> list[list[int]]:
    """The ids of each full-document fetch (`id__in` with `full_perms`) in the double's log."""
    fetches = []
    for record in double.requests("/api/documents/"):
        query = record.query
        if "id__in" in query and query.get("full_perms") == "true" and "fields" not in query:
            fetches.append([int(part) for part in query["id__in"].split(",") if part])
    return fetches


def only_gets(double: Any) -> bool:
    return all(record.method == "GET" for record in double.requests())


@contextlib.contextmanager
def failing_fetches(double: Any, doc_id: int, status: int = 500) -> Iterator[None]:
    """Every full-document fetch that includes `doc_id` answers `status`; the rest work."""
    from tests.paperless_double.server import fault_reply

    original = double.api.answer

    def answer(request: Any, version: int) -> Any:
        ids = request.query.get("id__in", "").split(",")
        if request.path == "/api/documents/" and str(doc_id) in ids:
            return fault_reply(status, None)
        return original(request, version)

    double.api.answer = answer
    try:
        yield
    finally:
        double.api.answer = original
