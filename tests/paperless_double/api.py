"""The REST API's answers: one authenticated GET → status, headers and JSON body.

Everything that decides *what* Paperless-ngx 3.0.5 answers lives here (routing, version
negotiation, visibility, filters, ordering, pagination); `server.py` only moves bytes and
applies faults. `answer` takes the double's lock while it reads the corpus.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import chain
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from tests.paperless_double.listing import ListingCache
from tests.paperless_double.model import LOOKUP_KINDS, Document, LookupObject, User
from tests.paperless_double.serialise import (
    View,
    document_content,
    document_dicts,
    encode,
    lookup_dict,
    note_dict,
    user_dict,
)

if TYPE_CHECKING:
    from tests.paperless_double.double import PaperlessDouble

MAX_PAGE_SIZE = 100_000
DEFAULT_PAGE_SIZE = 25
FORBIDDEN = {"detail": "You do not have permission to perform this action."}


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: Any, **headers: str) -> Reply:
    return Reply(status, encode(payload), headers=dict(headers))


def html_reply(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), "text/html; charset=utf-8")


@dataclass
class Request:
    """What the API layer needs of one HTTP request."""

    method: str
    path: str  # the API path, prefix removed: /api/documents/
    query: dict[str, str]
    base: str  # scheme, host and prefix: http://127.0.0.1:8000/paperless
    accept: str | None
    user: User | None


class BadRequest(Exception):
    def __init__(self, payload: dict[str, list[str]]) -> None:
        super().__init__(str(payload))
        self.payload = payload


def negotiate(accept: str | None, supported: frozenset[int]) -> int | None:
    """The API version asked for in Accept, the newest without one, None when unsupported."""
    match = re.search(r"version\s*=\s*([^;,\s]+)", accept or "")
    if match is None:
        return max(supported)
    try:
        version = int(match.group(1))
    except ValueError:
        return None
    return version if version in supported else None


DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


def parse_datetime(name: str, text: str) -> datetime:
    """Django's lenient ISO parsing; '+00:00' sent unencoded arrives as ' 00:00' and fails."""
    match = DATETIME.match(text)
    if match is None:
        raise BadRequest({name: ["Enter a valid date/time."]})
    year, month, day, hour, minute, second, fraction, tz = match.groups()
    tzinfo: timezone = UTC
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        tzinfo = timezone(sign * offset)
    try:
        return datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
            int((fraction or "0").ljust(6, "0")), tzinfo=tzinfo,
        )  # fmt: skip
    except ValueError:
        raise BadRequest({name: ["Enter a valid date/time."]}) from None


