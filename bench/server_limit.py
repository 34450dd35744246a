"""The server's limit: only the GET requests a full sync needs, at the connector's concurrency.

The same requests the connector sends (probe, the seven lookups, the light listing of every
document, then `id__in` pages) with a thread pool as wide as the connector's cap on
requests in flight per Paperless-ngx server, each body parsed as JSON and thrown away: no
rendering, no sink, no Redis, no Celery. What the connector achieves is compared with this.

`python -m bench.server_limit --url URL [--concurrency N] [--page-size N]` reads the token
from BENCH_PAPERLESS_TOKEN and prints {"documents", "seconds", "requests", "concurrency"}.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from bench.procs import hold_while_measured
from config.settings import Settings

TIMEOUT = (5, 60)
LOOKUPS = (
    "tags", "correspondents", "document_types", "storage_paths", "custom_fields", "users", "groups",
)  # fmt: skip
try:
    from tasks.paperless.client import LIGHT_FIELDS
except ImportError:  # the client is written in parallel; the contract fixes the fields
    LIGHT_FIELDS = (
        "id", "modified", "title", "tags", "correspondent", "document_type", "storage_path",
        "owner", "custom_fields", "archive_serial_number",
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
        session = getattr(self.local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Token {self.token}"
            session.headers["Accept"] = "application/json; version=10"
            self.local.session = session
            with self.lock:
                self.sessions.append(session)
        answer = session.get(f"{self.base}{path}", params=params, timeout=TIMEOUT)
        answer.raise_for_status()
        with self.lock:
            self.requests += 1
        return dict(answer.json())

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
    """Every document with the cheap fields, as the connector lists them on every run."""
    return _all_pages(
        fetch,
        "/api/documents/",
        fields=",".join(LIGHT_FIELDS),
        full_perms="true",
        page_size=100_000,
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


def run_server_limit(base_url: str, token: str, concurrency: int, page_size: int) -> dict[str, Any]:
    """Fetch everything a full sync fetches; returns documents, seconds and requests."""
    fetch = _Fetcher(base_url, token)
    started = time.monotonic()
    fetch.get("/api/documents/", page_size=1)
    for lookup in LOOKUPS:
        _all_pages(fetch, f"/api/{lookup}/", page_size=100_000)
    light = light_listing(fetch)
    ids = sorted(doc["id"] for doc in light)
    del light
    pages = [ids[i : i + page_size] for i in range(0, len(ids), page_size)]

    def fetch_page(page: list[int]) -> int:
        answer = fetch.get(
            "/api/documents/",
            id__in=",".join(map(str, page)),
            full_perms="true",
            page_size=len(page),
            ordering="id",
        )
        return len(answer["results"])

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        documents = sum(pool.map(fetch_page, pages))
    seconds = time.monotonic() - started
    fetch.close()
    return {
        "documents": documents,
        "seconds": seconds,
        "requests": fetch.requests,
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=shipped_concurrency())
    parser.add_argument("--page-size", type=int, default=shipped_page_size())
    args = parser.parse_args()
    token = os.environ["BENCH_PAPERLESS_TOKEN"]
    result = run_server_limit(args.url, token, args.concurrency, args.page_size)
    print(json.dumps(result), flush=True)
    hold_while_measured()


if __name__ == "__main__":
    main()
