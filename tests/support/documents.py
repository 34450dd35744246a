"""Build `IndexedDocument`s directly, for sink tests that need no Paperless-ngx."""

from __future__ import annotations

import hashlib
from typing import Any

from tasks.document import Access, IndexedDocument, Principal, Principals
from tasks.sinks.base import RunInfo

SOURCE = "main"


def make_doc(
    doc_id: int, title: str = "", text: str | None = None, **fields: Any
) -> IndexedDocument:
    """A public document with plausible defaults; any field can be overridden by name.

    `access` may be an `Access` or a dict; the fingerprints follow the content so that an
    edited document gets a new one, as `tasks/render.py` promises.
    """
    title = title or f"Document {doc_id}"
    values: dict[str, Any] = {
        "source_id": SOURCE,
        "doc_id": doc_id,
        "title": title,
        "text": f"# {title}\n\nBody of document {doc_id}." if text is None else text,
        "has_text": True,
        "created": "2024-01-15",
        "added": "2024-01-16T09:30:00+00:00",
        "modified": "2024-01-16T09:30:00+00:00",
        "access": Access(public=True),
        "url": f"http://paperless.test/documents/{doc_id}/details/",
    }
    values.update(fields)
    if isinstance(values["access"], dict):
        values["access"] = Access(**values["access"])
    digest = hashlib.sha256(repr(sorted(values.items(), key=lambda kv: kv[0])).encode())
    values.setdefault("fingerprint", "f-" + digest.hexdigest()[:16])
    values.setdefault("light_fingerprint", "l-" + digest.hexdigest()[16:32])
    return IndexedDocument(**values)


def private(*users: str, groups: tuple[str, ...] = (), unresolved: tuple[str, ...] = ()) -> Access:
    return Access(public=False, users=list(users), groups=list(groups), unresolved=list(unresolved))


def run_of(source_id: str = SOURCE, mode: str = "full") -> RunInfo:
    return RunInfo(run_id=f"run-{source_id}", source_id=source_id, mode=mode)


def principals(*users: Principal) -> Principals:
    return Principals(users=list(users))
