"""The server's limit: only the GET requests a full sync needs, at the connector's concurrency.

The same requests the connector sends (probe, the seven lookups, the light listing of every
document, then `id__in` pages), the pages by as many processes as the connector's cap on
requests in flight per Paperless-ngx server (one page at a time each, like the worker's
prefork pool), each body parsed as JSON and thrown away: no rendering, no sink, no Redis,
no Celery. What the connector achieves is compared with this.

With `--floor`, each page also gets the least work its sink cannot do without, and nothing
else (no rendering, no permissions, no change detection, no Redis, no Celery):

- `index`: the pages' titles and texts go into a bare SQLite FTS5 table with the local
  index's tokenizer, one durable transaction per page by one writer at a time (what
  searching them needs at the least);
- `omni`: every document is one `POST /sdk/content` of its text (the protocol has no batch
  upload), up to 8 at a time per page as the Omni sink sends them, and each page one
  `POST /sdk/events/batch`, to the connector-manager at BENCH_MANAGER_URL.

The floor's speed is the ceiling of any connector into that sink on this machine and
server, which tells whether a gap to the server's limit is the connector's or the sink's.

`python -m bench.server_limit --url URL [--concurrency N] [--page-size N] [--floor KIND]`
reads the token from BENCH_PAPERLESS_TOKEN and prints {"documents", "seconds", "requests",
"concurrency"}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import requests

from bench.procs import hold_while_measured
from config.settings import Settings
from tasks.paperless.client import LIGHT_FIELDS, LIGHT_PAGE_SIZE

TIMEOUT = (5, 60)
UPLOADS_PER_PAGE = 8  # tasks/sinks/omni.py sends a page's content uploads this many at a time
LOOKUPS = (
    "tags", "correspondents", "document_types", "storage_paths", "custom_fields", "users", "groups",
)  # fmt: skip


def shipped_concurrency() -> int:
    """The connector's default cap on requests in flight to one server."""
    return int(Settings.model_fields["max_concurrency_per_server"].default)


def shipped_page_size() -> int:
    return int(Settings.model_fields["page_size"].default)


class _Fetcher:
    """GETs with one session per thread (requests' Session is not documented thread-safe)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.local = threading.local()
        self.sessions: list[requests.Session] = []
        self.lock = threading.Lock()
        self.requests = 0

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        answer = self.session().get(f"{self.base}{path}", params=params, timeout=TIMEOUT)
        answer.raise_for_status()
        with self.lock:
            self.requests += 1
        return dict(orjson.loads(answer.content))  # as the connector parses them

    def session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # the environment read once, as the connector does
            session.headers["Authorization"] = f"Token {self.token}"
            session.headers["Accept"] = "application/json; version=10"
            self.local.session = session
            with self.lock:
                self.sessions.append(session)
        return session

    def close(self) -> None:
        for session in self.sessions:
            session.close()


def _all_pages(fetch: _Fetcher, path: str, **params: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = fetch.get(path, page=page, **params)
        results.extend(answer["results"])
        if not answer.get("next"):
            return results
        page += 1


def light_listing(fetch: _Fetcher) -> list[dict[str, Any]]:
    """Every document with the cheap fields and permissions, in the connector's pages."""
    return _all_pages(
        fetch,
        "/api/documents/",
        fields=",".join((*LIGHT_FIELDS, "permissions")),
        full_perms="true",
        page_size=LIGHT_PAGE_SIZE,
        ordering="id",
    )


def time_incremental_requests(base_url: str, token: str) -> dict[str, Any]:
    """How long the server alone takes to answer what a no-change incremental run asks.

    The probe and the lookups one after another, then the light listing, bodies parsed:
    the floor under the connector's time for an incremental run with nothing to fetch.
    """
    fetch = _Fetcher(base_url, token)
    started = time.monotonic()
    fetch.get("/api/documents/", page_size=1)
    for lookup in LOOKUPS:
        _all_pages(fetch, f"/api/{lookup}/", page_size=100_000)
    listing_started = time.monotonic()
    documents = len(light_listing(fetch))
    done = time.monotonic()
    fetch.close()
    return {
        "documents": documents,
        "seconds": done - started,
        "listing_seconds": done - listing_started,
        "requests": fetch.requests,
    }


class IndexFloor:
    """Titles and texts into a bare FTS5 table, one durable transaction per page."""

    def __init__(self, directory: Path) -> None:
        self.db = sqlite3.connect(directory / "floor.sqlite3", isolation_level=None, timeout=120)
        self.db.execute("PRAGMA synchronous = FULL")  # as the local index: durable per page

    @classmethod
    def create(cls, directory: Path) -> None:
        db = sqlite3.connect(directory / "floor.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(
            "CREATE VIRTUAL TABLE pages USING fts5(title, text, "
            "tokenize='unicode61 remove_diacritics 2')"
        )
        db.close()

    def take(self, documents: list[dict[str, Any]]) -> None:
        rows = [(str(doc.get("title") or ""), str(doc.get("content") or "")) for doc in documents]
        self.db.execute("BEGIN IMMEDIATE")  # one writer at a time, as in the local index
        self.db.executemany("INSERT INTO pages (title, text) VALUES (?, ?)", rows)
        self.db.execute("COMMIT")


