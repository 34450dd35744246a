"""This connector as it ships: its own Redis, a real Celery worker, a driver that triggers.

The worker is `celery -A worker worker -Q control,pages` with nothing added but a log
level: pool, concurrency and page size are the product's defaults. Its whole process tree
is sampled for peak RSS while it runs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from bench.procs import (
    PYTHON,
    BenchError,
    RssSampler,
    read_json_line,
    spawn,
    stop,
    tree_cpu_seconds,
)
from bench.profile import Profiler
from tests.support.redis_server import RedisServer, start_redis

READY_SECONDS = 90


class ConnectorUnderTest:
    """One Redis, one data dir, one worker; standalone unless a manager URL is given."""

    def __init__(
        self, label: str, manager_url: str | None = None, profile_dir: Path | None = None
    ) -> None:
        self.label = label
        self.profile_dir = profile_dir
        self.last_profile: Path | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pc-bench-{label}-"))
        self.redis: RedisServer = start_redis()
        self.env = {
            "REDIS_URL": self.redis.url(0),
            "CONNECTOR_DATA_DIR": str(self.workdir / "data"),
            "CONNECTOR_SECRET_KEYS": Fernet.generate_key().decode(),
            "CONNECTOR_MANAGER_URL": manager_url or "",
            "LOG_LEVEL": "INFO",
        }
        self.log = self.workdir / "worker.log"
        self.worker: subprocess.Popen[str] | None = None
        self.sampler: RssSampler | None = None

    @property
    def index_path(self) -> Path:
        return self.workdir / "data" / "index.sqlite3"

    def start_worker(self) -> None:
        argv = [PYTHON, "-m", "celery", "-A", "worker", "worker", "-Q", "control,pages"]
        self.worker = spawn([*argv, "--loglevel", "INFO"], env=self.env, log=self.log)
        self.sampler = RssSampler(self.worker.pid).start()
        deadline = time.monotonic() + READY_SECONDS
        while " ready." not in self.log.read_text(errors="replace"):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-1500:]
                raise BenchError(f"the Celery worker did not become ready; its log ends:\n{tail}")
            time.sleep(0.2)

    def sync(
        self,
        mode: str,
        *,
        register: tuple[str, str] | None = None,
        run_id: str | None = None,
        timeout: float = 3600,
    ) -> dict[str, Any]:
        """Trigger one run through the driver and wait for it; returns its record."""
        argv = [PYTHON, "-m", "bench.connector_driver", "--mode", mode, "--timeout", str(timeout)]
        env = dict(self.env)
        if register is not None:
            argv += ["--register", register[0]]
            env["BENCH_PAPERLESS_TOKEN"] = register[1]
        if run_id is not None:
            argv += ["--run-id", run_id]
        profiler = None
        if self.profile_dir is not None and self.worker is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            profiler = Profiler(self.worker.pid, self.profile_dir / f"{self.label}-{mode}.txt")
        driver = spawn(argv, env=env)
        try:
            return read_json_line(driver, timeout + 30, f"the connector driver ({self.label})")
        finally:
            stop(driver)
            if profiler is not None:
                self.last_profile = profiler.stop()

    def cpu_seconds(self) -> float:
        """CPU time the worker's processes have used so far."""
        return tree_cpu_seconds(self.worker.pid) if self.worker is not None else 0.0

    def peaks_kb(self) -> dict[int, int]:
        """Peak RSS of every worker process seen so far (the main process first)."""
        return self.sampler.snapshot() if self.sampler is not None else {}

    def worker_log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if self.worker is not None:
            stop(self.worker, grace=15)
        self.redis.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
