"""Peak memory of the planner's listing, measured in a process of its own.

`python -m tests.support.plan_memory --url URL --token TOKEN` plans the listing of the
Paperless-ngx at URL the way `plan_run` does (probe, lookup snapshot, light listing reduced
to id -> (light fingerprint, modified) and links) and prints one JSON line: the documents
listed, the seconds it took and the process's peak RSS (VmHWM) in KiB. The server runs in
another process (`bench.paperless_host`), so its memory stays out of the figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(url: str, token: str) -> dict[str, Any]:
    from tasks import collector, listing
    from tasks.paperless.client import PaperlessClient
    from tasks.snapshot import LookupSnapshot

    with PaperlessClient(url, token) as client:
        client.probe()
        snapshot = LookupSnapshot.load(client)
        started = time.perf_counter()
        with collector.paused():  # as start_run plans
            listed, _ = listing.list_documents(client, snapshot)
        seconds = time.perf_counter() - started
    return {"listed": len(listed), "seconds": round(seconds, 2), "peak_kib": peak_rss_kib()}


class HostedDouble:
    """The Paperless-ngx double of `bench.paperless_host`, in a process of its own."""

    def __init__(self, documents: int, seed: int = 11, latency: float = 0.0) -> None:
        command = [sys.executable, "-m", "bench.paperless_host", "--documents", str(documents)]
        self.process = subprocess.Popen(
            [*command, "--seed", str(seed), "--latency", str(latency)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.info = json.loads(self.process.stdout.readline())

    def plan_in_a_process(self) -> dict[str, Any]:
        command = [sys.executable, "-m", "tests.support.plan_memory"]
        command += ["--url", self.info["url"], "--token", self.info["token"]]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    print(json.dumps(measure(args.url, args.token)), flush=True)


if __name__ == "__main__":
    main()
