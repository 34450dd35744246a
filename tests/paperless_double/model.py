"""The state a Paperless-ngx double serves: users, groups, lookup objects, documents.

Plain mutable records; the double holds one lock around every read and write of them.
Documents keep their sharing as tuples (the empty tuple is shared, so 100,000 unshared
documents cost nothing extra) and their OCR text lazily: `content is None` means "the
generated text for (seed, id)", which keeps a 100,000-document corpus small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

LOOKUP_KINDS = ("tags", "correspondents", "document_types", "storage_paths", "custom_fields")


@dataclass(slots=True)
class User:
    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    token: str
    password: str
    is_superuser: bool = False
    groups: tuple[int, ...] = ()
    # API lists this user gets 403 on (e.g. "custom_fields"); users/groups for non-superusers.
    forbidden: frozenset[str] = frozenset()
    date_joined: datetime | None = None

    def may_list(self, endpoint: str) -> bool:
        return self.is_superuser or endpoint not in self.forbidden


@dataclass(slots=True)
class Group:
    id: int
    name: str


@dataclass(slots=True)
class Shares:
    """Owner and object permissions, the same for documents and owned lookup objects."""

    owner: int | None = None
    view_users: tuple[int, ...] = ()
    view_groups: tuple[int, ...] = ()
    change_users: tuple[int, ...] = ()
    change_groups: tuple[int, ...] = ()

    def visible_to(self, user: User) -> bool:
        if user.is_superuser or self.owner is None or self.owner == user.id:
            return True
        if user.id in self.view_users or user.id in self.change_users:
            return True
        return any(g in self.view_groups or g in self.change_groups for g in user.groups)

    def changeable_by(self, user: User) -> bool:
        if user.is_superuser or self.owner is None or self.owner == user.id:
            return True
        return user.id in self.change_users or any(g in self.change_groups for g in user.groups)

    def is_shared(self) -> bool:
        return bool(self.view_users or self.view_groups or self.change_users or self.change_groups)

    def permissions(self) -> dict[str, dict[str, list[int]]]:
        return {
            "view": {"users": list(self.view_users), "groups": list(self.view_groups)},
            "change": {"users": list(self.change_users), "groups": list(self.change_groups)},
        }


@dataclass(slots=True)
class LookupObject:
    """A tag, correspondent, document type, storage path or custom field.

    `attrs` holds the kind's own fields (color, parent, path, data_type, extra_data, ...).
    """

    kind: str
    id: int
    name: str
    shares: Shares = field(default_factory=Shares)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Note:
    id: int
    text: str
    created: datetime
    user: int


@dataclass(slots=True)
class Version:
    id: int
    added: datetime
    label: str | None
    checksum: str
    content: str | None = None


@dataclass(slots=True)
class Document:
    id: int
    title: str
    created: date
    modified: datetime
    added: datetime
    correspondent: int | None = None
    document_type: int | None = None
    storage_path: int | None = None
    tags: tuple[int, ...] = ()
    archive_serial_number: int | None = None
    original_file_name: str = ""
    archived_file_name: str | None = None
    shares: Shares = field(default_factory=Shares)
    notes: tuple[Note, ...] = ()
    custom_fields: tuple[tuple[int, Any], ...] = ()  # (field id, value)
    page_count: int | None = 1
    mime_type: str = "application/pdf"
    content: str | None = None  # None: generated from (seed, id)
    deleted_at: datetime | None = None
    versions: tuple[Version, ...] = ()  # added versions, newest last; the root is implicit