def parse_ids(name: str, text: str) -> set[int]:
    try:
        return {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise BadRequest({name: ["Enter a whole number."]}) from None


def document_filter(query: dict[str, str]) -> Callable[[Document], bool] | None:
    """One predicate for every filter in the query (unknown parameters are ignored); None
    when nothing filters."""
    checks: list[Callable[[Document], bool]] = []
    for name, value in query.items():
        if value == "":  # django-filter skips empty values
            continue
        if name in ("id__in", "id"):
            ids = parse_ids(name, value)
            checks.append(lambda d, ids=ids: d.id in ids)  # type: ignore[misc]
        elif name in ("modified__gt", "modified__gte", "modified__lt", "added__gt", "added__lt"):
            moment = parse_datetime(name, value)
            attr, op = name.split("__")
            compare: Callable[[datetime, datetime], bool] = {
                "gt": lambda a, b: a > b,
                "gte": lambda a, b: a >= b,
                "lt": lambda a, b: a < b,
            }[op]
            checks.append(
                lambda d, a=attr, c=compare, m=moment: c(getattr(d, a), m)  # type: ignore[misc]
            )
        elif name == "tags__id__in":
            ids = parse_ids(name, value)
            checks.append(lambda d, ids=ids: not ids.isdisjoint(d.tags))  # type: ignore[misc]
        elif name in ("correspondent__id__in", "document_type__id__in", "storage_path__id__in"):
            ids = parse_ids(name, value)
            attr = name.split("__")[0]
            checks.append(lambda d, a=attr, ids=ids: getattr(d, a) in ids)  # type: ignore[misc]
        elif name == "owner__id__in":
            ids = parse_ids(name, value)
            checks.append(lambda d, ids=ids: d.shares.owner in ids)  # type: ignore[misc]
        elif name == "custom_fields__id__in":
            ids = parse_ids(name, value)
            checks.append(
                lambda d, ids=ids: any(f in ids for f, _ in d.custom_fields)  # type: ignore[misc]
            )
    if not checks:
        return None
    return lambda doc: all(check(doc) for check in checks)


ORDERINGS: dict[str, Callable[[Document], Any]] = {
    "id": attrgetter("id"),
    "modified": attrgetter("modified", "id"),
    "created": attrgetter("created", "id"),
    "added": attrgetter("added", "id"),
    "title": lambda d: (d.title.casefold(), d.id),
    "archive_serial_number": lambda d: (d.archive_serial_number or 0, d.id),
}


def sort_key(ordering: str | None) -> tuple[Callable[[Document], Any], bool]:
    """The key of an `ordering` parameter and whether it is descending."""
    name = (ordering or "-created").strip()
    key = ORDERINGS.get(name.lstrip("-"))
    if key is None:  # DRF ignores an unknown ordering field
        name, key = "-created", ORDERINGS["created"]
    return key, name.startswith("-")


def order_documents(docs: list[Document], ordering: str | None) -> list[Document]:
    key, descending = sort_key(ordering)
    return sorted(docs, key=key, reverse=descending)


@dataclass
class Page:
    items: list[Any]
    count: int
    next: str | None
    previous: str | None


def page_url(request: Request, page: int | None) -> str:
    # DRF's replace_query_param / remove_query_param: sorted parameters, page 1 has none.
    params = {k: v for k, v in request.query.items() if k != "page"}
    if page is not None:
        params["page"] = str(page)
    query = urlencode(sorted(params.items()))
    return f"{request.base}{request.path}" + (f"?{query}" if query else "")


def page_window(request: Request, count: int) -> tuple[int, int, int]:
    """(page number, first index, page size) of a list of `count` items, or PageNotFound."""
    try:
        size = int(request.query.get("page_size", DEFAULT_PAGE_SIZE))
        size = min(size, MAX_PAGE_SIZE) if size > 0 else DEFAULT_PAGE_SIZE
    except ValueError:
        size = DEFAULT_PAGE_SIZE
    try:
        number = int(request.query.get("page", "1"))
    except ValueError:
        raise PageNotFound from None
    pages = max(1, -(-count // size))
    if number < 1 or number > pages:
        raise PageNotFound
    return number, (number - 1) * size, size


def make_page(items: list[Any], count: int, number: int, size: int, request: Request) -> Page:
    last = max(1, -(-count // size))
    return Page(
        items=items,
        count=count,
        next=page_url(request, number + 1) if number < last else None,
        previous=page_url(request, None if number == 2 else number - 1) if number > 1 else None,
    )


def paginate(items: list[Any], request: Request) -> Page:
    number, start, size = page_window(request, len(items))
    return make_page(items[start : start + size], len(items), number, size, request)


def paginate_ordered(docs: list[Document], request: Request, ordering: str | None) -> Page:
    """`paginate(order_documents(docs, ordering), request)`, sorting only what the page needs
    when it is a small part of the list (the probe's page_size=1 among 100,000)."""
    number, start, size = page_window(request, len(docs))
    key, descending = sort_key(ordering)
    end = start + size
    if end * 4 < len(docs):  # keys are unique (they end in the id): the same order as sorted
        pick = heapq.nlargest if descending else heapq.nsmallest
        window = pick(end, docs, key=key)[start:]
    else:
        window = sorted(docs, key=key, reverse=descending)[start:end]
    return make_page(window, len(docs), number, size, request)


class PageNotFound(Exception):
    pass


def list_payload(
    page: Page, results: list[dict[str, Any]], all_ids: Iterable[int] | None, version: int
) -> dict[str, Any]:
    payload: dict[str, Any] = {"count": page.count, "next": page.next, "previous": page.previous}
    if version <= 9 and all_ids is not None:
        payload["all"] = list(all_ids)
    payload["results"] = results
    return payload


class Api:
    """Answers authenticated GETs from the double's state (call with its lock held)."""

    def __init__(self, double: PaperlessDouble) -> None:
        self.double = double
        self.listing = ListingCache()
        self._by_id: dict[tuple[Any, ...], tuple[tuple[int, int], list[Document]]] = {}

    def view(self, request: Request, version: int, *, documents: bool = False) -> View:
        assert request.user is not None
        fields = request.query.get("fields") if documents else None
        return View(
            user=request.user,
            api_version=version,
            users=self.double.corpus.users,
            seed=self.double.corpus.seed,
            full_perms=request.query.get("full_perms", "").lower() in ("true", "1", "yes"),
            fields=frozenset(f.strip() for f in fields.split(",")) if fields else None,
            bad=self.double.faults.bad() or None,
        )

    def answer(self, request: Request, version: int) -> Reply:
        try:
            if request.path == "/api/documents/":
                return self.documents(request, version)  # takes the lock itself
            with self.double.lock:
                return self.route(request, version)
        except BadRequest as error:
            return json_reply(400, error.payload)
        except PageNotFound:
            return json_reply(404, {"detail": "Invalid page."})

    def route(self, request: Request, version: int) -> Reply:
        path = request.path
        if path == "/api/trash/":
            return self.trash(request, version)
        match = re.fullmatch(r"/api/documents/(\d+)/(notes/|download/)?", path)
        if match:
            doc_id, sub = int(match.group(1)), match.group(2)
            if sub == "notes/":
                return self.notes(request, version, doc_id)
            if sub == "download/":
                return self.download(request, doc_id)
            return self.document(request, version, doc_id)
        match = re.fullmatch(r"/api/(\w+)/(?:(\d+)/)?", path)
        if match and match.group(1) in (*LOOKUP_KINDS, "users", "groups"):
            detail = int(match.group(2)) if match.group(2) else None
            return self.lookups(request, version, match.group(1), detail)
        return html_reply(404, "<h1>Not Found</h1><p>The requested resource was not found.</p>")

    def visible(self, user: User, ids: set[int] | None = None) -> list[Document]:
        documents = self.double.corpus.documents
        candidates: Iterable[Document | None] = (
            documents.values() if ids is None else (documents.get(i) for i in ids)
        )
        if user.is_superuser:
            return [doc for doc in candidates if doc is not None and doc.deleted_at is None]
        return [
            doc
            for doc in candidates
            if doc is not None and doc.deleted_at is None and doc.shares.visible_to(user)
        ]

    def visible_by_id(self, user: User) -> list[Document]:
        """`visible(user)` in id order, kept while nothing changed who sees which document.

        A real server pages a listing with an indexed query; without this, every page of a
        100,000-document listing cost the double a scan and a sort of all of them (80 % of
        its time in an incremental sync). Do not change the list: it is shared.
        """
        key = (user.id, user.is_superuser, user.groups)
        stamp = (self.double.visibility, len(self.double.corpus.documents))
        found = self._by_id.get(key)
        if found is not None and found[0] == stamp:
            return found[1]
        if len(self._by_id) > 16:
            self._by_id.clear()
        docs = order_documents(self.visible(user), "id")
        self._by_id[key] = (stamp, docs)
        return docs

    def documents(self, request: Request, version: int) -> Reply:
        assert request.user is not None
        keep = document_filter(request.query)
        ids: set[int] | None = None
        for name in ("id__in", "id"):
            if request.query.get(name):  # a page fetch: look the ids up instead of scanning
                wanted = parse_ids(name, request.query[name]) - self.double.faults.vanished()
                ids = wanted if ids is None else ids & wanted
        ordering = request.query.get("ordering")
        with self.double.lock:
            if ids is None and (ordering or "").strip() == "id":  # the connector's listing
                docs = self.visible_by_id(request.user)
                if keep is not None:
                    docs = [doc for doc in docs if keep(doc)]
                page = paginate(docs, request)
            else:
                docs = self.visible(request.user, ids)
                if keep is not None:
                    docs = [doc for doc in docs if keep(doc)]
                if version <= 9:  # `all` lists every match, in order
                    docs = order_documents(docs, ordering)
                    page = paginate(docs, request)
                else:
                    page = paginate_ordered(docs, request, ordering)
        # Serialised outside the lock: a 100,000-document listing must not stall the others.
        view = self.view(request, version, documents=True)
        all_ids = (doc.id for doc in docs) if version <= 9 else None
        listed = self.listing.results(page.items, view)
        if listed is None:
            results = document_dicts(page.items, view)
            return json_reply(200, list_payload(page, results, all_ids, version))
        head = encode(list_payload(page, [], all_ids, version))  # ends in "results":[]}
        return Reply(200, head[: -len(b"[]}")] + listed + b"}")

    def trash(self, request: Request, version: int) -> Reply:
        user = request.user
        assert user is not None
        docs = [
            doc
            for doc in self.double.corpus.documents.values()
            if doc.deleted_at is not None
            and (user.is_superuser or doc.shares.owner in (None, user.id))
        ]
        docs.sort(key=lambda d: (d.deleted_at, d.id), reverse=True)
        page = paginate(docs, request)
        results = document_dicts(page.items, self.view(request, version, documents=True))
        return json_reply(200, list_payload(page, results, (d.id for d in docs), version))

    def _find(self, request: Request, doc_id: int) -> Document | None:
        doc = self.double.corpus.documents.get(doc_id)
        if doc is None or doc.deleted_at is not None or doc_id in self.double.faults.vanished():
            return None
        return doc

    def document(self, request: Request, version: int, doc_id: int) -> Reply:
        assert request.user is not None
        doc = self._find(request, doc_id)
        if doc is None or not doc.shares.visible_to(request.user):
            return json_reply(404, {"detail": "No Document matches the given query."})
        view = self.view(request, version, documents=True)
        return json_reply(200, document_dicts([doc], view)[0])

    def notes(self, request: Request, version: int, doc_id: int) -> Reply:
        assert request.user is not None
        doc = self._find(request, doc_id)
        if doc is None:
            return json_reply(404, {"detail": "No Document matches the given query."})
        if not doc.shares.visible_to(request.user):
            return html_reply(403, "Insufficient permissions to view notes")
        view = self.view(request, version)
        notes = sorted(doc.notes, key=lambda n: (n.created, n.id), reverse=True)
        return json_reply(200, [note_dict(note, view) for note in notes])

    def download(self, request: Request, doc_id: int) -> Reply:
        assert request.user is not None
        doc = self._find(request, doc_id)
        if doc is None:
            return json_reply(404, {"detail": "No Document matches the given query."})
        if not doc.shares.visible_to(request.user):
            return html_reply(403, "Insufficient permissions")
        original = request.query.get("original", "").lower() in ("true", "1")
        if original or doc.archived_file_name is None:
            name, mime = doc.original_file_name, doc.mime_type
        else:
            name, mime = doc.archived_file_name, "application/pdf"
        body = file_bytes(doc, self.double.corpus.seed, mime)
        return Reply(200, body, mime, {"Content-Disposition": content_disposition(name)})

    def lookups(self, request: Request, version: int, kind: str, detail: int | None) -> Reply:
        user = request.user
        assert user is not None
        if not user.may_list(kind):
            return json_reply(403, FORBIDDEN)
        view = self.view(request, version)
        corpus = self.double.corpus
        rows: list[dict[str, Any]]
        if kind == "users":
            users = sorted(corpus.users.values(), key=lambda u: u.username)
            rows = [user_dict(u) for u in users]
            ids = [u.id for u in users]
        elif kind == "groups":
            groups = sorted(corpus.groups.values(), key=lambda g: g.name.casefold())
            rows = [{"id": g.id, "name": g.name, "permissions": []} for g in groups]
            ids = [g.id for g in groups]
        else:
            objects = sorted(
                (
                    o
                    for o in corpus.lookups[kind].values()
                    if kind == "custom_fields" or o.shares.visible_to(user)
                ),
                key=lambda o: (o.name.casefold(), o.id),
            )
            counts = self.document_counts(user, kind)
            children: dict[int, list[LookupObject]] = {}
            for obj in objects:
                if kind == "tags" and obj.attrs.get("parent") is not None:
                    children.setdefault(obj.attrs["parent"], []).append(obj)
            rows = [lookup_dict(o, view, counts, children) for o in objects]
            ids = [o.id for o in objects]
        if detail is not None:
            for row in rows:
                if row["id"] == detail:
                    return json_reply(200, row)
            return json_reply(404, {"detail": "No object matches the given query."})
        if "id__in" in request.query:
            wanted = parse_ids("id__in", request.query["id__in"])
            keep = [i for i, row in enumerate(rows) if row["id"] in wanted]
            rows, ids = [rows[i] for i in keep], [ids[i] for i in keep]
        page = paginate(rows, request)
        payload = list_payload(page, page.items, ids, version)
        if kind == "tags":
            payload["display_count"] = page.count
        return json_reply(200, payload)

    def document_counts(self, user: User, kind: str) -> Counter[int]:
        docs = self.visible(user)
        if kind == "tags":
            return Counter(chain.from_iterable(map(attrgetter("tags"), docs)))
        if kind == "custom_fields":
            pairs = chain.from_iterable(map(attrgetter("custom_fields"), docs))
            return Counter(map(itemgetter(0), pairs))  # (field id, value) pairs
        attribute = attrgetter(kind[:-1])  # correspondents → correspondent, ...
        counts = Counter(map(attribute, docs))
        counts.pop(None, None)
        return counts


def file_bytes(doc: Document, seed: int, mime: str) -> bytes:
    """A small stand-in for the stored file, different per document and per kind."""
    text = document_content(doc, seed)[:400]
    if mime == "application/pdf":
        return f"%PDF-1.4\n% paperless-double document {doc.id}\n{text}\n%%EOF\n".encode()
    return f"paperless-double original {doc.id} ({mime})\n{text}\n".encode()


def content_disposition(filename: str) -> str:
    # Django's content_disposition_header: quoted ASCII, else RFC 5987 UTF-8.
    try:
        filename.encode("ascii")
    except UnicodeEncodeError:
        return f"attachment; filename*=utf-8''{quote(filename)}"
    escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
    return f'attachment; filename="{escaped}"'
