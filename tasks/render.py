"""Enrichment and rendering: a raw Paperless-ngx document + the run's snapshot → IndexedDocument.

Names replace ids (an id the snapshot does not know is left out, never fatal), custom fields
become readable values, permissions become e-mail addresses and group keys, and the whole
is rendered as Markdown for search. Two fingerprints let a run skip unchanged documents:
`fingerprint` over everything a sink stores, `light_fingerprint` over what the cheap listing
carries plus the names and access it resolves to (renames and shares do not bump `modified`).
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from datetime import date, datetime
from typing import Any

import orjson

from tasks.document import (
    Access,
    CustomFieldValue,
    Group,
    IndexedDocument,
    Note,
    Principal,
    Principals,
    group_key,
)
from tasks.paperless.models import (
    LIGHT_FIELDS,
    CustomField,
    Document,
    DocumentDataError,
    User,
    parse_document,
    utc_rfc3339,
)
from tasks.snapshot import LookupSnapshot

__all__ = [
    "DocumentDataError",
    "light_fingerprint",
    "linked_ids",
    "principals",
    "raw_light_digest",
    "render_document",
]

_UNSAFE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates break SQLite and JSON
_MONEY = re.compile(r"^\s*([A-Za-z]{3})?\s*(-?\d+(?:\.\d+)?)\s*$")


def render_document(
    raw: dict[str, Any],
    snapshot: LookupSnapshot,
    *,
    source_id: str,
    base_url: str,
    link_titles: dict[int, str],
) -> IndexedDocument:
    doc = parse_document(raw)
    fallback = _clean(doc.original_file_name or "").strip() or f"Document {doc.id}"
    title = _clean(doc.title or "").strip() or fallback
    content = _clean(doc.content or "")
    fields = _custom_fields(doc, snapshot, link_titles)
    notes = [_note(n.note, n.created, n.user, snapshot) for n in doc.notes]
    owner = _owner(doc, snapshot)
    indexed = IndexedDocument(
        source_id=source_id,
        doc_id=doc.id,
        title=title,
        text="",
        has_text=bool(content.strip()),
        correspondent=snapshot.name_of("correspondents", doc.correspondent),
        document_type=snapshot.name_of("document_types", doc.document_type),
        storage_path=snapshot.name_of("storage_paths", doc.storage_path),
        tags=[n for n in (snapshot.name_of("tags", t) for t in doc.tags) if n],
        archive_serial_number=doc.archive_serial_number,
        original_file_name=doc.original_file_name,
        archived_file_name=doc.archived_file_name,
        mime_type=doc.mime_type,
        page_count=doc.page_count,
        created=doc.created,
        added=utc_rfc3339(doc.added) if doc.added else None,
        modified=utc_rfc3339(doc.modified) if doc.modified else None,
        custom_fields=fields,
        notes=notes,
        owner=owner,
        access=_access(doc, snapshot, source_id),
        url=f"{base_url.rstrip('/')}/documents/{doc.id}/details/",
        fingerprint="",
        light_fingerprint=light_fingerprint(raw, snapshot),
    )
    indexed.text = _markdown(indexed, content)
    indexed.fingerprint = _sha256(
        indexed.model_dump(mode="json", exclude={"fingerprint", "light_fingerprint"})
    )
    return indexed


def light_fingerprint(raw: dict[str, Any], snapshot: LookupSnapshot) -> str:
    """Equal for a full document and its light listing entry; never raises.

    Two parts: `raw_light_digest` of the listing's values as they came (32 hex digits),
    then a digest of those values together with what they resolve to in the snapshot (64).
    A plan computes 100,000 of these. The first part alone tells a document unchanged when
    the lookups are the same as at the last committed run (see `plan_run`); the second is
    worked out once per snapshot: treat a snapshot as read-only once fingerprints are
    taken from it.
    """
    try:
        text = _resolved(snapshot).light_text(raw)
    except Exception:  # malformed listing data of any shape still hashes the same way
        text = repr(sorted((key, repr(raw.get(key))) for key in _LIGHT_KEYS if key in raw))
    resolved = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return raw_light_digest(raw) + resolved


RAW_DIGEST_CHARS = 32  # hex digits of `raw_light_digest` at the start of a light fingerprint


def raw_light_digest(raw: dict[str, Any]) -> str:
    """A digest of the light fields' raw values only: cheap, and blind to renames.

    Tags count as a set, as in the resolved part: equal raw digests mean equal resolved
    parts under one snapshot."""
    values = [raw.get(key) for key in _LIGHT_KEYS]
    tags = values[_TAGS_AT]
    if type(tags) is list and len(tags) > 1:
        try:
            values[_TAGS_AT] = sorted(tags)
        except TypeError:  # ids of mixed types in malformed data
            values[_TAGS_AT] = sorted(tags, key=repr)
    try:
        encoded = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # e.g. an integer beyond 64 bits, a lone surrogate
        encoded = repr(values).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(encoded, digest_size=RAW_DIGEST_CHARS // 2).hexdigest()


_LIGHT_KEYS = (*LIGHT_FIELDS, "permissions")
_TAGS_AT = _LIGHT_KEYS.index("tags")


class _Resolved:
    """What light fingerprints need of one snapshot, as a text token per id.

    A known id becomes `id='name'` (an e-mail for users), an unknown one its bare repr, so a
    rename, a new e-mail or a lookup the token stopped seeing changes the token. Values and
    names go in as repr, so no separator inside them can make two documents' texts equal.
    """

    def __init__(self, snapshot: LookupSnapshot) -> None:
        # Keyed by Any: the ids come from raw JSON, whatever type they have there.
        def named(table: dict[int, dict[str, Any]]) -> dict[Any, str]:
            return {
                object_id: f"{object_id}={row.get('name')!r}" for object_id, row in table.items()
            }

        self.tags = named(snapshot.tags)
        self.correspondents = named(snapshot.correspondents)
        self.document_types = named(snapshot.document_types)
        self.storage_paths = named(snapshot.storage_paths)
        self.users: dict[Any, str] = {
            uid: f"{uid}={_email(snapshot, uid)!r}" for uid in snapshot.users
        }
        # Superusers see every owned document: a new one changes all of their access.
        self.superusers = repr(
            sorted(
                str(row.get("email") or "").strip()
                for row in snapshot.users.values()
                if row.get("is_superuser") and str(row.get("email") or "").strip()
            )
        )
        self.fields: dict[Any, tuple[str, CustomField]] = {}
        for field_id in snapshot.custom_fields:
            field = _field(snapshot, field_id)
            if field is not None:
                currency = field.default_currency if field.data_type == "monetary" else None
                token = f"{field_id}={field.name!r}:{field.data_type}:{currency!r}"
                self.fields[field_id] = (token, field)
        self.labels: dict[tuple[Any, Any], str] = {}  # (select field, option) -> label's repr
        self.documentlinks = {
            field_id
            for field_id, row in snapshot.custom_fields.items()
            if row.get("data_type") == "documentlink"
        }

    def light_text(self, raw: dict[str, Any]) -> str:
        get = raw.get
        owner = get("owner")
        access = "public"
        if owner is not None:  # unowned documents are public whatever the shares say
            known = self.users
            users, groups = _shared(get("permissions"))
            shared = [known.get(uid) or repr(uid) for uid in users]
            owned = known.get(owner) or repr(owner)
            access = f"{owned}|{' '.join(shared)}|{groups!r}|{self.superusers}"
        tags = self.tags
        correspondent = get("correspondent")
        document_type = get("document_type")
        storage_path = get("storage_path")
        fields = get("custom_fields")
        return "\x1f".join(
            (
                repr(get("id")),
                repr(get("modified")),
                repr(get("title")),
                repr(get("archive_serial_number")),
                " ".join([tags.get(tag) or repr(tag) for tag in sorted(get("tags") or ())]),
                self.correspondents.get(correspondent) or repr(correspondent),
                self.document_types.get(document_type) or repr(document_type),
                self.storage_paths.get(storage_path) or repr(storage_path),
                " ".join([self._field_text(instance) for instance in fields]) if fields else "",
                access,
            )
        )

    def _field_text(self, instance: dict[str, Any]) -> str:
        field_id, value = instance.get("field"), instance.get("value")
        found = self.fields.get(field_id)
        if found is None:
            return f"{field_id!r}:{value!r}"
        token, field = found
        if field.data_type != "select":
            return f"{token}:{value!r}"  # shown as a function of the value and the token
        try:
            label = self.labels[(field_id, value)]
        except KeyError:
            label = self.labels[(field_id, value)] = repr(field.select_label(value))
        except TypeError:  # an unhashable value: not an option anyway
            label = "None"
        return f"{token}:{label}:{value!r}"


def _shared(permissions: Any) -> tuple[list[Any], list[Any]]:
    """The user and group ids a `permissions` value shares with (view and change)."""
    if permissions is None:
        return [], []  # no full_perms: the owner only
    view, change = permissions.get("view") or {}, permissions.get("change") or {}
    users = [*(view.get("users") or ()), *(change.get("users") or ())]
    groups = [*(view.get("groups") or ()), *(change.get("groups") or ())]
    return users, groups


_resolved_cache: dict[int, tuple[weakref.ref[LookupSnapshot], _Resolved]] = {}


def _resolved(snapshot: LookupSnapshot) -> _Resolved:
    found = _resolved_cache.get(id(snapshot))
    if found is not None and found[0]() is snapshot:
        return found[1]
    for key in [key for key, (ref, _) in _resolved_cache.items() if ref() is None]:
        _resolved_cache.pop(key, None)
    resolved = _Resolved(snapshot)
    _resolved_cache[id(snapshot)] = (weakref.ref(snapshot), resolved)
    return resolved


def linked_ids(raw: dict[str, Any], snapshot: LookupSnapshot) -> set[int]:
    """The document ids named in the document's documentlink custom fields."""
    ids: set[int] = set()
    links = _resolved(snapshot).documentlinks  # a plan asks this of every document
    if not links:
        return ids
    for instance in raw.get("custom_fields") or []:
        if not isinstance(instance, dict) or instance.get("field") not in links:
            continue
        value = instance.get("value")
        if isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int) and not isinstance(v, bool))
    return ids


