"""What a sink receives: one Paperless-ngx document, enriched and rendered.

This is the boundary between reading Paperless-ngx (`tasks/paperless/`, `tasks/render.py`)
and writing somewhere (`tasks/sinks/`). Everything here is plain data: names are already
resolved, permissions already mapped to e-mail addresses and group keys.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Access(BaseModel):
    """Who may see a document, in the terms both sinks use.

    `public` is true only for a document with no owner (Paperless-ngx shows those to every
    user). Otherwise `users` holds the e-mail addresses of the owner, of everyone the
    document is shared with (view or change) and of the superusers, and `groups` the group
    keys (`group_key`) it is shared with. `unresolved` lists the principals that could not be
    mapped (a user without e-mail, a user or group the token may not read); they never make
    a document public.
    """

    public: bool
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    unresolved: list[str] = Field(default_factory=list)


class CustomFieldValue(BaseModel):
    name: str
    data_type: str
    value: str  # readable: select label, linked titles, "EUR 12.50", "yes"/"no", ISO date


class Note(BaseModel):
    author: str  # "First Last" or the username; "unknown user" when it cannot be resolved
    created: str  # RFC 3339
    text: str


class IndexedDocument(BaseModel):
    source_id: str
    doc_id: int
    title: str
    text: str  # the searchable Markdown: title, metadata lines, OCR content, notes
    has_text: bool  # false when Paperless-ngx holds no OCR text for it
    correspondent: str | None = None
    document_type: str | None = None
    storage_path: str | None = None
    tags: list[str] = Field(default_factory=list)
    archive_serial_number: int | None = None
    original_file_name: str | None = None
    archived_file_name: str | None = None
    mime_type: str | None = None
    page_count: int | None = None
    created: str | None = None  # the document's date, ISO `YYYY-MM-DD`
    added: str | None = None  # RFC 3339
    modified: str | None = None  # RFC 3339
    custom_fields: list[CustomFieldValue] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    owner: str | None = None  # owner's e-mail (or `user:<id>` when it cannot be resolved)
    access: Access
    url: str  # <base_url>/documents/<id>/details/
    fingerprint: str  # changes whenever anything a sink stores changes
    light_fingerprint: str  # over the fields of the cheap listing (see tasks/render.py)

    @property
    def key(self) -> str:
        """The id a sink stores it under: `paperless:<source_id>:<doc_id>`."""
        return document_key(self.source_id, self.doc_id)


class Principal(BaseModel):
    """A Paperless-ngx user as the sinks need it (for `search --as` and group events)."""

    email: str
    username: str
    is_superuser: bool = False
    groups: list[str] = Field(default_factory=list)  # group keys


class Group(BaseModel):
    key: str  # group_key(source_id, group id)
    name: str
    member_emails: list[str] = Field(default_factory=list)


class Principals(BaseModel):
    """Users and groups of a source as far as the token may read them."""

    users: list[Principal] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)
    complete: bool = True  # false when users or groups could not be read (403)


def document_key(source_id: str, doc_id: int) -> str:
    return f"paperless:{source_id}:{doc_id}"


def group_key(source_id: str, group_id: int) -> str:
    """A stable group identifier per source, shaped like an address as Omni expects."""
    return f"paperless-group-{group_id}@{source_id}.paperless.invalid"
