"""Fault injection: latency, failing statuses, malformed bodies, dropped connections,
slow responses, vanishing documents and documents with bad data.

Thread-safe; a rate fault draws from its own `random.Random(seed)`, so a single-threaded
test sees the same sequence on every run. `clear()` removes every fault at once.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

BAD_DATA_KINDS = frozenset(
    {
        "invalid_date",  # created / created_date "2023-02-30"
        "invalid_modified",  # modified is not a date-time
        "unknown_tag",
        "unknown_correspondent",
        "unknown_document_type",
        "unknown_storage_path",
        "unknown_custom_field",
        "huge_content",  # ~10 MB of text
        "nul_bytes",  # NUL characters in title and content
        "lone_surrogate",  # \udXXX escapes without their pair in title and content
        "empty_title",
    }
)


@dataclass
class Fault:
    """One rule: which requests it hits (path regex, `times` and/or `rate`), what it does."""

    path: re.Pattern[str] | None
    statuses: tuple[int, ...] = ()
    times: int | None = None
    rate: float | None = None
    retry_after: float | None = None
    malformed: bool = False
    drop: bool = False
    delay: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    hits: int = 0

    def matches(self, path: str) -> bool:
        return self.path is None or self.path.search(path) is not None


@dataclass
class Decision:
    """What the server does to one request."""

    latency: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    malformed: bool = False
    drop: bool = False
    delay: float = 0.0


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._latencies: list[tuple[re.Pattern[str], float]] = []
        self.latency = 0.0  # seconds added to every request
        self._vanished: set[int] = set()
        self._bad: dict[int, frozenset[str]] = {}

    def add(
        self,
        path: str | None = None,
        *,
        status: int | None = None,
        statuses: list[int] | tuple[int, ...] = (),
        times: int | None = None,
        rate: float | None = None,
        retry_after: float | None = None,
        malformed: bool = False,
        drop: bool = False,
        delay: float = 0.0,
        seed: int = 0,
    ) -> Fault:
        """Hit requests whose API path matches `path` (a regex; None: every path).

        `times=N` hits the next N matching requests, `rate=0.3` each with that probability
        (both: at most N of them); neither: every matching request. What happens: a status
        (`status`, or one of `statuses` at random; 429 carries `Retry-After: retry_after`),
        a truncated JSON body (`malformed`), a closed socket without answer (`drop`), or
        an answer held back `delay` seconds (a slow response).
        """
        codes = tuple(statuses) or ((status,) if status is not None else ())
        if not (codes or malformed or drop or delay):
            raise ValueError("a fault needs a status, malformed=True, drop=True or a delay")
        rule = Fault(
            path=re.compile(path) if path is not None else None,
            statuses=codes,
            times=times,
            rate=rate,
            retry_after=retry_after,
            malformed=malformed,
            drop=drop,
            delay=delay,
            rng=random.Random(seed),
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def set_latency(self, path: str, seconds: float) -> None:
        """Add `seconds` to every request whose API path matches the regex `path`."""
        with self._lock:
            self._latencies.append((re.compile(path), seconds))

    def vanish(self, *doc_ids: int) -> None:
        """Keep these documents in listings but leave them out of `id__in` fetches and details."""
        with self._lock:
            self._vanished.update(doc_ids)

    def bad_document(self, doc_id: int, *kinds: str) -> None:
        """Serve this document with bad data (kinds from `BAD_DATA_KINDS`)."""
        unknown = set(kinds) - BAD_DATA_KINDS
        if unknown or not kinds:
            raise ValueError(
                f"unknown bad-data kinds {sorted(unknown)}: use {sorted(BAD_DATA_KINDS)}"
            )
        with self._lock:
            self._bad[doc_id] = self._bad.get(doc_id, frozenset()) | frozenset(kinds)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._latencies.clear()
            self._vanished.clear()
            self._bad.clear()
            self.latency = 0.0

    def vanished(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._vanished)

    def bad(self) -> dict[int, frozenset[str]]:
        with self._lock:
            return dict(self._bad)

    def decide(self, path: str) -> Decision:
        with self._lock:
            decision = Decision(latency=self.latency)
            decision.latency += sum(s for pattern, s in self._latencies if pattern.search(path))
            for rule in self._rules:
                if not rule.matches(path):
                    continue
                if rule.rate is not None and rule.rng.random() >= rule.rate:
                    continue
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                rule.hits += 1
                if rule.statuses:
                    decision.status = rule.rng.choice(rule.statuses)
                    decision.retry_after = rule.retry_after
                decision.malformed = rule.malformed
                decision.drop = rule.drop
                decision.delay = rule.delay
                break
            return decision