def principals(snapshot: LookupSnapshot, source_id: str) -> Principals:
    users = [User.model_validate(row) for row in snapshot.users.values()]
    members: dict[int, list[str]] = {gid: [] for gid in snapshot.groups}
    found: list[Principal] = []
    for user in sorted(users, key=lambda u: u.id):
        email = (user.email or "").strip()
        for gid in user.groups:
            if email:
                members.setdefault(gid, []).append(email)
            else:
                members.setdefault(gid, [])
        if not email:
            continue  # cannot be matched to anyone in the sink; shows up as `unresolved`
        found.append(
            Principal(
                email=email,
                username=user.username,
                is_superuser=user.is_superuser,
                groups=[group_key(source_id, gid) for gid in sorted(user.groups)],
            )
        )
    groups = [
        Group(
            key=group_key(source_id, gid),
            name=str((snapshot.groups.get(gid) or {}).get("name") or f"group {gid}"),
            member_emails=sorted(set(emails)),
        )
        for gid, emails in sorted(members.items())
    ]
    return Principals(users=found, groups=groups, complete=snapshot.users_complete)


# -- access ------------------------------------------------------------------------------


def _access(doc: Document, snapshot: LookupSnapshot, source_id: str) -> Access:
    if doc.owner is None:
        return Access(public=True)  # Paperless-ngx shows unowned documents to every user
    users: set[str] = set()
    unresolved: set[str] = set()
    perms = doc.permissions  # absent without full_perms: treat as owner-only
    shared_users = [*perms.view.users, *perms.change.users] if perms else []
    shared_groups = [*perms.view.groups, *perms.change.groups] if perms else []
    for uid in [doc.owner, *shared_users]:
        email = _email(snapshot, uid)
        if email:
            users.add(email)
        else:
            unresolved.add(f"user:{uid}")
    for row in snapshot.users.values():
        email = str(row.get("email") or "").strip()
        if row.get("is_superuser") and email:
            users.add(email)
    return Access(
        public=False,
        users=sorted(users),
        groups=sorted({group_key(source_id, gid) for gid in shared_groups}),
        unresolved=sorted(unresolved),
    )


