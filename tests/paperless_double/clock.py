"""The double's clock: real UTC time by default, or a time the test sets and advances.

`modified` values of mutations and the `Date` response header both come from here, so a
connector deriving its watermark from `Date` sees the double's time, not the machine's.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen: datetime | None = None
        self._offset = timedelta(0)

    def now(self) -> datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return datetime.now(UTC) + self._offset

    def set(self, moment: datetime) -> None:
        """Freeze the clock at `moment` (timezone-aware) until `advance` or `unfreeze`."""
        if moment.tzinfo is None:
            raise ValueError("the double's clock needs a timezone-aware datetime")
        with self._lock:
            self._frozen = moment.astimezone(UTC)

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward (frozen or running) by `seconds`; returns the new now."""
        with self._lock:
            step = timedelta(seconds=seconds)
            if self._frozen is not None:
                self._frozen += step
            else:
                self._offset += step
        return self.now()

    def unfreeze(self) -> None:
        """Run again from the frozen moment on (the offset to real time is kept)."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - datetime.now(UTC)
                self._frozen = None
