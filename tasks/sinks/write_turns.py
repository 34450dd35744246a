"""Writers of one SQLite file take turns without sleeping through each other's commits.

While another connection writes, SQLite's own busy handler sleeps in growing steps, up to
100 ms a step. Eight page tasks writing one index then leave the file idle between one
commit and the next writer's wake-up: in the benchmark, page tasks spent more than half of
their time in that wait while the file was free for much of it. An flock on a side file
hands the turn to a waiting writer within about a millisecond instead.

One machine only, like the index itself (flock does not hold across a network file system).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FIRST_PAUSE_S = 0.0005
LONGEST_PAUSE_S = 0.002


class TurnTimeout(Exception):
    """Another writer kept its turn for longer than the timeout (the message says how long)."""


class WriteTurns:
    """An exclusive turn per writer process; threads of one process must not share a turn."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._fd: int | None = None
        self._pid = os.getpid()

    @contextmanager
    def turn(self) -> Iterator[None]:
        fd = self._descriptor()
        deadline = time.monotonic() + self.timeout_s
        pause = FIRST_PAUSE_S
        # Polling rather than a blocking flock: a blocking call could not give up after
        # `timeout_s`, and a short pause costs little next to a page's transaction.
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TurnTimeout(
                        f"database is locked: another writer kept it for over {self.timeout_s:g} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def _descriptor(self) -> int:
        # A forked child shares its parent's open file, and with it the parent's flock:
        # each process opens its own.
        if self._pid != os.getpid():
            self._fd, self._pid = None, os.getpid()
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd
