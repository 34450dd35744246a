"""The listing memo: a page whose rows are the bytes of the last committed listing is not
decoded again, and anything that changed those bytes, or the sink's copy, is read as before.

Plain functions against the Paperless-ngx double (200 documents, listing pages of 40).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tasks import listing, pipeline
from tasks.listing import ListingMemo
from tasks.paperless import client as client_module
from tasks.paperless.client import LightPage, PaperlessClient
from tasks.sinks.base import StoredState
from tasks.snapshot import LookupSnapshot
from tests.paperless_double import PaperlessDouble

PAGE = 40
WATERMARK = "2999-01-01T00:00:00Z"  # after every modified time: only fingerprints decide


@pytest.fixture
def client(paperless: PaperlessDouble, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(client_module, "LIGHT_PAGE_SIZE", PAGE)
    with PaperlessClient(paperless.url, paperless.token("admin")) as connected:
        yield connected


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The keys of the listing pages whose rows were decoded."""
    keys: list[str | None] = []
    rows = LightPage.rows

    def counted(page: LightPage) -> list[dict[str, Any]]:
        if page._data is None:
            keys.append(page.key)
        return rows(page)

    monkeypatch.setattr(LightPage, "rows", counted)
    return keys


class Committed:
    """What a committed run leaves: the sink's light fingerprints and the listing's memo."""

    def __init__(self, client: PaperlessClient) -> None:
        self.snapshot = LookupSnapshot.load(client)
        first, memo = listing.list_documents(client, self.snapshot)
        self.links = first.links
        self.stored = {
            doc_id: StoredState(light_fingerprint=light, fingerprint="f")
            for doc_id, light, _ in first.entries()
        }
        assert memo.whole
        self.blob = memo.dumps(first.links)
        recalled = ListingMemo.loads(self.blob)
        assert recalled is not None
        self.memo = recalled

    def list_again(
        self, client: PaperlessClient, decoded: list[str | None], *, full: bool = False
    ) -> tuple[listing.Listing, ListingMemo]:
        """The next plan's listing with this memo (a full run's: without stored states)."""
        decoded.clear()
        stored = None if full else self.stored
        return listing.list_documents(
            client, self.snapshot, stored, needs_fingerprints=not full, recalled=self.memo
        )


def targets(listed: listing.Listing, stored: dict[int, StoredState]) -> list[int]:
    chosen = pipeline.choose_targets("incremental", listed.entries(), stored, WATERMARK)
    return pipeline.with_linking_documents(chosen, listed.links, set())


def test_with_nothing_changed_no_page_is_decoded_and_nothing_is_chosen(
    client: PaperlessClient, paperless: PaperlessDouble, decoded: list[str | None]
) -> None:
    last = Committed(client)

    again, kept = last.list_again(client, decoded)

    assert decoded == []
    assert list(again.ids) == sorted(paperless.corpus.documents)
    assert again.links == last.links and again.links  # documentlink targets, from the memo
    assert targets(again, last.stored) == []
    assert kept.recalled_pages == 5 and kept.dumps(again.links) == last.blob


def test_only_the_page_whose_bytes_changed_is_decoded_and_its_change_is_chosen(
    client: PaperlessClient, paperless: PaperlessDouble, decoded: list[str | None]
) -> None:
    last = Committed(client)
    edited = sorted(last.stored)[PAGE * 2 + 5]  # on the third page
    paperless.set_permissions([edited], owner=2, view_users=[3])  # `modified` stays

    again, kept = last.list_again(client, decoded)

    assert decoded == [f"{PAGE}:3"]
    assert targets(again, last.stored) == [edited]
    assert kept.recalled_pages == 4 and kept.dumps(again.links) != last.blob


def test_a_recalled_page_is_read_when_the_sink_lacks_one_of_its_documents(
    client: PaperlessClient, decoded: list[str | None]
) -> None:
    last = Committed(client)
    lost = sorted(last.stored)[PAGE + 1]  # on the second page
    del last.stored[lost]

    again, _ = last.list_again(client, decoded)

    assert decoded == [f"{PAGE}:2"]
    assert targets(again, last.stored) == [lost]


def test_a_recalled_page_is_read_when_the_sink_holds_another_state_of_a_document(
    client: PaperlessClient, decoded: list[str | None]
) -> None:
    """A share changed while the last run fetched, then undone: the listing's bytes are
    those of the memo again, but the sink holds the document as it was in between."""
    last = Committed(client)
    ids = sorted(last.stored)
    between = ids[PAGE * 3 + 2]  # on the fourth page
    last.stored[between] = last.stored[ids[0]]  # another document's light values

    again, _ = last.list_again(client, decoded)

    assert decoded == [f"{PAGE}:4"]
    assert targets(again, last.stored) == [between]


def test_a_document_added_at_the_end_leaves_the_pages_before_it_recalled(
    client: PaperlessClient, paperless: PaperlessDouble, decoded: list[str | None]
) -> None:
    last = Committed(client)
    added = paperless.add_document("Neu eingegangen").id

    again, _ = last.list_again(client, decoded)

    # The count in each page's head changed, its rows did not; the new one is on page 6.
    assert decoded == [f"{PAGE}:6"]
    assert targets(again, last.stored) == [added]


def test_a_full_run_recalls_pages_without_any_stored_state(
    client: PaperlessClient, paperless: PaperlessDouble, decoded: list[str | None]
) -> None:
    last = Committed(client)

    again, _ = last.list_again(client, decoded, full=True)

    assert decoded == [] and list(again.ids) == sorted(paperless.corpus.documents)


def test_a_memo_that_is_not_one_is_no_memo() -> None:
    assert ListingMemo.loads(b"not json") is None
    assert ListingMemo.loads(b'{"version": 0, "pages": {}}') is None
    malformed = {"version": listing.MEMO_VERSION, "pages": {"40:1": ["x"]}}
    assert ListingMemo.loads(json.dumps(malformed).encode()) is None
    assert ListingMemo.loads(ListingMemo().dumps({})) is not None
