"""The standalone source registry: which Paperless-ngx instances to sync, and how.

One SQLite file in the data directory. Tokens are stored only as Fernet ciphertext (see
`config/secrets.py`); everything else is plain so `sources list` can show it. The
checkpoint is written only by the finalizer of a run (`save_checkpoint`).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from config.logging import register_secret
from config.secrets import KeyRing
from config.settings import Settings, get_settings

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY,
    base_url TEXT NOT NULL,
    token_ciphertext TEXT NOT NULL,
    interval_seconds INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    ca_bundle TEXT,
    allow_insecure_http INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    checkpoint TEXT
)
"""
_COLUMNS = (
    "name, base_url, interval_seconds, enabled, ca_bundle, allow_insecure_http, "
    "created_at, updated_at, checkpoint"
)
MIN_INTERVAL_SECONDS = 10


class SourceError(Exception):
    """A source cannot be added, found or changed; the message is one sentence."""


class InvalidSource(SourceError, ValueError):
    """A name, URL or interval that the registry does not accept."""


class SourceExists(SourceError):
    """A source of that name is already registered."""


class SourceNotFound(SourceError, KeyError):
    """No source of that name is registered."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"there is no source named {name!r}; see `paperless-connector sources list`."
        )
        self.name = name

    def __str__(self) -> str:
        # KeyError would print the message in quotes.
        return str(self.args[0])


class Source(BaseModel):
    name: str
    base_url: str
    interval_seconds: int
    enabled: bool = True
    ca_bundle: str | None = None
    allow_insecure_http: bool = False
    created_at: str
    updated_at: str
    checkpoint: dict[str, Any] | None = None

    @property
    def watermark(self) -> str | None:
        return (self.checkpoint or {}).get("watermark")


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def validate_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidSource(
            f"the source name {name!r} is not allowed; use up to 64 lower-case letters, "
            "digits, '-' and '_', starting with a letter or digit."
        )
    return name


def normalise_base_url(url: str) -> str:
    """`https://Paperless.Example.com/api/` → `https://paperless.example.com`.

    A pasted API URL is accepted (the client adds `/api/` itself); credentials in the URL
    are refused because the URL is shown and logged, unlike the token.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidSource(
            f"the URL {url!r} is not an http(s) address; "
            "give the address of Paperless-ngx, e.g. https://paperless.example.com."
        )
    if parts.username or parts.password:
        raise InvalidSource(
            "the URL must not contain a user name or password; "
            "give the API token separately (PAPERLESS_TOKEN or the prompt)."
        )
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    try:
        port = parts.port
    except ValueError:
        raise InvalidSource(f"the URL {url!r} has an invalid port; check the URL.") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, path, "", ""))


def validate_interval(seconds: int) -> int:
    if seconds < MIN_INTERVAL_SECONDS:
        raise InvalidSource(
            f"the interval must be at least {MIN_INTERVAL_SECONDS} seconds; {seconds} was given."
        )
    return seconds


class SourceRegistry:
    def __init__(
        self, path: Path, keyring: KeyRing, *, default_interval_seconds: int | None = None
    ) -> None:
        self.path = path
        self.keyring = keyring
        self.default_interval_seconds = default_interval_seconds
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with self._connect() as db:
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        if new:
            # The tokens are encrypted, but the URLs and names are nobody else's business.
            path.chmod(0o600)

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceRegistry:
        return cls(
            settings.registry_path,
            KeyRing.from_settings(settings),
            default_interval_seconds=settings.sync_interval_seconds,
        )

    def _default_interval(self) -> int:
        if self.default_interval_seconds is None:
            return get_settings().sync_interval_seconds
        return self.default_interval_seconds

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A short-lived connection per call: safe across Celery's forked processes.
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def add(
        self,
        name: str,
        base_url: str,
        token: str,
        interval_seconds: int | None = None,
        *,
        ca_bundle: str | None = None,
        allow_insecure_http: bool = False,
    ) -> Source:
        validate_name(name)
        url = normalise_base_url(base_url)
        interval = validate_interval(interval_seconds or self._default_interval())
        if not token.strip():
            raise InvalidSource("the API token is empty; give the token of a Paperless-ngx user.")
        ciphertext = self.keyring.encrypt(token.strip())
        stamp = now_rfc3339()
        try:
            with self._connect() as db:
                db.execute(
                    "INSERT INTO sources (name, base_url, token_ciphertext, interval_seconds,"
                    " enabled, ca_bundle, allow_insecure_http, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)",
                    (
                        name,
                        url,
                        ciphertext,
                        interval,
                        ca_bundle,
                        int(allow_insecure_http),
                        stamp,
                        stamp,
                    ),
                )
        except sqlite3.IntegrityError:
            raise SourceExists(
                f"a source named {name!r} already exists; remove it first or pick another name."
            ) from None
        return self.require(name)

    def get(self, name: str) -> Source | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM sources WHERE name = ?", (name,)).fetchone()
        return None if row is None else _to_source(row)

    def require(self, name: str) -> Source:
        source = self.get(name)
        if source is None:
            raise SourceNotFound(name)
        return source

    def list(self) -> list[Source]:
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM sources ORDER BY name").fetchall()
        return [_to_source(row) for row in rows]

    def token(self, name: str) -> str:
        with self._connect() as db:
            row = db.execute(
                "SELECT token_ciphertext FROM sources WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise SourceNotFound(name)
        token = self.keyring.decrypt(row[0], what=f"the token of source {name}")
        register_secret(token)
        return token

    def remove(self, name: str) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM sources WHERE name = ?", (name,)).rowcount > 0

    def update(
        self, name: str, *, interval_seconds: int | None = None, enabled: bool | None = None
    ) -> Source:
        changes: dict[str, Any] = {}
        if interval_seconds is not None:
            changes["interval_seconds"] = validate_interval(interval_seconds)
        if enabled is not None:
            changes["enabled"] = int(enabled)
        self._set(name, changes)
        return self.require(name)

    def save_checkpoint(self, name: str, checkpoint: dict[str, Any]) -> None:
        self._set(name, {"checkpoint": json.dumps(checkpoint, separators=(",", ":"))})

    def rotate_keys(self) -> int:
        """Re-encrypt every token under the newest key, in one transaction; the count."""
        with self._connect() as db:
            rows = db.execute("SELECT name, token_ciphertext FROM sources").fetchall()
            for name, ciphertext in rows:
                rotated = self.keyring.rotate(ciphertext, what=f"the token of source {name}")
                db.execute(
                    "UPDATE sources SET token_ciphertext = ? WHERE name = ?", (rotated, name)
                )
        return len(rows)

    def _set(self, name: str, changes: dict[str, Any]) -> None:
        changes = {**changes, "updated_at": now_rfc3339()}
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE sources SET {assignments} WHERE name = ?", (*changes.values(), name)
            )
        if cursor.rowcount == 0:
            raise SourceNotFound(name)


def _to_source(row: tuple[Any, ...]) -> Source:
    name, url, interval, enabled, ca_bundle, insecure, created, updated, checkpoint = row
    return Source(
        name=name,
        base_url=url,
        interval_seconds=interval,
        enabled=bool(enabled),
        ca_bundle=ca_bundle,
        allow_insecure_http=bool(insecure),
        created_at=created,
        updated_at=updated,
        checkpoint=json.loads(checkpoint) if checkpoint else None,
    )
