"""The light listing on the wire: pages side by side, read again when the list shifts under
them, capped by the limiter; and the double's cached rows stay what the server would send."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from tasks.paperless import client as client_module
from tasks.paperless.client import LightPage, PaperlessClient
from tasks.paperless.errors import BadResponseError
from tasks.paperless.models import LIGHT_FIELDS
from tests.paperless_double import PaperlessDouble

LIGHT = ",".join((*LIGHT_FIELDS, "permissions"))


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(client_module, "LIGHT_PAGE_SIZE", 40)
    return 40


def connect(double: PaperlessDouble, **kwargs: Any) -> PaperlessClient:
    return PaperlessClient(double.url, double.token("admin"), backoff_factor=0.01, **kwargs)


def light_requests(double: PaperlessDouble) -> list[dict[str, str]]:
    return [r.query for r in double.requests("/api/documents/") if r.query.get("fields") == LIGHT]


def served_at_once(double: PaperlessDouble) -> list[dict[str, Any]]:
    """The whole listing in one request, as the server answers it."""
    answer = requests.get(
        f"{double.url}/api/documents/",
        params={"fields": LIGHT, "full_perms": "true", "ordering": "id", "page_size": 100_000},
        headers={"Authorization": f"Token {double.token('admin')}"},
        timeout=30,
    )
    rows: list[dict[str, Any]] = answer.json()["results"]
    return rows


def after_the_first_listing_page(double: PaperlessDouble, change: Any) -> threading.Event:
    """Make `change(double)` once, right after the double answered the listing's first page;
    the event tells that it happened."""
    answer = double.api.answer
    changed = threading.Event()

    def answer_then_change(request: Any, version: int) -> Any:
        reply = answer(request, version)
        first = request.query.get("page") == "1" and request.query.get("fields") == LIGHT
        if first and not changed.is_set():
            changed.set()
            change(double)
        return reply

    double.api.answer = answer_then_change  # type: ignore[method-assign]
    return changed


def expected_rows(double: PaperlessDouble) -> list[dict[str, Any]]:
    """The light fields of every document, from the double's uncached detail serialisation."""
    keys = (*LIGHT_FIELDS, "permissions")
    return [{k: doc[k] for k in keys} for doc in double.visible_documents("admin")]


def test_pages_are_fetched_side_by_side_and_add_up_to_one_listing(
    paperless: PaperlessDouble, small_pages: int
) -> None:
    client = connect(paperless)
    client.probe()
    paperless.reset_log()
    rows, server_time = client.list_light()
    assert rows == served_at_once(paperless)
    assert [r["id"] for r in rows] == list(range(1, 201))
    asked = light_requests(paperless)[:5]  # the sixth is served_at_once's
    assert sorted(int(q["page"]) for q in asked) == [1, 2, 3, 4, 5]
    assert {q["page_size"] for q in asked} == {str(small_pages)}
    assert asked[0]["page"] == "1"  # the first page tells how many follow
    assert server_time.tzinfo is not None


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d.trash_document(3), id="a document trashed"),
        pytest.param(lambda d: d.restore_document(150), id="one restored"),
        pytest.param(lambda d: d.add_document("Neu"), id="one added"),
        pytest.param(lambda d: (d.trash_document(3), d.add_document("Neu")), id="both"),
    ],
)
def test_a_list_that_changes_between_pages_is_read_again(
    paperless: PaperlessDouble, small_pages: int, change: Any
) -> None:
    paperless.trash_document(150)  # so that restoring it shifts the pages
    client = connect(paperless)
    client.probe()
    changed = after_the_first_listing_page(paperless, change)
    rows, _ = client.list_light()
    assert changed.is_set()
    assert rows == expected_rows(paperless)  # nothing skipped, nothing twice
    assert light_requests(paperless)[-1]["page_size"] == "100000"  # read again at once


def test_ids_missing_between_pages_are_asked_about_not_read_again(
    paperless: PaperlessDouble, small_pages: int
) -> None:
    for doc_id in (41, 82):  # deleted for good: pages of 40 now meet at gaps
        paperless.delete_document(doc_id)
    client = connect(paperless)
    client.probe()
    paperless.reset_log()
    rows, _ = client.list_light()
    assert rows == expected_rows(paperless)
    asked = [r.query for r in paperless.requests("/api/documents/")]
    assert [(q["id__in"], q["fields"]) for q in asked if "id__in" in q] == [("41,82", "id")]
    assert len(asked) == 1 + 5  # five pages of the listing, none read again


