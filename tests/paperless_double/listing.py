"""The cheap document listing (`fields=` of the light fields) served fast at 100,000 documents.

Every sync lists all documents' light fields; building and encoding 100,000 rows anew each
time made the double, not the connector, the slow part of an incremental sync. So each
document's encoded row is kept with the values it was made from and reused while they are
the same, compared by value against a copy. A document whose custom fields hold a dict is
encoded anew every time, as are spoiled ones.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from tests.paperless_double.model import Document
from tests.paperless_double.serialise import GETTERS, View, document_field_names, spoil

# The fields whose values `_listed_state` covers; other field sets take the ordinary path.
CACHEABLE = frozenset(
    {
        "id", "correspondent", "document_type", "storage_path", "title", "tags", "modified",
        "archive_serial_number", "owner", "permissions", "custom_fields",
    }
)  # fmt: skip

# The same output as serialise.encode, without building an encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _encode(row: dict[str, Any]) -> bytes:
    return _ENCODER.encode(row).encode("utf-8", "backslashreplace")


def _listed_state(doc: Document) -> tuple[Any, ...] | None:
    """A copy of everything the cacheable fields are made of (None: cannot be copied cheaply).

    `tuple()` returns a tuple as it is and copies a list, so a list changed in place later
    no longer equals its copy here.
    """
    fields = doc.custom_fields
    for _, value in fields:
        if type(value) is not list and isinstance(value, list | dict):
            return None  # subclasses and dicts: rare, encoded anew each time
        if type(value) is list:
            fields = tuple((f, tuple(v) if type(v) is list else v) for f, v in fields)
            break
    shares = doc.shares
    return (
        doc.modified, doc.title, tuple(doc.tags), doc.correspondent, doc.document_type,
        doc.storage_path, doc.archive_serial_number, tuple(fields), shares.owner,
        tuple(shares.view_users), tuple(shares.view_groups), tuple(shares.change_users),
        tuple(shares.change_groups),
    )  # fmt: skip


class ListingCache:
    """Encoded rows per field list and document id, with the state they were made from."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, ...], dict[int, tuple[tuple[Any, ...], bytes]]] = {}
        self._lock = threading.Lock()

    def results(self, docs: Iterable[Document], view: View) -> bytes | None:
        """The JSON array of the documents' rows, or None when the fields are not cacheable."""
        names = tuple(document_field_names(view))
        if not CACHEABLE.issuperset(names):
            return None
        with self._lock:
            cache = self._rows.setdefault(names, {})
        getters = [(name, GETTERS[name]) for name in names]
        bad = view.bad or {}
        parts: list[bytes] = []
        for doc in docs:
            state = _listed_state(doc)
            found = cache.get(doc.id)
            if found is not None and found[0] == state and doc.id not in bad:
                parts.append(found[1])
                continue
            row = {name: get(doc, view) for name, get in getters}
            kinds = bad.get(doc.id)
            if kinds:
                spoil(row, kinds)
                parts.append(_encode(row))
                continue
            encoded = _encode(row)
            if state is not None:
                cache[doc.id] = (state, encoded)
            parts.append(encoded)
        return b"[" + b",".join(parts) + b"]"