class UploadFloor:
    """Per document one content upload, per page one event batch, to the manager.

    One session with a pool of kept-alive connections shared by the upload threads, as the
    Omni sink's manager client has, and the environment read once (`trust_env` off), as
    the connector's sessions do: the floor must not pay for what the sink does not.
    """

    def __init__(self, manager_url: str) -> None:
        self.manager = manager_url.rstrip("/")
        self.run_id = "floor"
        self.session = requests.Session()
        self.session.trust_env = False
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=UPLOADS_PER_PAGE)
        self.session.mount("http://", adapter)
        self.uploads = ThreadPoolExecutor(UPLOADS_PER_PAGE)

    def take(self, documents: list[dict[str, Any]]) -> None:
        def upload(doc: dict[str, Any]) -> dict[str, Any]:
            body = {
                "sync_run_id": self.run_id,
                "content": f"{doc.get('title') or ''}\n\n{doc.get('content') or ''}",
                "content_type": "text/plain",
            }
            answer = self._post("/sdk/content", body)
            return {
                "type": "document_created",
                "document_id": str(doc.get("id")),
                "content_id": answer.get("content_id"),
            }

        # One page at a time per process: the pool's width is the uploads in flight.
        events = list(self.uploads.map(upload, documents))
        self._post("/sdk/events/batch", {"sync_run_id": self.run_id, "events": events})

    def _post(self, path: str, body: Any) -> dict[str, Any]:
        answer = self.session.post(f"{self.manager}{path}", json=body, timeout=TIMEOUT)
        answer.raise_for_status()
        return dict(answer.json() or {})


# Each page process's own client and floor (set up by `_start_page_process`).
_process: dict[str, Any] = {}


def _start_page_process(
    base_url: str, token: str, floor: str | None, directory: str, manager_url: str | None
) -> None:
    fetch = _Fetcher(base_url, token)
    take: Callable[[list[dict[str, Any]]], None] | None = None
    if floor == "index":
        take = IndexFloor(Path(directory)).take
    elif floor == "omni":
        assert manager_url is not None
        take = UploadFloor(manager_url).take
    _process.update(fetch=fetch, take=take)


def _ready(_: int) -> int:
    return os.getpid()


def _fetch_page(page: list[int]) -> int:
    answer = _process["fetch"].get(
        "/api/documents/",
        id__in=",".join(map(str, page)),
        full_perms="true",
        page_size=len(page),
        ordering="id",
    )
    if _process["take"] is not None:
        _process["take"](answer["results"])
    return len(answer["results"])


def run_server_limit(
    fetch: _Fetcher, pool: ProcessPoolExecutor, page_size: int, concurrency: int
) -> dict[str, Any]:
    """Fetch everything a full sync fetches, the pages by `pool`'s processes; returns
    documents, seconds and requests."""
    started = time.monotonic()
    fetch.get("/api/documents/", page_size=1)
    for lookup in LOOKUPS:
        _all_pages(fetch, f"/api/{lookup}/", page_size=100_000)
    light = light_listing(fetch)
    ids = sorted(doc["id"] for doc in light)
    del light
    pages = [ids[i : i + page_size] for i in range(0, len(ids), page_size)]
    documents = sum(pool.map(_fetch_page, pages))
    seconds = time.monotonic() - started
    fetch.close()
    return {
        "documents": documents,
        "seconds": seconds,
        "requests": fetch.requests + len(pages),
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=shipped_concurrency())
    parser.add_argument("--page-size", type=int, default=shipped_page_size())
    parser.add_argument("--floor", choices=("index", "omni"), help="add a sink's least work")
    args = parser.parse_args()
    token = os.environ["BENCH_PAPERLESS_TOKEN"]
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as directory:
        if args.floor == "index":
            IndexFloor.create(Path(directory))
        start = (args.url, token, args.floor, directory, os.environ.get("BENCH_MANAGER_URL"))
        # One process per page in flight, as the worker's prefork pool: the pages' parsing
        # and the floors' work must not queue on one interpreter lock.
        pool = ProcessPoolExecutor(
            args.concurrency,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_page_process,
            initargs=start,
        )
        with pool:
            # Started before the clock, as the worker's processes are before a sync.
            list(pool.map(_ready, range(args.concurrency)))
            fetch = _Fetcher(args.url, token)
            result = run_server_limit(fetch, pool, args.page_size, args.concurrency)
            print(json.dumps(result), flush=True)
            hold_while_measured()  # the pool lives on: its CPU time is read meanwhile


if __name__ == "__main__":
    main()
