"""The sequential baseline: a full sync the way Omni's own Paperless connector does it.

Written from the behaviour in omni-protocol.md §4, only as a reference to measure against;
it is not part of the product. One request at a time: the sync-config, a probe, the lookup
tables, then `GET /api/documents/?ordering=modified&page_size=100` page after page, and per
document one `POST /sdk/content` and one `POST /sdk/sync/{id}/scanned` (count 1), events
flushed in batches of 500, the checkpoint `{"last_sync_at": <start>}` saved every 50
documents, and `complete` at the end. The probe is `GET /api/documents/?page_size=1`
rather than the released `GET /api/` (which current Paperless-ngx answers with a 302), so
that it runs at all.

`python -m bench.baseline --manager URL --source ID --run ID` prints {"documents", "seconds"}.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

import requests

from bench.procs import hold_while_measured

TIMEOUT = (5, 60)
PAGE_SIZE = 100
EVENT_BATCH = 500
CHECKPOINT_EVERY = 50
CONTENT_LIMIT = 200_000
LOOKUPS = ("tags", "correspondents", "document_types", "storage_paths", "custom_fields")


def _get(session: requests.Session, url: str, **params: Any) -> dict[str, Any]:
    answer = session.get(url, params=params or None, timeout=TIMEOUT)
    answer.raise_for_status()
    return dict(answer.json())


def _names(session: requests.Session, base: str, lookup: str) -> dict[int, str]:
    names: dict[int, str] = {}
    url: str | None = f"{base}/api/{lookup}/?page_size={PAGE_SIZE}"
    while url:
        page = _get(session, url)
        names.update({item["id"]: item["name"] for item in page["results"]})
        url = page.get("next")
    return names


def _event(doc: dict[str, Any], content_id: str, ctx: dict[str, Any]) -> dict[str, Any]:
    names = ctx["names"]
    attributes: dict[str, Any] = {"source_type": "paperless_ngx"}
    if doc.get("correspondent") is not None:
        attributes["correspondent"] = names["correspondents"].get(doc["correspondent"])
    if doc.get("document_type") is not None:
        attributes["document_type"] = names["document_types"].get(doc["document_type"])
    attributes["tags"] = [names["tags"].get(tag) for tag in doc.get("tags") or []]
    for field in doc.get("custom_fields") or []:
        # As released: raw values, select option ids and document-link lists included.
        name = names["custom_fields"].get(field["field"], str(field["field"]))
        attributes[name] = str(field["value"])
    return {
        "type": "document_created",
        "sync_run_id": ctx["run_id"],
        "source_id": ctx["source_id"],
        "document_id": f"paperless:{ctx['source_id']}:{doc['id']}",
        "content_id": content_id,
        "metadata": {
            "title": doc.get("title") or "",
            "created_at": f"{doc['created'][:10]}T00:00:00Z" if doc.get("created") else None,
            "updated_at": doc.get("modified"),
            "url": f"{ctx['base_url']}/documents/{doc['id']}/details/",
        },
        "permissions": {"public": True, "users": [], "groups": []},
        "attributes": attributes,
    }


def _content(doc: dict[str, Any], names: dict[str, dict[int, str]]) -> str:
    tags = ", ".join(names["tags"].get(tag, "") for tag in doc.get("tags") or [])
    text = f"{doc.get('title') or ''}\nTags: {tags}\n\n{doc.get('content') or ''}"
    return text[:CONTENT_LIMIT]


def run_baseline(manager_url: str, source_id: str, run_id: str) -> dict[str, Any]:
    """One full sequential sync; returns the number of documents and the wall time."""
    started = time.monotonic()
    last_sync_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    manager = requests.Session()
    paperless = requests.Session()
    config = _get(manager, f"{manager_url}/sdk/source/{source_id}/sync-config")
    base = str(config["config"]["base_url"]).rstrip("/")
    paperless.headers["Authorization"] = f"Token {config['credentials']['api_key']}"
    _get(paperless, f"{base}/api/documents/", page_size=1)
    names = {lookup: _names(paperless, base, lookup) for lookup in LOOKUPS}
    ctx = {"names": names, "run_id": run_id, "source_id": source_id, "base_url": base}
    sync = f"{manager_url}/sdk/sync/{run_id}"

    def post(url: str, body: Any) -> dict[str, Any]:
        answer = manager.post(url, json=body, timeout=TIMEOUT)
        answer.raise_for_status()
        return dict(answer.json() or {})

    def flush(events: list[dict[str, Any]]) -> None:
        if events:
            body = {"sync_run_id": run_id, "source_id": source_id, "events": events}
            post(f"{manager_url}/sdk/events/batch", body)
            events.clear()

    events: list[dict[str, Any]] = []
    done = 0
    url: str | None = f"{base}/api/documents/?ordering=modified&page_size={PAGE_SIZE}"
    while url:
        page = _get(paperless, url)
        for doc in page["results"]:
            body = {"sync_run_id": run_id, "content": _content(doc, names)}
            content = post(f"{manager_url}/sdk/content", {**body, "content_type": "text/plain"})
            post(f"{sync}/scanned", {"count": 1})
            events.append(_event(doc, str(content["content_id"]), ctx))
            if len(events) >= EVENT_BATCH:
                flush(events)
            done += 1
            if done % CHECKPOINT_EVERY == 0:
                manager.put(
                    f"{sync}/checkpoint", json={"last_sync_at": last_sync_at}, timeout=TIMEOUT
                )
        url = page.get("next")
    flush(events)
    manager.put(f"{sync}/checkpoint", json={"last_sync_at": last_sync_at}, timeout=TIMEOUT)
    post(f"{sync}/complete", {"documents_scanned": done, "documents_updated": done})
    manager.close()
    paperless.close()
    return {"documents": done, "seconds": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manager", required=True)
    parser.add_argument("--source", default="bench")
    parser.add_argument("--run", default="baseline-run")
    args = parser.parse_args()
    print(json.dumps(run_baseline(args.manager, args.source, args.run)), flush=True)
    hold_while_measured()


if __name__ == "__main__":
    main()
