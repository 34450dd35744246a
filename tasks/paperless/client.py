"""`PaperlessClient`: the read-only Paperless-ngx REST API calls a sync needs.

It negotiates the API version once (10, stepping down to 7 on 406), pages every list by
page number on its own base URL, and checks that answers look like Paperless-ngx's. How a
single GET travels (GET-only session, timeouts, retries, error mapping) is in `transport`.
"""

from __future__ import annotations

import logging
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from itertools import accumulate, islice, pairwise
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import requests

from tasks import collector
from tasks.paperless.errors import BadResponseError, VersionError
from tasks.paperless.light_page import LightPage
from tasks.paperless.models import LIGHT_FIELDS, utc_rfc3339
from tasks.paperless.transport import (
    ReadOnlyViolation,
    RequestLimiter,
    Transport,
    int_header,
    normalise_base_url,
)

__all__ = [
    "LIGHT_FIELDS",
    "LOOKUPS",
    "LightPage",
    "PaperlessClient",
    "ReadOnlyViolation",
    "RequestLimiter",
    "ServerInfo",
    "normalise_base_url",
]

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = (10, 9, 8, 7)
LOOKUPS = (
    "tags",
    "correspondents",
    "document_types",
    "storage_paths",
    "custom_fields",
    "users",
    "groups",
)
MAX_PAGE_SIZE = 100_000
# A page of the light listing is ~1 MB of JSON and ~5 MB decoded. At most LIGHT_PARALLEL
# pages are in flight as bytes and one is decoded at a time (by the planner, and only when
# it has to): smaller pages keep it near its 10,000-document peak at 100,000 (40 requests).
LIGHT_PAGE_SIZE = 2_500
LIGHT_PARALLEL = 4
MAX_GAP_CHECK = 500  # ids between pages worth asking about (in one URL); more: read again


@dataclass(frozen=True)
class ServerInfo:
    api_version: int
    server_version: str | None
    server_time: datetime
    document_count: int


class PaperlessClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        verify: bool | str = True,
        retries: int = 5,
        limiter: RequestLimiter | None = None,
        allow_insecure_http: bool = False,
        api_version: int | None = None,
        backoff_factor: float = 0.5,
    ) -> None:
        if api_version is not None and api_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"API version {api_version} is not supported: use 7, 8, 9 or 10")
        self.transport = Transport(
            base_url,
            token,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            verify=verify,
            retries=retries,
            backoff_factor=backoff_factor,
            limiter=limiter,
            allow_insecure_http=allow_insecure_http,
        )
        self.base_url = self.transport.base_url
        self.host = self.transport.host
        self._api_version = api_version

    @property
    def server_version(self) -> str | None:
        return self.transport.server_version

    # -- public API ------------------------------------------------------------------

    @property
    def api_version(self) -> int:
        if self._api_version is None:
            self._negotiate()
        assert self._api_version is not None
        return self._api_version

    def probe(self) -> ServerInfo:
        """A cheap authenticated request: version, server time and document count."""
        response = self._negotiate() if self._api_version is None else None
        if response is None:
            response = self._get("/api/documents/", {"page_size": 1})
        data = self._json(response, "/api/documents/")
        return ServerInfo(
            api_version=self.api_version,
            server_version=self.server_version,
            server_time=self._server_time(response),
            document_count=int(self._page(data, "/api/documents/").get("count") or 0),
        )

    def list_lookup(self, name: str) -> list[dict[str, Any]]:
        if name not in LOOKUPS:
            raise ValueError(f"unknown lookup {name!r}: use one of {', '.join(LOOKUPS)}")
        return list(self._rows(f"/api/{name}/", {}))

    def list_document_ids(self, modified_after: datetime | None = None) -> list[int]:
        params: dict[str, Any] = {}
        if modified_after is not None:
            params["modified__gt"] = utc_rfc3339(modified_after)
        if self.api_version <= 9:
            # Up to API 9 every list carries `all`: every matching id in one small answer.
            path = "/api/documents/"
            data = self._json(self._get(path, {**params, "page_size": 1, "fields": "id"}), path)
            ids = self._page(data, path).get("all")
            if isinstance(ids, list):
                return sorted({int(i) for i in ids})
        params.update(fields="id", ordering="id")
        return sorted({int(row["id"]) for row in self._rows("/api/documents/", params)})

    def list_light(self) -> tuple[list[dict[str, Any]], datetime]:
        """Every document's light row at once, and the server time of the start.

        For callers that want the whole list (tests, tools); a planner reads the listing
        page by page with `read_light` instead, so that it never holds every row.
        """
        rows: list[dict[str, Any]] = []

        def take(page: LightPage) -> list[int]:
            ids = page.ids()  # a row without an id fails the page before it is kept
            rows.extend(page.rows())
            return ids

        server_time = self.read_light(take, discard=rows.clear)
        return rows, server_time

    def read_light(
        self, take: Callable[[LightPage], Sequence[int]], *, discard: Callable[[], None]
    ) -> datetime:
        """Hand every page of the documents' cheap fields and permissions to `take`, in id
        order; return the server time of the start. `take` answers with the page's ids:
        `page.ids()`, or what it remembers of the same rows (`LightPage.rows_digest`).

        The first page tells how many there are; the other pages are fetched side by side
        (each request still takes a limiter slot), and each is handed over as soon as it
        and the pages before it arrived, then dropped: no more pages are held at once than
        requests are in flight. A page-number listing shifts when the list changes between
        its pages; if it did, `discard` is called (forget every row taken so far) and the
        list is read again in as few requests as the server allows and handed over anew,
        so that no document goes missing from the plan and none counts twice.
        """
        path = "/api/documents/"
        params = {
            # `fields` also filters the serialiser's `permissions`: ask for it by name.
            "fields": ",".join((*LIGHT_FIELDS, "permissions")),
            "full_perms": "true",
            "ordering": "id",
        }
        first, response = self._light_page(path, params, 1)
        server_time = self._server_time(response)
        seen = _SeenPages()
        seen.add(first.count, take(first))
        count, size, more = first.count, seen.sizes[0], bool(first.next)
        del first, response
        if not more or not isinstance(count, int) or size == 0:
            return server_time
        numbers = iter(range(2, -(-count // size) + 1))
        workers = max(1, min(-(-count // size) - 1, LIGHT_PARALLEL, self._capacity()))
        with ThreadPoolExecutor(workers, thread_name_prefix="light-listing") as pool:

            def fetch(number: int) -> Future[tuple[LightPage, requests.Response]]:
                return pool.submit(self._light_page, path, params, number)

            window = deque(fetch(n) for n in islice(numbers, workers))
            while window:
                page = window.popleft().result()[0]
                following = next(numbers, None)
                if following is not None:
                    window.append(fetch(following))
                seen.add(page.count, take(page))
                del page
        if not self._unshifted(seen, count):
            log.info(
                "the document list of %s changed while it was read; reading it again", self.host
            )
            discard()
            malformed = self._shape_error(path, "a page of documents with ids")
            for data, _ in self._pages(path, params):
                take(LightPage.decoded(data, malformed))
        return server_time

    def _unshifted(self, seen: _SeenPages, count: int) -> bool:
        """Whether pages read one after another add up to one listing.

        Every page must show the same count, the rows that many ids, rising throughout (a
        page shifted forward repeats a row). A page shifted back skips a row at its start:
        so no document may exist between the last id of a page and the first of the next.
        """
        ids = seen.ids
        same = all(c == count for c in seen.counts) and len(ids) == count
        if not same or any(a >= b for a, b in pairwise(ids)):
            return False
        between: list[int] = []
        for end in accumulate(seen.sizes[:-1]):
            if 0 < end < len(ids):
                between.extend(range(ids[end - 1] + 1, ids[end]))
            if len(between) > MAX_GAP_CHECK:
                return False
        if not between:
            return True
        params = {"id__in": ",".join(map(str, between)), "fields": "id"}
        return next(self._rows("/api/documents/", params), None) is None

    def _light_page(
        self, path: str, params: dict[str, Any], number: int
    ) -> tuple[LightPage, requests.Response]:
        response = self._get(path, {**params, "page": number, "page_size": LIGHT_PAGE_SIZE})
        page = LightPage(
            f"{LIGHT_PAGE_SIZE}:{number}",
            response.content,
            lambda: self._page(self._json(response, path), path),
            self._shape_error(path, "a page of documents with ids"),
        )
        return page, response

    def _capacity(self) -> int:
        """The limiter's cap on requests in flight, when it has one (ServerLimiter does)."""
        capacity = getattr(self.transport.limiter, "capacity", None)
        return max(1, capacity) if isinstance(capacity, int) else LIGHT_PARALLEL

    def get_documents(self, ids: list[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        params = {
            "id__in": ",".join(str(int(i)) for i in ids),
            "full_perms": "true",
            "ordering": "id",
        }
        return list(self._rows("/api/documents/", params, page_size=len(ids)))

    def get_titles(self, ids: list[int]) -> dict[int, str]:
        if not ids:
            return {}
        params = {"id__in": ",".join(str(int(i)) for i in ids), "fields": "id,title"}
        rows = self._rows("/api/documents/", params, page_size=len(ids))
        return {int(row["id"]): str(row.get("title") or "") for row in rows}

    def get_notes(self, doc_id: int) -> list[dict[str, Any]]:
        path = f"/api/documents/{int(doc_id)}/notes/"
        data = self._json(self._get(path, {}), path)
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            return list(data["results"])  # some versions paginate notes
        if not isinstance(data, list):
            raise self._shape_error(path, "a list of notes")
        return data

    def download(self, doc_id: int) -> tuple[bytes, str, str]:
        """The archived file, else the original: (bytes, mime type, file name)."""
        path = f"/api/documents/{int(doc_id)}/download/"
        response = self._get(path, {})
        mime = response.headers.get("Content-Type", "application/octet-stream").split(";")[0]
        return response.content, mime.strip(), _filename(response, f"document-{doc_id}")

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> PaperlessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------

    def _negotiate(self) -> requests.Response:
        """Find the newest API version the server accepts, with the probe request."""
        for version in SUPPORTED_VERSIONS:
            response = self.transport.send("/api/documents/", {"page_size": 1}, version)
            if response.status_code == 406:
                continue
            self.transport.check(response, "/api/documents/")
            newest = int_header(response, "X-Api-Version")
            if newest is not None and newest < version:
                if newest < min(SUPPORTED_VERSIONS):
                    raise self._version_error(newest)
                version = newest
            self._api_version = version
            log.info("Paperless-ngx at %s speaks API %s", self.host, version)
            return response
        raise self._version_error(None)

    def _version_error(self, newest: int | None) -> VersionError:
        told = f" (it offers API {newest})" if newest is not None else ""
        return VersionError(
            f"Paperless-ngx at {self.host} speaks none of the API versions 7 to 10{told} "
            "on GET /api/documents/: upgrade Paperless-ngx to 2.14 or newer"
        )

    def _get(self, path: str, params: dict[str, Any]) -> requests.Response:
        response = self.transport.send(path, params, self.api_version)
        if response.status_code == 406:
            raise self._version_error(int_header(response, "X-Api-Version"))
        self.transport.check(response, path)
        return response

    def _json(self, response: requests.Response, path: str) -> Any:
        try:
            with collector.paused():  # millions of small containers at 100,000 documents
                try:
                    return orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    # orjson takes strict UTF-8 only; the stdlib also reads a lone surrogate
                    # escape (seen in OCR text) or another Unicode encoding.
                    return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise BadResponseError(
                f"GET {path} on {self.host} did not answer like Paperless-ngx "
                f"({kind or 'the answer'} is not JSON): check the base URL"
            ) from None

    def _page(self, data: Any, path: str) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise self._shape_error(path, "a page with results")
        return data

    def _shape_error(self, path: str, expected: str) -> BadResponseError:
        return BadResponseError(
            f"GET {path} on {self.host} did not answer like Paperless-ngx (not {expected}): "
            "check the base URL"
        )

    def _pages(
        self, path: str, params: dict[str, Any], *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[tuple[dict[str, Any], requests.Response]]:
        """Every page of a list. `next` gives only the page number: the server may sit
        behind a proxy and name a host or scheme we cannot reach."""
        page = 1
        while True:
            response = self._get(path, {**params, "page": page, "page_size": page_size})
            data = self._page(self._json(response, path), path)
            yield data, response
            following = data.get("next")
            if not following:
                return
            numbers = parse_qs(urlsplit(str(following)).query).get("page") or [str(page + 1)]
            try:
                next_page = int(numbers[0])
            except ValueError:
                raise self._shape_error(path, "a page with a numeric next page") from None
            if next_page <= page:
                raise self._shape_error(path, "a page whose next page moves forward")
            page = next_page

    def _rows(
        self, path: str, params: dict[str, Any], *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        for page, _ in self._pages(path, params, page_size=page_size):
            yield from page["results"]

    def _server_time(self, response: requests.Response) -> datetime:
        header = response.headers.get("Date")
        try:
            when = parsedate_to_datetime(header) if header else None
        except (TypeError, ValueError):
            when = None
        if when is None:
            raise BadResponseError(
                f"Paperless-ngx at {self.host} answered without a valid Date header, "
                "which the sync needs for its watermark: check the proxy in front of it"
            )
        return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


class _SeenPages:
    """What the consistency check of a listing needs of its pages: counts and ids only."""

    def __init__(self) -> None:
        self.counts: list[Any] = []
        self.sizes: list[int] = []
        self.ids = array("q")  # 8 bytes an id, rather than the rows

    def add(self, count: Any, ids: Sequence[int]) -> None:
        self.ids.extend(ids)
        self.counts.append(count)
        self.sizes.append(len(ids))


def _filename(response: requests.Response, fallback: str) -> str:
    disposition = response.headers.get("Content-Disposition", "")
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename*" and "''" in value:
            return unquote(value.split("''", 1)[1].strip('"'))
        if key.lower() == "filename" and value:
            return value.strip('"')
    return fallback
