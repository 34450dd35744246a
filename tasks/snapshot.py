"""`LookupSnapshot`: the lookup tables of one run, read once and shared with the page tasks.

A lookup the token may not read (403) degrades only that part of the enrichment: its table
stays empty and `degraded` says what is missing and what to do. It never fails the run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pydantic import BaseModel, Field

from tasks.paperless.errors import AuthenticationError

# Lookup name -> (what goes missing, the model permission its user needs).
_WHAT = {
    "tags": ("tag names", "tags"),
    "correspondents": ("correspondent names", "correspondents"),
    "document_types": ("document type names", "document types"),
    "storage_paths": ("storage path names", "storage paths"),
    "custom_fields": ("custom fields", "custom fields"),
    "users": ("users (owners, shares and note authors)", "users"),
    "groups": ("groups (group shares)", "groups"),
}

_USER_KEYS = ("id", "username", "email", "first_name", "last_name", "is_superuser", "groups")


class LookupReader(Protocol):
    def list_lookup(self, name: str) -> list[dict[str, Any]]: ...


class LookupSnapshot(BaseModel):
    tags: dict[int, dict[str, Any]] = Field(default_factory=dict)
    correspondents: dict[int, dict[str, Any]] = Field(default_factory=dict)
    document_types: dict[int, dict[str, Any]] = Field(default_factory=dict)
    storage_paths: dict[int, dict[str, Any]] = Field(default_factory=dict)
    custom_fields: dict[int, dict[str, Any]] = Field(default_factory=dict)
    users: dict[int, dict[str, Any]] = Field(default_factory=dict)
    groups: dict[int, dict[str, Any]] = Field(default_factory=dict)
    degraded: list[str] = Field(default_factory=list)
    unreadable: list[str] = Field(default_factory=list)  # lookup names that answered 403

    @classmethod
    def load(cls, client: LookupReader) -> LookupSnapshot:
        tables: dict[str, dict[int, dict[str, Any]]] = {}
        degraded: list[str] = []
        unreadable: list[str] = []
        # Side by side: seven lists, each a round trip or more to a server that may be far.
        with ThreadPoolExecutor(len(_WHAT), thread_name_prefix="lookups") as pool:
            answers = {name: pool.submit(client.list_lookup, name) for name in _WHAT}
        for name, (missing, permission) in _WHAT.items():
            try:
                rows = answers[name].result()
            except AuthenticationError as exc:
                if exc.status != 403:
                    raise  # 401: the token itself is wrong, nothing else will work either
                tables[name] = {}
                unreadable.append(name)
                degraded.append(
                    f"{missing} missing: the token's user may not read /api/{name}/; "
                    f"grant it view permission on {permission}"
                )
                continue
            if name == "users":
                # Keep what rendering needs; not the password mask or permission lists.
                rows = [{k: row.get(k) for k in _USER_KEYS if k in row} for row in rows]
            tables[name] = {int(row["id"]): row for row in rows if "id" in row}
        nameless = sorted(
            str(row.get("username") or f"user {uid}")
            for uid, row in tables.get("users", {}).items()
            if not str(row.get("email") or "").strip()
        )
        if nameless:
            # Omni and `search --as` know people by e-mail: these users see nothing private
            # through the index until they have one. Said once per run, in its status.
            degraded.append(
                f"users without an e-mail address cannot be given access to private "
                f"documents: {', '.join(nameless)}; add an e-mail address in Paperless-ngx"
            )
        return cls(**tables, degraded=degraded, unreadable=unreadable)

    def name_of(self, table: str, object_id: int | None) -> str | None:
        """The name of a tag, correspondent, type or path, None when unknown."""
        if object_id is None:
            return None
        row: dict[str, Any] | None = getattr(self, table).get(object_id)
        name = row.get("name") if row else None
        return str(name) if name not in (None, "") else None

    @property
    def users_complete(self) -> bool:
        return "users" not in self.unreadable and "groups" not in self.unreadable
