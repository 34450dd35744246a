"""The two servers every part of the benchmark talks to, each in its own process."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import requests

from bench.procs import PYTHON, BenchError, cpu_seconds, read_json_line, spawn, stop


class PaperlessHost:
    """The Paperless-ngx test double with N documents, served by bench/paperless_host.py."""

    def __init__(self, documents: int, seed: int, latency: float) -> None:
        self.documents = documents
        self.proc: subprocess.Popen[str] = spawn(
            [
                PYTHON, "-m", "bench.paperless_host",
                "--documents", str(documents), "--seed", str(seed), "--latency", str(latency),
            ],
            stdin=True,
        )  # fmt: skip
        try:
            hello = read_json_line(self.proc, 600, "the Paperless-ngx test double")
        except BaseException:
            stop(self.proc)
            raise
        self.url: str = hello["url"]
        self.token: str = hello["token"]
        self.seconds_to_start: float = hello.get("seconds_to_start", 0.0)

    def _command(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise BenchError("the Paperless-ngx test double died; see its output above")
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return read_json_line(self.proc, 60, "the Paperless-ngx test double")

    def stats(self) -> dict[str, Any]:
        return self._command("stats")

    def reset(self) -> dict[str, Any]:
        """Clear the request log; returns what it held."""
        return self._command("reset")

    def cpu_seconds(self) -> float:
        """CPU time the double's process has used so far (its server threads included)."""
        return cpu_seconds(self.proc.pid)

    def set_latency(self, seconds: float) -> None:
        self._command(f"latency {seconds}")

    def close(self) -> None:
        stop(self.proc)


class FakeManager:
    """bench/fake_manager.py, knowing one source on the given Paperless-ngx."""

    def __init__(self, latency: float, source_id: str, paperless: PaperlessHost) -> None:
        self.proc: subprocess.Popen[str] = spawn(
            [PYTHON, "-m", "bench.fake_manager", "--port", "0", "--latency", str(latency)],
            env={
                "BENCH_SOURCE_ID": source_id,
                "BENCH_PAPERLESS_URL": paperless.url,
                "BENCH_PAPERLESS_TOKEN": paperless.token,
            },
        )
        try:
            self.url: str = read_json_line(self.proc, 30, "the fake connector-manager")["url"]
        except BaseException:
            stop(self.proc)
            raise

    def stats(self) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/_bench/stats", timeout=10)
        answer.raise_for_status()
        return dict(answer.json())

    def reset(self) -> dict[str, Any]:
        answer = requests.post(f"{self.url}/_bench/reset", timeout=10)
        answer.raise_for_status()
        return dict(json.loads(answer.text))

    def close(self) -> None:
        stop(self.proc)