def _email(snapshot: LookupSnapshot, user_id: int) -> str | None:
    email = str((snapshot.users.get(user_id) or {}).get("email") or "").strip()
    return email or None


def _owner(doc: Document, snapshot: LookupSnapshot) -> str | None:
    if doc.owner is None:
        return None
    return _email(snapshot, doc.owner) or f"user:{doc.owner}"


# -- custom fields and notes -------------------------------------------------------------


def _field(snapshot: LookupSnapshot, field_id: int) -> CustomField | None:
    row = snapshot.custom_fields.get(field_id)
    if not row:
        return None
    try:
        return CustomField.model_validate(row)
    except ValueError:
        return None


def _custom_fields(
    doc: Document, snapshot: LookupSnapshot, link_titles: dict[int, str]
) -> list[CustomFieldValue]:
    values = []
    for instance in doc.custom_fields:
        field = _field(snapshot, instance.field)
        if field is None:
            continue  # unknown or unreadable field: the rest of the document still renders
        shown = _readable(field, instance.value, doc.id, link_titles)
        if shown is not None:
            values.append(CustomFieldValue(name=field.name, data_type=field.data_type, value=shown))
    return values


def _readable(
    field: CustomField, value: Any, doc_id: int, link_titles: dict[int, str]
) -> str | None:
    """A custom field value as a person reads it; None for an empty value."""
    if value is None or value == "" or value == []:
        return None
    kind = field.data_type

    def bad(expected: str) -> DocumentDataError:
        return DocumentDataError(
            f"document {doc_id} has an invalid value {value!r} in custom field "
            f"{field.name!r} (expected {expected}); fix it in Paperless-ngx"
        )

    if kind == "boolean":
        if not isinstance(value, bool):
            raise bad("true or false")
        return "yes" if value else "no"
    if kind == "select":
        return field.select_label(value)  # an option deleted since: nothing to show
    if kind == "documentlink":
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise bad("a list of document ids")
        return ", ".join(_clean(link_titles.get(v) or f"#{v}") for v in value)
    if kind == "monetary":
        match = _MONEY.match(str(value))
        if not match:
            raise bad("an amount such as EUR12.50")
        currency = (match.group(1) or field.default_currency or "").upper()
        return f"{currency} {match.group(2)}" if currency else match.group(2)
    if kind == "date":
        try:
            return date.fromisoformat(str(value)[:10]).isoformat()
        except ValueError:
            raise bad("a date YYYY-MM-DD") from None
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        return str(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
    if isinstance(value, dict | list):
        raise bad("text")
    return _clean(str(value))


def _note(text: str, created: datetime | None, user: Any, snapshot: LookupSnapshot) -> Note:
    author = ""
    if user is not None and not isinstance(user, int):  # API 8+: an object
        author = User.model_validate(user.model_dump()).display_name
        user = user.id
    if not author and isinstance(user, int):  # API < 8 sends the id only
        row = snapshot.users.get(user)
        author = User.model_validate(row).display_name if row else ""
    return Note(
        author=_clean(author) or "unknown user",
        created=utc_rfc3339(created) if created else "",
        text=_clean(text),
    )


# -- text --------------------------------------------------------------------------------


def _markdown(doc: IndexedDocument, content: str) -> str:
    meta = [
        ("Correspondent", doc.correspondent),
        ("Document type", doc.document_type),
        ("Tags", ", ".join(doc.tags) if doc.tags else None),
        ("Storage path", doc.storage_path),
        ("ASN", str(doc.archive_serial_number) if doc.archive_serial_number is not None else None),
        ("Created", doc.created),
        *((field.name, field.value) for field in doc.custom_fields),
    ]
    parts = [f"# {_one_line(doc.title)}"]
    lines = [f"{label}: {_one_line(value)}" for label, value in meta if value]
    if lines:
        parts.append("\n".join(lines))
    if content.strip():
        parts.append(content.strip("\n"))
    if doc.notes:
        items = [
            f"- {note.author} ({note.created}): " + note.text.strip().replace("\n", "\n  ")
            for note in doc.notes
        ]
        parts.append("## Notes\n\n" + "\n".join(items))
    return "\n\n".join(parts) + "\n"


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _clean(value: str) -> str:
    return _UNSAFE.sub("", value)


def _sha256(payload: Any) -> str:
    # orjson writes the same bytes as the stdlib with these options, 5-10x faster; it
    # refuses a lone surrogate or an integer beyond 64 bits, which the stdlib then writes.
    try:
        canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        text = json.dumps(
            payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
        )
        canonical = text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(canonical).hexdigest()
