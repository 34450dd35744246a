"""Pydantic models of the Paperless-ngx API responses a sync reads, tolerant of API 7 to 10.

Version differences absorbed here: `created` is a date from API 9 (a date-time before; both
become `YYYY-MM-DD`), a note's `user` is an object from API 8 (an id before), select options
are `{id, label}` objects from API 7 (plain strings before). Unknown fields are ignored and
optional ones may be missing (the light listing carries only a few fields).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The cheap listing's fields: enough to notice renames, re-tags and permission changes.
LIGHT_FIELDS = (
    "id",
    "modified",
    "title",
    "tags",
    "correspondent",
    "document_type",
    "storage_path",
    "owner",
    "custom_fields",
    "archive_serial_number",
)


class DocumentDataError(ValueError):
    """A document's data cannot be used; the message names the document and the field."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PermissionSet(_Lenient):
    users: list[int] = Field(default_factory=list)
    groups: list[int] = Field(default_factory=list)


class Permissions(_Lenient):
    view: PermissionSet = Field(default_factory=PermissionSet)
    change: PermissionSet = Field(default_factory=PermissionSet)


class NoteUser(_Lenient):
    id: int
    username: str = ""
    first_name: str = ""
    last_name: str = ""


class Note(_Lenient):
    id: int | None = None
    note: str = ""
    created: datetime | None = None
    user: NoteUser | int | None = None  # an object from API 8, a bare id before


class CustomFieldInstance(_Lenient):
    field: int
    value: Any = None


class Document(_Lenient):
    id: int
    title: str | None = None
    content: str | None = None
    tags: list[int] = Field(default_factory=list)
    correspondent: int | None = None
    document_type: int | None = None
    storage_path: int | None = None
    created: str | None = None  # normalised to YYYY-MM-DD
    modified: datetime | None = None
    added: datetime | None = None
    archive_serial_number: int | None = None
    original_file_name: str | None = None
    archived_file_name: str | None = None
    mime_type: str | None = None
    page_count: int | None = None
    owner: int | None = None
    permissions: Permissions | None = None  # only with full_perms=true
    notes: list[Note] = Field(default_factory=list)
    custom_fields: list[CustomFieldInstance] = Field(default_factory=list)

    @field_validator("created", mode="before")
    @classmethod
    def _created_as_date(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if isinstance(value, datetime):
            return value.date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
        if not isinstance(value, str):
            raise ValueError(f"expected a date, got {value!r}")
        # API 9+ sends a date; older APIs a date-time in the server's time zone, whose
        # calendar day is the document's date.
        try:
            if len(value) == 10:
                return date.fromisoformat(value).isoformat()
            return datetime.fromisoformat(value.replace("Z", "+00:00")).date().isoformat()
        except ValueError:
            raise ValueError(f"{value!r} is not a date") from None


def parse_document(raw: dict[str, Any]) -> Document:
    """Validate one document dict (full or light) or raise DocumentDataError."""
    if not isinstance(raw, dict):
        raise DocumentDataError(f"a document is not a JSON object but {type(raw).__name__}")
    try:
        return Document.model_validate(raw)
    except ValidationError as exc:
        raise DocumentDataError(_describe(exc, raw.get("id"))) from None


def _describe(exc: ValidationError, doc_id: Any) -> str:
    first = exc.errors()[0]
    # Drop the union members pydantic adds to the location (e.g. notes.0.user.NoteUser).
    parts = [str(p) for p in first["loc"] if isinstance(p, int) or str(p).islower()]
    field = ".".join(p for p in parts if p not in _TYPE_NAMES) or "document"
    value = repr(first.get("input"))
    shown = value if len(value) <= 80 else value[:77] + "..."
    message = str(first["msg"])
    if message.startswith("Value error, "):  # our own validators already show the value
        detail = message.removeprefix("Value error, ")
    else:
        detail = f"{shown}: {message[:1].lower()}{message[1:]}"
    who = f"document {doc_id}" if doc_id is not None else "a document without id"
    return f"{who} has an invalid {field} ({detail}); fix it in Paperless-ngx"


_TYPE_NAMES = frozenset({"int", "str", "float", "bool", "list", "dict", "none"})


def utc_rfc3339(value: datetime) -> str:
    """An aware RFC 3339 string in UTC ending in Z (naive times are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Lookups. Only the fields the sync reads; the dicts in LookupSnapshot keep what came.


class SelectOption(_Lenient):
    id: str | int
    label: str


class CustomField(_Lenient):
    id: int
    name: str
    data_type: str
    extra_data: dict[str, Any] | None = None

    def select_label(self, value: Any) -> str | None:
        """The label of a select value: an option id (API 7+) or an index (older)."""
        options = (self.extra_data or {}).get("select_options") or []
        for position, option in enumerate(options):
            if isinstance(option, dict):
                if option.get("id") == value or (
                    isinstance(value, int) and not isinstance(value, bool) and position == value
                ):
                    return str(option.get("label", ""))
            elif isinstance(value, int) and not isinstance(value, bool) and position == value:
                return str(option)
        return None

    @property
    def default_currency(self) -> str | None:
        currency = (self.extra_data or {}).get("default_currency")
        return str(currency) if currency else None


class User(_Lenient):
    id: int
    username: str = ""
    email: str | None = None
    first_name: str = ""
    last_name: str = ""
    is_superuser: bool = False
    groups: list[int] = Field(default_factory=list)

    @property
    def display_name(self) -> str:
        full = f"{self.first_name or ''} {self.last_name or ''}".strip()
        return full or self.username
