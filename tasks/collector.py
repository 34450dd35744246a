"""`paused()`: hold Python's cyclic garbage collector off during a burst of allocations.

Planning a run at 100,000 documents decodes a listing of millions of small containers and
builds fingerprints and states for each document, none of them in reference cycles. While
so many young objects survive, the collector walks the growing heap again and again: two to
five times the work itself. Reference counting still frees everything as usual; cycles made
meanwhile wait for the next collection after the pause. Nested and concurrent pauses (the
listing's threads) end when the last one does.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def paused() -> Iterator[None]:
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
