"""Objects → JSON the way Paperless-ngx 3.0.5 (DRF) writes them, per API version.

Field order and value types follow `reference/paperless-samples/`. Version differences:
`created` is a date from API 9 (a date-time before), a note's `user` is an object from
API 8 (an id before). `fields=` keeps only the listed fields, so `full_perms=true` shows
`permissions` only when `fields` is absent or names it (as DRF's DynamicFieldsModelSerializer
does on the real server).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from tests.paperless_double.model import Document, LookupObject, Note, User
from tests.paperless_double.text import document_text

DOCUMENT_FIELDS = (
    "id", "correspondent", "document_type", "storage_path", "title", "content", "tags",
    "created", "created_date", "modified", "added", "deleted_at", "archive_serial_number",
    "original_file_name", "archived_file_name", "duplicate_documents", "owner",
    "user_can_change", "is_shared_by_requester", "permissions", "notes", "custom_fields",
    "page_count", "mime_type", "root_document", "versions",
)  # fmt: skip


@lru_cache(maxsize=1 << 18)
def fmt_datetime(value: datetime) -> str:
    """DRF's rendering: ISO 8601, microseconds only when non-zero, UTC as `Z`."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def fmt_created(value: date, api_version: int) -> str:
    return value.isoformat() if api_version >= 9 else f"{value.isoformat()}T00:00:00Z"


