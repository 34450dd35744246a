"""Strict checks of what the connector sends, as the manager's serde would reject it.

Each check returns nothing or raises `Violation` naming the field and what is wrong.
Unknown fields are rejected too: the real manager ignores them, but here one is almost
always a typo that would silently lose data.
"""

from __future__ import annotations

import re
from typing import Any

RFC3339 = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)

DOCUMENT_EVENTS = {"document_created", "document_updated", "document_deleted"}
EVENT_TYPES = DOCUMENT_EVENTS | {"group_membership_sync"}

_METADATA_TYPES: dict[str, type | tuple[type, ...]] = {
    "title": str,
    "author": str,
    "created_at": str,
    "updated_at": str,
    "content_type": str,
    "mime_type": str,
    "size": str,
    "url": str,
    "path": str,
    "extra": dict,
}


class Violation(ValueError):
    """A request the real connector-manager would refuse (or that breaks the protocol)."""


def require(body: Any, field: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(body, dict):
        raise Violation(f"{where}: expected a JSON object")
    if field not in body:
        raise Violation(f"{where}: missing required field {field!r}")
    return check_type(body[field], kind, f"{where}.{field}")


def check_type(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    # bool is an int in Python but not for serde: keep them apart.
    wrong_bool = isinstance(value, bool) and kind in (int, str, (int, float))
    if wrong_bool or not isinstance(value, kind):
        raise Violation(f"{where}: expected {_name(kind)}, got {type(value).__name__}")
    return value


def only_fields(body: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise Violation(f"{where}: unknown fields {extra}")


def check_date_time(value: Any, where: str) -> None:
    check_type(value, str, where)
    if not RFC3339.match(value):
        raise Violation(f"{where}: {value!r} is not an RFC 3339 date-time")


def check_strings(value: Any, where: str) -> None:
    check_type(value, list, where)
    for i, item in enumerate(value):
        check_type(item, str, f"{where}[{i}]")


def check_event(event: Any, where: str) -> None:
    kind = require(event, "type", str, where)
    if kind not in EVENT_TYPES:
        raise Violation(f"{where}.type: unknown event type {kind!r}")
    require(event, "sync_run_id", str, where)
    require(event, "source_id", str, where)
    if kind == "group_membership_sync":
        only_fields(
            event,
            {"type", "sync_run_id", "source_id", "group_email", "group_name", "member_emails"},
            where,
        )
        require(event, "group_email", str, where)
        if event.get("group_name") is not None:
            check_type(event["group_name"], str, f"{where}.group_name")
        check_strings(event.get("member_emails", []), f"{where}.member_emails")
        return
    require(event, "document_id", str, where)
    if kind == "document_deleted":
        only_fields(event, {"type", "sync_run_id", "source_id", "document_id"}, where)
        return
    only_fields(
        event,
        {
            "type",
            "sync_run_id",
            "source_id",
            "document_id",
            "content_id",
            "metadata",
            "permissions",
            "attributes",
        },
        where,
    )
    require(event, "content_id", str, where)
    check_metadata(require(event, "metadata", dict, where), f"{where}.metadata")
    if kind == "document_created" or event.get("permissions") is not None:
        check_permissions(require(event, "permissions", dict, where), f"{where}.permissions")
    if event.get("attributes") is not None:
        check_type(event["attributes"], dict, f"{where}.attributes")


def check_metadata(metadata: dict[str, Any], where: str) -> None:
    only_fields(metadata, set(_METADATA_TYPES), where)
    for field, kind in _METADATA_TYPES.items():
        value = metadata.get(field)
        if value is None:
            continue
        check_type(value, kind, f"{where}.{field}")
        if field in ("created_at", "updated_at"):
            check_date_time(value, f"{where}.{field}")


def check_permissions(permissions: dict[str, Any], where: str) -> None:
    only_fields(permissions, {"public", "users", "groups"}, where)
    check_type(permissions.get("public", False), bool, f"{where}.public")
    check_strings(permissions.get("users", []), f"{where}.users")
    check_strings(permissions.get("groups", []), f"{where}.groups")


def check_manifest(manifest: Any) -> None:
    where = "manifest"
    for field in ("name", "display_name", "version", "connector_id", "connector_url"):
        require(manifest, field, str, where)
    check_strings(require(manifest, "sync_modes", list, where), f"{where}.sync_modes")
    check_strings(manifest.get("source_types", []), f"{where}.source_types")
    for i, operator in enumerate(manifest.get("search_operators", [])):
        for field in ("operator", "attribute_key"):
            require(operator, field, str, f"{where}.search_operators[{i}]")
    check_type(manifest.get("mcp_enabled", False), bool, f"{where}.mcp_enabled")
    check_type(manifest.get("actions", []), list, f"{where}.actions")


def _name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__
