"""A Flower process for tests: started on a free port, ready when /healthcheck answers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def running(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = cwd / "flower.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, f"--port={port}"],
            cwd=cwd,
            env=env | {"PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthcheck", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "Flower did not answer /healthcheck"
            time.sleep(0.2)
        yield base, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