def slugify(name: str) -> str:
    """Django's slugify: ASCII-folded, lower case, words joined by hyphens."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_")


def encode(payload: Any) -> bytes:
    # Compact like DRF; lone surrogates (a bad-data fault) become \udXXX escapes.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "backslashreplace")


@dataclass
class View:
    """Who asks, in which API version, and how the documents are to be shaped."""

    user: User
    api_version: int
    users: dict[int, User]
    seed: int
    full_perms: bool = False
    fields: frozenset[str] | None = None
    bad: dict[int, frozenset[str]] | None = None  # doc id → bad-data fault kinds


def note_dict(note: Note, view: View) -> dict[str, Any]:
    author = view.users.get(note.user)
    user: Any = note.user
    if view.api_version >= 8:
        user = {
            "id": note.user,
            "username": author.username if author else "",
            "first_name": author.first_name if author else "",
            "last_name": author.last_name if author else "",
        }
    return {"id": note.id, "note": note.text, "created": fmt_datetime(note.created), "user": user}


def document_content(doc: Document, seed: int) -> str:
    for version in reversed(doc.versions):
        if version.content is not None:
            return version.content
    return document_text(seed, doc.id) if doc.content is None else doc.content


def _checksum(seed: int, doc_id: int) -> str:
    return hashlib.sha256(f"{seed}:{doc_id}".encode()).hexdigest()


def _versions(doc: Document, view: View) -> list[dict[str, Any]]:
    rows = [
        {
            "id": v.id,
            "added": fmt_datetime(v.added),
            "version_label": v.label,
            "checksum": v.checksum,
            "is_root": False,
        }
        for v in reversed(doc.versions)
    ]
    rows.append(
        {
            "id": doc.id,
            "added": fmt_datetime(doc.added),
            "version_label": None,
            "checksum": _checksum(view.seed, doc.id),
            "is_root": True,
        }
    )
    return rows


# Unshared objects all serialise to the same value; one shared dict saves 100,000 copies.
NO_SHARES: dict[str, dict[str, list[int]]] = {
    "view": {"users": [], "groups": []},
    "change": {"users": [], "groups": []},
}

GETTERS: dict[str, Callable[[Document, View], Any]] = {
    "id": lambda d, v: d.id,
    "correspondent": lambda d, v: d.correspondent,
    "document_type": lambda d, v: d.document_type,
    "storage_path": lambda d, v: d.storage_path,
    "title": lambda d, v: d.title,
    "content": lambda d, v: document_content(d, v.seed),
    "tags": lambda d, v: d.tags,  # a tuple: JSON writes it as an array
    "created": lambda d, v: fmt_created(d.created, v.api_version),
    "created_date": lambda d, v: d.created.isoformat(),
    "modified": lambda d, v: fmt_datetime(d.modified),
    "added": lambda d, v: fmt_datetime(d.added),
    "deleted_at": lambda d, v: fmt_datetime(d.deleted_at) if d.deleted_at else None,
    "archive_serial_number": lambda d, v: d.archive_serial_number,
    "original_file_name": lambda d, v: d.original_file_name,
    "archived_file_name": lambda d, v: d.archived_file_name,
    "duplicate_documents": lambda d, v: [],
    "owner": lambda d, v: d.shares.owner,
    "user_can_change": lambda d, v: d.shares.changeable_by(v.user),
    "is_shared_by_requester": lambda d, v: d.shares.owner == v.user.id and d.shares.is_shared(),
    "permissions": lambda d, v: d.shares.permissions() if d.shares.is_shared() else NO_SHARES,
    "notes": lambda d, v: [note_dict(n, v) for n in sorted(d.notes, key=lambda n: -n.id)],
    "custom_fields": lambda d, v: [{"value": value, "field": f} for f, value in d.custom_fields],
    "page_count": lambda d, v: d.page_count,
    "mime_type": lambda d, v: d.mime_type,
    "root_document": lambda d, v: None,
    "versions": _versions,
}


def document_field_names(view: View) -> list[str]:
    dropped = {"user_can_change", "is_shared_by_requester"} if view.full_perms else {"permissions"}
    names = [name for name in DOCUMENT_FIELDS if name not in dropped]
    if view.fields is not None:
        names = [name for name in names if name in view.fields]
    return names


def document_dicts(docs: Iterable[Document], view: View) -> list[dict[str, Any]]:
    names = document_field_names(view)
    getters = [(name, GETTERS[name]) for name in names]
    rows = [{name: get(doc, view) for name, get in getters} for doc in docs]
    if view.bad:
        for row in rows:
            kinds = view.bad.get(row.get("id", -1))
            if kinds:
                spoil(row, kinds)
    return rows


HUGE = ("Sehr große Datei. " * 64 + "\n") * 8700  # ~10 MB of text


SPOILERS: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
    "invalid_date": [("created", lambda _: "2023-02-30"), ("created_date", lambda _: "2023-02-30")],
    "invalid_modified": [("modified", lambda _: "yesterday at noon")],
    "unknown_tag": [("tags", lambda tags: [*tags, 9999])],
    "unknown_correspondent": [("correspondent", lambda _: 9998)],
    "unknown_document_type": [("document_type", lambda _: 9997)],
    "unknown_storage_path": [("storage_path", lambda _: 9996)],
    "unknown_custom_field": [("custom_fields", lambda cf: [*cf, {"value": "?", "field": 9995}])],
    "huge_content": [("content", lambda _: HUGE)],
    "nul_bytes": [
        ("content", lambda c: f"NUL\x00inside\x00{c}"),
        ("title", lambda t: f"Bad\x00{t}"),
    ],
    "lone_surrogate": [
        ("content", lambda c: f"broken \ud83d emoji \udc00 {c}"),
        ("title", lambda t: f"{t} \ud800"),
    ],
    "empty_title": [("title", lambda _: "")],
}


def spoil(row: dict[str, Any], kinds: frozenset[str]) -> None:
    """Apply bad-data faults to a serialised document (only to the fields it carries)."""
    for kind in sorted(kinds):
        for name, change in SPOILERS[kind]:
            if name in row:
                row[name] = change(row[name])


def _text_color(color: str) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return "#000000" if (0.299 * r + 0.587 * g + 0.114 * b) > 140 else "#ffffff"


def _owned(obj: LookupObject, view: View, row: dict[str, Any]) -> dict[str, Any]:
    row["owner"] = obj.shares.owner
    if view.full_perms:
        row["permissions"] = obj.shares.permissions()
    else:
        row["user_can_change"] = obj.shares.changeable_by(view.user)
    return row


def lookup_dict(
    obj: LookupObject,
    view: View,
    counts: dict[int, int],
    children: dict[int, list[LookupObject]] | None = None,
) -> dict[str, Any]:
    count = counts.get(obj.id, 0)
    if obj.kind == "custom_fields":
        return {
            "id": obj.id,
            "name": obj.name,
            "data_type": obj.attrs["data_type"],
            "extra_data": obj.attrs["extra_data"],
            "document_count": count,
        }
    row: dict[str, Any] = {"id": obj.id, "slug": slugify(obj.name), "name": obj.name}
    if obj.kind == "tags":
        row["color"] = obj.attrs["color"]
        row["text_color"] = _text_color(obj.attrs["color"])
    if obj.kind == "storage_paths":
        row["path"] = obj.attrs["path"]
    row.update(match="", matching_algorithm=0, is_insensitive=True)
    if obj.kind == "tags":
        row["is_inbox_tag"] = obj.attrs["is_inbox_tag"]
    row["document_count"] = count
    _owned(obj, view, row)
    if obj.kind == "tags":
        row["parent"] = obj.attrs["parent"]
        kids = (children or {}).get(obj.id, [])
        row["children"] = [lookup_dict(kid, view, counts, children) for kid in kids]
    return row


ADMIN_PERMISSIONS = [
    "documents.view_document", "documents.change_document", "documents.view_tag",
    "documents.view_customfield", "auth.view_user", "auth.view_group", "documents.view_note",
]  # fmt: skip
USER_PERMISSIONS = {
    "tags": "view_tag", "correspondents": "view_correspondent",
    "document_types": "view_documenttype", "storage_paths": "view_storagepath",
    "custom_fields": "view_customfield", "users": "view_user", "groups": "view_group",
}  # fmt: skip


def user_dict(user: User) -> dict[str, Any]:
    perms = ["view_document", "view_note"] + [
        perm for endpoint, perm in USER_PERMISSIONS.items() if endpoint not in user.forbidden
    ]
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "password": "**********",
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": fmt_datetime(user.date_joined) if user.date_joined else None,
        "is_staff": user.is_superuser,
        "is_active": True,
        "is_superuser": user.is_superuser,
        "groups": list(user.groups),
        "user_permissions": [] if user.is_superuser else perms,
        "inherited_permissions": ADMIN_PERMISSIONS if user.is_superuser else [],
        "is_mfa_enabled": False,
    }
