"""The light listing as a plan keeps it, and the memo of the last committed one.

A plan reduces every listed document to its id, light fingerprint, modified time and
documentlink targets (`Listing`). With nothing changed, most of that work repeats what
the last committed run already worked out, so the plan also writes a `ListingMemo`: per
page of the listing, a digest of the rows' bytes with the ids, raw light digests and links
they held. The next plan skips decoding a page whose bytes are the same: a document whose
stored fingerprint starts with the remembered raw digest is as the sink holds it. The memo
is trusted only when the checkpoint names it (see `plan_run`).
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from tasks.paperless.client import LightPage, PaperlessClient
from tasks.render import RAW_DIGEST_CHARS, light_fingerprint, linked_ids, raw_light_digest
from tasks.sinks.base import StoredState
from tasks.snapshot import LookupSnapshot

DIGEST_BYTES = 48  # of a light fingerprint (see `tasks.render.light_fingerprint`)
# The modified time of a document whose page is as the last committed run listed it and
# whose stored fingerprint has that row's raw digest: before any watermark, so only a
# changed link target fetches it.
SETTLED = -math.inf
MEMO_VERSION = 2


class Listing:
    """What a plan keeps of the light listing: about 64 bytes per document id.

    Ids, light fingerprints (as 48 raw bytes; none for a full run, which needs none) and
    modified times (seconds, NaN when unknown) sit side by side in flat arrays rather than
    in 100,000 tuples of strings; documentlink targets only for the documents that have some.
    """

    def __init__(self, *, fingerprints: bool = True) -> None:
        self.ids = array("q")
        self.fingerprints: bytearray | None = bytearray() if fingerprints else None
        self.modified = array("d")
        self.links: dict[int, tuple[int, ...]] = {}  # documentlink fields: who shows whose title
        self.server_time = datetime.min

    def add(self, doc_id: int, fingerprint: str | None, modified: float | None) -> None:
        self.ids.append(doc_id)
        if self.fingerprints is not None and fingerprint is not None:
            self.fingerprints += bytes.fromhex(fingerprint)
        self.modified.append(math.nan if modified is None else modified)

    def clear(self) -> None:
        """The list shifted while it was read: it comes again whole."""
        del self.ids[:], self.modified[:]
        if self.fingerprints is not None:
            del self.fingerprints[:]
        self.links.clear()

    def __len__(self) -> int:
        return len(self.ids)

    def entries(self) -> Iterator[tuple[int, str, float | None]]:
        """(id, light fingerprint, modified) of every listed document."""
        if self.fingerprints is None:
            raise ValueError("a listing read without fingerprints has no entries to compare")
        for n, doc_id in enumerate(self.ids):
            modified = self.modified[n]
            fingerprint = self.fingerprints[n * DIGEST_BYTES : (n + 1) * DIGEST_BYTES].hex()
            yield doc_id, fingerprint, None if math.isnan(modified) else modified


class ListingMemo:
    """Per page of the listing (by `LightPage.key`): its rows' digest, ids and links.

    Kept in Redis between runs: ids as ranges, each row's raw light digest (32 hex digits,
    `tasks.render.raw_light_digest`) in one string, links only where there are some; about
    35 bytes per document. `digest()` of the blob is what the checkpoint commits. While a
    listing is read it holds no links: they are the listing's, joined in by `dumps`.
    """

    def __init__(self) -> None:
        # key -> (rows digest, id ranges, raw digests, {doc id: linked ids}, once loaded)
        self.pages: dict[str, tuple[str, list[list[int]], str, dict[str, list[int]]]] = {}
        self.whole = True  # False once a page could not be remembered (a re-read)
        self.recalled_pages = 0  # of this listing, taken from the last committed memo

    def remember(self, page: LightPage, ids: Sequence[int], raws: str) -> None:
        if page.key is None or page.rows_digest is None:
            self.whole = False
            return
        self.pages[page.key] = (page.rows_digest, to_ranges(ids), raws, {})

    def recall(self, page: LightPage) -> Recalled | None:
        """The ids, raw digests and links of the page, when its rows are the bytes
        remembered."""
        if page.key is None or page.rows_digest is None:
            return None
        kept = self.pages.get(page.key)
        if kept is None or kept[0] != page.rows_digest:
            return None
        ids = [doc_id for first, last in kept[1] for doc_id in range(first, last + 1)]
        if len(kept[2]) != len(ids) * RAW_DIGEST_CHARS:
            return None
        links = {int(doc_id): tuple(linked) for doc_id, linked in kept[3].items()}
        return Recalled(ids, kept[2], links)

    def dumps(self, links: dict[int, tuple[int, ...]]) -> bytes:
        """The memo with the links of its pages' documents, as Redis keeps it."""
        pages = {}
        for key, (rows_digest, ranges, raws, _) in self.pages.items():
            linked = {
                str(doc_id): list(links[doc_id])
                for first, last in ranges
                for doc_id in range(first, last + 1)
                if doc_id in links
            }
            pages[key] = (rows_digest, ranges, raws, linked)
        return orjson.dumps({"version": MEMO_VERSION, "pages": pages})

    @classmethod
    def loads(cls, blob: bytes) -> ListingMemo | None:
        """None when the blob is not a memo of this version."""
        try:
            data = orjson.loads(blob)
            memo = cls()
            if data["version"] != MEMO_VERSION:
                return None
            for key, (rows_digest, ranges, raws, linked) in data["pages"].items():
                memo.pages[str(key)] = (str(rows_digest), ranges, str(raws), linked)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return memo

    @staticmethod
    def digest(blob: bytes) -> str:
        return hashlib.sha256(blob).hexdigest()


