"""`PaperlessDouble`: start/stop the server, tokens, the request log, and the Python
mutation API with Paperless-ngx's real rules for `modified` (reference/paperless-api.md,
"What bumps modified"): edits, notes, versions and restores bump it; bulk edits,
permission changes, renames and trashing do not.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import replace
from typing import Any

from tests.paperless_double.api import Api
from tests.paperless_double.clock import Clock
from tests.paperless_double.corpus import Corpus, make_token
from tests.paperless_double.faults import Faults
from tests.paperless_double.model import (
    LOOKUP_KINDS,
    Document,
    Group,
    LookupObject,
    Note,
    Shares,
    User,
    Version,
)
from tests.paperless_double.serialise import View, document_dicts, encode
from tests.paperless_double.server import SERVER_RELEASE, DoubleHTTPServer, RequestRecord

EDITABLE = frozenset(
    {
        "title", "content", "correspondent", "document_type", "storage_path", "tags",
        "created", "archive_serial_number", "custom_fields", "original_file_name",
        "archived_file_name", "page_count", "mime_type",
    }
)  # fmt: skip


class PaperlessDouble:
    """A Paperless-ngx 3.0.5 stand-in over real HTTP on 127.0.0.1 (see the package doc)."""

    def __init__(
        self,
        corpus: Corpus,
        *,
        api_versions: set[int] | frozenset[int] = frozenset({9, 10}),
        prefix: str = "",
        release: str = SERVER_RELEASE,
    ) -> None:
        if not api_versions:
            raise ValueError("a Paperless-ngx double needs at least one API version")
        self.corpus = corpus
        self.api_versions = frozenset(api_versions)
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.release = release
        self.lock = threading.RLock()
        # Bumped by every change of which documents exist or who may see them: the API keeps
        # each user's id-ordered listing until then (see `Api.visible_by_id`).
        self.visibility = 0
        self.clock = Clock()
        self.faults = Faults()
        self.api = Api(self)
        self.log: list[RequestRecord] = []
        self.counts: Counter[str] = Counter()  # requests per API path
        self._log_lock = threading.Lock()
        self._server: DoubleHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, port: int = 0) -> PaperlessDouble:
        """Serve on 127.0.0.1 (`port` 0: a free one; after `stop`, the same one again)."""
        if self._server is not None:
            return self
        self._server = DoubleHTTPServer(("127.0.0.1", port or self._port), self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="paperless-double", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections; `start()` serves again on the same port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> PaperlessDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The base URL a connector is configured with (includes the prefix)."""
        return f"http://127.0.0.1:{self._port}{self.prefix}"

    def api_path(self, path: str) -> str | None:
        if not self.prefix:
            return path
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return path[len(self.prefix) :] or "/"
        return None

    # -- auth ------------------------------------------------------------------------------

    def token(self, username: str) -> str:
        with self.lock:
            return self.corpus.user(username).token

    def tokens(self) -> dict[str, str]:
        with self.lock:
            return {u.username: u.token for u in self.corpus.users.values()}

    def user_by_token(self, token: str) -> User | None:
        with self.lock:
            return next((u for u in self.corpus.users.values() if u.token == token), None)

    def user_by_password(self, username: str, password: str) -> User | None:
        with self.lock:
            for user in self.corpus.users.values():
                if user.username == username and user.password == password:
                    return user
        return None

    # -- request log -----------------------------------------------------------------------

    def record(self, entry: RequestRecord) -> None:
        with self._log_lock:
            self.log.append(entry)
            self.counts[entry.path] += 1

    def reset_log(self) -> None:
        with self._log_lock:
            self.log.clear()
            self.counts.clear()

    def requests(self, path: str | None = None) -> list[RequestRecord]:
        """A copy of the log, optionally only one API path's requests."""
        with self._log_lock:
            return [r for r in self.log if path is None or r.path == path]

    # -- reading the state -------------------------------------------------------------------

    def visible_documents(self, username: str, *, api_version: int = 10) -> list[dict[str, Any]]:
        """What the server shows `username`: full_perms detail dicts, in id order."""
        with self.lock:
            user = self.corpus.user(username)
            docs = sorted(
                (
                    d
                    for d in self.corpus.documents.values()
                    if d.deleted_at is None and d.shares.visible_to(user)
                ),
                key=lambda d: d.id,
            )
            view = View(user, api_version, self.corpus.users, self.corpus.seed, full_perms=True)
            rows = document_dicts(docs, view)
        return json.loads(encode(rows))  # exactly the JSON values a client decodes

    def document(self, doc_id: int) -> Document:
        with self.lock:
            return self._doc(doc_id)

    def _doc(self, doc_id: int) -> Document:
        doc = self.corpus.documents.get(doc_id)
        if doc is None:
            raise KeyError(f"no document {doc_id} in the double")
        return doc

    # -- mutations that bump `modified` ---------------------------------------------------

    def edit_document(self, doc_id: int, **fields: Any) -> Document:
        """Edit through the API (PATCH): bumps `modified`."""
        unknown = set(fields) - EDITABLE
        if unknown:
            raise ValueError(f"cannot edit {sorted(unknown)}: editable are {sorted(EDITABLE)}")
        if "tags" in fields:
            fields["tags"] = tuple(fields["tags"])
        if "custom_fields" in fields:
            cf = fields["custom_fields"]
            fields["custom_fields"] = tuple(cf.items() if isinstance(cf, dict) else cf)
        with self.lock:
            doc = self._doc(doc_id)
            for name, value in fields.items():
                setattr(doc, name, value)
            doc.modified = self.clock.now()
            return doc

    def add_document(self, title: str, **fields: Any) -> Document:
        """Consume a new document; `owner`/`view_users`/... set its permissions."""
        shares = Shares(
            owner=fields.pop("owner", None),
            view_users=tuple(fields.pop("view_users", ())),
            view_groups=tuple(fields.pop("view_groups", ())),
            change_users=tuple(fields.pop("change_users", ())),
            change_groups=tuple(fields.pop("change_groups", ())),
        )
        with self.lock:
            now = self.clock.now()
            doc_id = fields.pop("id", None) or self.corpus.next_id("documents")
            doc = Document(
                id=doc_id,
                title=title,
                created=fields.pop("created", now.date()),
                modified=now,
                added=now,
                original_file_name=fields.pop("original_file_name", f"{title}.pdf"),
                archived_file_name=fields.pop("archived_file_name", f"{title}.pdf"),
                shares=shares,
                content=fields.pop("content", None),
            )
            self.corpus.documents[doc_id] = doc
            self.visibility += 1
        if fields:
            self.edit_document(doc_id, **fields)
            with self.lock:
                doc.modified = doc.added
        return doc

    def add_note(self, doc_id: int, username: str, text: str) -> int:
        with self.lock:
            doc = self._doc(doc_id)
            now = self.clock.now()
            note = Note(self.corpus.next_note_id, text, now, self.corpus.user(username).id)
            self.corpus.next_note_id += 1
            doc.notes = (*doc.notes, note)
            doc.modified = now
            return note.id

    def delete_note(self, doc_id: int, note_id: int) -> None:
        with self.lock:
            doc = self._doc(doc_id)
            doc.notes = tuple(n for n in doc.notes if n.id != note_id)
            doc.modified = self.clock.now()

    def add_version(self, doc_id: int, content: str, label: str | None = None) -> int:
        """Upload a new version (3.x): its text becomes the document's content; bumps."""
        with self.lock:
            doc = self._doc(doc_id)
            now = self.clock.now()
            version_id = self.corpus.next_version_id
            self.corpus.next_version_id += 1
            checksum = f"{version_id:064x}"
            doc.versions = (*doc.versions, Version(version_id, now, label, checksum, content))
            doc.modified = now
            return version_id

    def restore_document(self, doc_id: int) -> None:
        with self.lock:
            doc = self._doc(doc_id)
            doc.deleted_at = None
            self.visibility += 1
            doc.modified = self.clock.now()

    # -- mutations that do not bump `modified` ------------------------------------------------

    def delete_document(self, doc_id: int) -> None:
        """Gone for good (deleted from the trash)."""
        with self.lock:
            self.corpus.documents.pop(doc_id, None)
            self.visibility += 1

    def trash_document(self, doc_id: int) -> None:
        with self.lock:
            self._doc(doc_id).deleted_at = self.clock.now()
            self.visibility += 1

    def empty_trash(self) -> list[int]:
        with self.lock:
            gone = [i for i, d in self.corpus.documents.items() if d.deleted_at is not None]
            for doc_id in gone:
                del self.corpus.documents[doc_id]
            self.visibility += 1
            return gone

    def bulk_edit(
        self,
        ids: list[int],
        *,
        add_tags: list[int] = (),  # type: ignore[assignment]
        remove_tags: list[int] = (),  # type: ignore[assignment]
        **fields: Any,
    ) -> None:
        """`/api/documents/bulk_edit/`: tags, correspondent, document_type, storage_path."""
        unknown = set(fields) - {"correspondent", "document_type", "storage_path"}
        if unknown:
            raise ValueError(f"bulk_edit cannot set {sorted(unknown)}")
        with self.lock:
            for doc_id in ids:
                doc = self._doc(doc_id)
                tags = [t for t in doc.tags if t not in remove_tags]
                doc.tags = tuple(tags + [t for t in add_tags if t not in tags])
                for name, value in fields.items():
                    setattr(doc, name, value)

    def set_permissions(self, ids: list[int], **changes: Any) -> None:
        """Bulk `set_permissions`: owner, view_users, view_groups, change_users, change_groups."""
        allowed = {"owner", "view_users", "view_groups", "change_users", "change_groups"}
        if set(changes) - allowed:
            raise ValueError(f"set_permissions takes {sorted(allowed)}")
        changes = {k: v if k == "owner" else tuple(v) for k, v in changes.items()}
        with self.lock:
            for doc_id in ids:
                doc = self._doc(doc_id)
                doc.shares = replace(doc.shares, **changes)
            self.visibility += 1

    def _rename(self, kind: str, obj_id: int, name: str) -> None:
        with self.lock:
            self.corpus.lookups[kind][obj_id].name = name

    def rename_tag(self, tag_id: int, name: str) -> None:
        self._rename("tags", tag_id, name)

    def rename_correspondent(self, obj_id: int, name: str) -> None:
        self._rename("correspondents", obj_id, name)

    def rename_document_type(self, obj_id: int, name: str) -> None:
        self._rename("document_types", obj_id, name)

    def rename_storage_path(self, obj_id: int, name: str) -> None:
        self._rename("storage_paths", obj_id, name)

    def rename_custom_field(self, obj_id: int, name: str) -> None:
        self._rename("custom_fields", obj_id, name)

    def relabel_select_option(self, field_id: int, option_id: str, label: str) -> None:
        with self.lock:
            extra = self.corpus.lookups["custom_fields"][field_id].attrs["extra_data"]
            for option in extra["select_options"]:
                if option["id"] == option_id:
                    option["label"] = label
                    return
        raise KeyError(f"custom field {field_id} has no select option {option_id!r}")

    def set_lookup_permissions(self, kind: str, obj_id: int, **changes: Any) -> None:
        """Owner and shares of a tag, correspondent, type or storage path."""
        changes = {k: v if k == "owner" else tuple(v) for k, v in changes.items()}
        with self.lock:
            obj = self.corpus.lookups[kind][obj_id]
            obj.shares = replace(obj.shares, **changes)

    def _add_lookup(self, kind: str, name: str, owner: int | None, attrs: dict[str, Any]) -> int:
        with self.lock:
            obj_id = self.corpus.next_id(kind)
            self.corpus.lookups[kind][obj_id] = LookupObject(
                kind, obj_id, name, Shares(owner), attrs
            )
            return obj_id

    def add_tag(
        self, name: str, *, owner: int | None = None, parent: int | None = None,
        color: str = "#a6cee3", is_inbox_tag: bool = False,
    ) -> int:  # fmt: skip
        attrs = {"color": color, "parent": parent, "is_inbox_tag": is_inbox_tag}
        return self._add_lookup("tags", name, owner, attrs)

    def add_correspondent(self, name: str, *, owner: int | None = None) -> int:
        return self._add_lookup("correspondents", name, owner, {})

    def add_document_type(self, name: str, *, owner: int | None = None) -> int:
        return self._add_lookup("document_types", name, owner, {})

    def add_storage_path(self, name: str, path: str, *, owner: int | None = None) -> int:
        return self._add_lookup("storage_paths", name, owner, {"path": path})

    def add_custom_field(self, name: str, data_type: str, extra_data: Any = None) -> int:
        return self._add_lookup(
            "custom_fields", name, None, {"data_type": data_type, "extra_data": extra_data}
        )

    def add_user(
        self,
        username: str,
        *,
        email: str = "",
        first_name: str = "",
        last_name: str = "",
        superuser: bool = False,
        groups: tuple[int, ...] = (),
        forbidden: set[str] | frozenset[str] = frozenset({"users", "groups"}),
    ) -> User:
        with self.lock:
            user = User(
                id=self.corpus.next_id("users"),
                username=username,
                email=email,
                first_name=first_name,
                last_name=last_name,
                token=make_token(self.corpus.seed, username),
                password=f"{username}-password",
                is_superuser=superuser,
                groups=tuple(groups),
                forbidden=frozenset(forbidden),
                date_joined=self.clock.now(),
            )
            self.corpus.users[user.id] = user
            return user

    def set_forbidden(self, username: str, *endpoints: str) -> None:
        """Which lookup lists `username` gets 403 on (e.g. "custom_fields", "users")."""
        unknown = set(endpoints) - {*LOOKUP_KINDS, "users", "groups"}
        if unknown:
            raise ValueError(f"unknown endpoints {sorted(unknown)}")
        with self.lock:
            self.corpus.user(username).forbidden = frozenset(endpoints)

    def add_group(self, name: str, members: list[str] = ()) -> int:  # type: ignore[assignment]
        with self.lock:
            group_id = self.corpus.next_id("groups")
            self.corpus.groups[group_id] = Group(group_id, name)
            for username in members:
                user = self.corpus.user(username)
                user.groups = (*user.groups, group_id)
            return group_id
