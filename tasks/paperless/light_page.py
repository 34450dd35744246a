"""`LightPage`: one page of the light listing as it arrived, decoded only when asked.

A plan with nothing to do reads the whole light listing (40 pages of about 1 MB at
100,000 documents), and decoding it row by row was most of that plan's time. A page
tells its count and next page from the few bytes before its rows, and names its rows by
a digest of their bytes: a planner that remembers what the same bytes held last time
(`tasks.listing`) need not decode them at all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import orjson

# The rows come last in a Paperless-ngx page ({"count", "next", "previous"[, "all"],
# "results"}); inside a JSON string a quote is escaped, so the first bare `"results":`
# is the key.
_RESULTS = re.compile(rb'"results"\s*:')


class LightPage:
    """`key` is "size:number" for a page of the paged listing, None for a page of a
    re-read; `rows_digest` is None when the body did not have the usual shape (the page
    is then decoded at once)."""

    __slots__ = ("_data", "_decode", "_ids", "_malformed", "count", "key", "next", "rows_digest")

    def __init__(
        self,
        key: str | None,
        body: bytes,
        decode: Callable[[], dict[str, Any]],
        malformed: Exception,
    ) -> None:
        self.key = key
        self._decode = decode
        self._malformed = malformed
        self._data: dict[str, Any] | None = None
        self._ids: list[int] | None = None
        head, self.rows_digest = _split(body)
        if head is None:
            head = self._page()
        self.count: Any = head.get("count")
        self.next: Any = head.get("next")

    @classmethod
    def decoded(cls, data: dict[str, Any], malformed: Exception) -> LightPage:
        """A page already decoded (a re-read): it has no key and no digest."""
        page = cls.__new__(cls)
        page.key, page.rows_digest, page._decode = None, None, lambda: data
        page._malformed, page._data, page._ids = malformed, data, None
        page.count, page.next = data.get("count"), data.get("next")
        return page

    def rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._page()["results"]
        return rows

    def ids(self) -> list[int]:
        """The rows' ids in order; a row without a usable id makes the page a bad answer."""
        if self._ids is None:
            try:
                self._ids = [int(row["id"]) for row in self.rows()]
            except (KeyError, TypeError, ValueError, OverflowError):
                raise self._malformed from None
        return self._ids

    def _page(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._decode()
        return self._data


def _split(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The page's head decoded and its rows' digest; (None, None) when it cannot tell."""
    found = _RESULTS.search(body)
    if found is None:
        return None, None
    head_bytes = body[: found.start()].rstrip()
    if not head_bytes.startswith(b"{"):
        return None, None
    if head_bytes.endswith(b","):
        head_bytes = head_bytes[:-1]
    try:
        head = orjson.loads(head_bytes + b"}")
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(head, dict):
        return None, None
    digest = hashlib.blake2b(body[found.start() :], digest_size=16).hexdigest()
    return head, digest