class CountingLimiter:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self.most = 0
        self._lock = threading.Lock()
        self._free = threading.Semaphore(capacity)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._free:
            with self._lock:
                self.in_flight += 1
                self.most = max(self.most, self.in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self.in_flight -= 1

    def backoff(self, seconds: float) -> None:
        pass


@pytest.mark.parametrize("capacity", [1, 2, 16])
def test_the_limiter_caps_the_pages_in_flight(
    paperless: PaperlessDouble, small_pages: int, capacity: int
) -> None:
    paperless.faults.latency = 0.02  # requests overlap when they may
    limiter = CountingLimiter(capacity)
    rows, _ = connect(paperless, limiter=limiter).list_light()
    assert len(rows) == 200
    assert 1 <= limiter.most <= min(capacity, client_module.LIGHT_PARALLEL)


def test_the_doubles_cached_rows_follow_every_change(paperless: PaperlessDouble) -> None:
    assert served_at_once(paperless) == expected_rows(paperless)  # fills the cache
    linked = next(d for d in paperless.corpus.documents.values() if d.custom_fields)
    paperless.edit_document(1, title="Neuer Titel")
    paperless.bulk_edit([2, 3], add_tags=[1], correspondent=None)
    paperless.set_permissions([4], owner=3, view_groups=[1])
    paperless.edit_document(linked.id, custom_fields={8: [1, 2]})
    assert served_at_once(paperless) == expected_rows(paperless)
    paperless.document(linked.id).custom_fields[0][1].append(3)  # a list changed in place
    paperless.faults.bad_document(5, "unknown_tag", "empty_title")
    served = served_at_once(paperless)
    assert served[4]["title"] == "" and 9999 in served[4]["tags"]
    assert [r for r in served if r["id"] != 5] == [
        r for r in expected_rows(paperless) if r["id"] != 5
    ]
    paperless.faults.clear()
    assert served_at_once(paperless) == expected_rows(paperless)


def test_pages_are_handed_over_in_order_and_never_pile_up(
    paperless: PaperlessDouble, small_pages: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    paperless.faults.latency = 0.01  # requests overlap when they may
    client = connect(paperless, limiter=CountingLimiter(16))
    decoded, piled = [0], []
    light_page = client._light_page

    def counted(*args: Any) -> Any:
        page = light_page(*args)
        decoded[0] += 1
        return page

    monkeypatch.setattr(client, "_light_page", counted)
    handed: list[list[int]] = []

    def take(page: LightPage) -> list[int]:
        handed.append(page.ids())
        piled.append(decoded[0] - len(handed))  # fetched, not yet handed over
        time.sleep(0.03)  # a slow consumer: the fetchers must wait for it
        return handed[-1]

    client.read_light(take, discard=handed.clear)
    assert [i for page in handed for i in page] == list(range(1, 201))
    assert [len(page) for page in handed] == [small_pages] * 5
    assert max(piled) <= client_module.LIGHT_PARALLEL


def test_a_shifted_listing_tells_the_reader_to_discard_before_it_comes_again(
    paperless: PaperlessDouble, small_pages: int
) -> None:
    client = connect(paperless)
    client.probe()
    after_the_first_listing_page(paperless, lambda double: double.trash_document(3))
    events: list[Any] = []

    def take(page: LightPage) -> list[int]:
        events.append(len(page.ids()))
        return page.ids()

    client.read_light(take, discard=lambda: events.append("x"))
    assert events[-2:] == ["x", 199]  # the first read dropped, then all in one page
    assert events[:-2] and "x" not in events[:-2]


def test_a_listing_row_without_an_id_is_a_bad_answer(
    paperless: PaperlessDouble, small_pages: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(paperless)
    light_page = client._light_page

    def without_ids(*args: Any) -> Any:
        page, response = light_page(*args)
        body = json.dumps({"count": page.count, "next": page.next, "results": [{"title": "x"}]})
        malformed = client._shape_error("/api/documents/", "a page of documents with ids")
        return LightPage(page.key, body.encode(), lambda: json.loads(body), malformed), response

    monkeypatch.setattr(client, "_light_page", without_ids)
    with pytest.raises(BadResponseError, match="check the base URL"):
        client.list_light()