def list_documents(
    client: PaperlessClient,
    snapshot: LookupSnapshot,
    unchanged: dict[int, StoredState] | None = None,
    *,
    needs_fingerprints: bool = True,
    recalled: ListingMemo | None = None,
) -> tuple[Listing, ListingMemo]:
    """Reduce the light listing to ids, fingerprints and links, page by page as it arrives;
    with the memo of what it held, for the next plan.

    The rows of a page are dropped once reduced, so the scheduler's memory grows with the
    number of ids, not with the listing (DESIGN.md invariant 8). A document in `unchanged`
    whose raw light values are the same keeps its stored fingerprint without resolving its
    names again; a page `recalled` byte for byte is not decoded at all when every one of
    its documents is in `unchanged` with that raw digest: they keep their stored
    fingerprints. Without `needs_fingerprints` (a full run fetches every document anyway)
    no fingerprint is worked out, only the raw digests the memo keeps.
    """
    listing, memo = Listing(fingerprints=needs_fingerprints), ListingMemo()
    held = unchanged or {}

    def fingerprint(doc_id: int, doc: dict[str, Any], raw: str) -> str | None:
        if not needs_fingerprints:
            return None
        state = held.get(doc_id)
        if state is not None and state.light_fingerprint[:RAW_DIGEST_CHARS] == raw:
            return state.light_fingerprint
        return light_fingerprint(doc, snapshot)

    def settle(known: Recalled) -> bool:
        """Take a recalled page's documents as the sink holds them; False if it cannot."""
        if needs_fingerprints:
            states = [held.get(doc_id) for doc_id in known.ids]
            for n, state in enumerate(states):
                raw = known.raws[n * RAW_DIGEST_CHARS : (n + 1) * RAW_DIGEST_CHARS]
                if state is None or state.light_fingerprint[:RAW_DIGEST_CHARS] != raw:
                    return False  # the sink lacks it or holds another state: read the page
            for doc_id, state in zip(known.ids, states, strict=True):
                assert state is not None
                listing.add(doc_id, state.light_fingerprint, SETTLED)
        else:
            for doc_id in known.ids:
                listing.add(doc_id, None, SETTLED)
        listing.links.update(known.links)
        return True

    def take(page: LightPage) -> list[int]:
        known = recalled.recall(page) if recalled is not None else None
        if known is not None and settle(known):
            memo.remember(page, known.ids, known.raws)
            memo.recalled_pages += 1
            return known.ids
        ids = page.ids()
        raws = []
        for doc_id, doc in zip(ids, page.rows(), strict=True):
            raw = raw_light_digest(doc)
            raws.append(raw)
            listing.add(doc_id, fingerprint(doc_id, doc, raw), moment(doc.get("modified")))
            linked = _links(doc, snapshot)
            if linked:
                listing.links[doc_id] = linked
        memo.remember(page, ids, "".join(raws))
        return ids

    def discard() -> None:
        listing.clear()
        memo.pages.clear()

    listing.server_time = client.read_light(take, discard=discard)
    return listing, memo


class Recalled(NamedTuple):
    """What the memo says of a page: its ids, their raw digests (one string) and links."""

    ids: list[int]
    raws: str
    links: dict[int, tuple[int, ...]]


def _links(doc: dict[str, Any], snapshot: LookupSnapshot) -> tuple[int, ...]:
    try:
        return tuple(sorted(linked_ids(doc, snapshot)))
    except Exception:  # malformed fields are the page's to report
        return ()


def moment(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (or of seconds); None if it cannot tell."""
    if isinstance(value, float):
        return value
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def to_ranges(ids: Any) -> list[list[int]]:
    """Sorted inclusive ranges of ids: [[1, 3], [7, 7]] for {1, 2, 3, 7}."""
    ranges: list[list[int]] = []
    for doc_id in sorted(ids):
        if ranges and doc_id == ranges[-1][1] + 1:
            ranges[-1][1] = doc_id
        else:
            ranges.append([doc_id, doc_id])
    return ranges


def expand_ranges(ranges: list[list[int]]) -> set[int]:
    ids: set[int] = set()
    for first, last in ranges:
        ids.update(range(int(first), int(last) + 1))
    return ids
