"""Spawning the benchmark's processes, stopping them, and measuring their peak memory.

Every process is started in its own session so that stopping it also stops whatever it
forked (Celery's pool children); `stop` always ends in SIGKILL, so nothing outlives a run.
Peak memory is the kernel's high-water mark (`VmHWM` in /proc/<pid>/status), sampled for a
whole process tree while it runs because a pool child that exits takes its figure along.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class BenchError(Exception):
    """A part of the benchmark could not run; the message says which and what to do."""


def spawn(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    stdin: bool = False,
) -> subprocess.Popen[str]:
    """Start `argv` from the repo root in a new session; stdout is a pipe unless `log`."""
    out: int | IO[str] = subprocess.PIPE
    if log is not None:
        out = log.open("a", encoding="utf-8")
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen(
        argv,
        cwd=REPO,
        env=full_env,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT if log is not None else None,
        text=True,
        start_new_session=True,
    )


def read_json_line(proc: subprocess.Popen[str], timeout: float, what: str) -> dict[str, Any]:
    """The next JSON line the process prints, within `timeout` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{what} printed nothing within {timeout:.0f} s; see its output")
            if sel.select(timeout=left):
                line = proc.stdout.readline()
                if not line:
                    raise BenchError(f"{what} exited with {proc.wait()}; see its output above")
                line = line.strip()
                if line.startswith("{"):
                    return dict(json.loads(line))


def hold_while_measured() -> None:
    """In a measured child: stay alive until the parent closes our stdin (or it is not a pipe).

    The parent reads the child's peak RSS after its result line; exiting at once would race it.
    """
    if not sys.stdin.isatty():
        sys.stdin.read()


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM the process's session, then SIGKILL whatever is left after `grace` seconds."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    _signal_group(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=10)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat; index 11 and 12 after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU time of `root` and its live descendants (Celery's pool children live on)."""
    return sum(cpu_seconds(pid) for pid in process_tree(root))


def peak_rss_kb(pid: int) -> int | None:
    """The process's peak resident set size (VmHWM) in KiB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class RssSampler:
    """Samples the peak RSS of every process in a tree until stopped."""

    root: int
    interval: float = 0.25
    peaks: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def sample(self) -> None:
        with self._lock:
            for pid in process_tree(self.root):
                kb = peak_rss_kb(pid)
                if kb is not None:
                    self.peaks[pid] = max(kb, self.peaks.get(pid, 0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def snapshot(self) -> dict[int, int]:
        """Peaks so far (after a fresh sample), the root first."""
        self.sample()
        ordered = {self.root: self.peaks.get(self.root, 0)}
        ordered.update({pid: kb for pid, kb in sorted(self.peaks.items()) if pid != self.root})
        return ordered

    def stop(self) -> dict[int, int]:
        """Stop sampling and return the peaks, the root first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.snapshot()
