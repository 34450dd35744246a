"""The key ring that encrypts source tokens at rest (Fernet, with rotation).

Keys come from `CONNECTOR_SECRET_KEYS` (comma-separated, newest first) or, when that is
unset, from a key file in the data directory that is created on first use. The newest key
encrypts; every key decrypts, so a new key can be put in front of the old one, the tokens
re-encrypted (`rotate`), and the old key dropped afterwards.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

if TYPE_CHECKING:
    from config.settings import Settings


class SecretsError(Exception):
    """The keys are missing, malformed or unsafe, or a ciphertext cannot be decrypted."""


class KeyFileError(SecretsError):
    """The key file cannot be created, read or trusted."""


class DecryptionError(SecretsError):
    """A token was encrypted under a key the ring no longer holds."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _parse_keys(values: list[str], origin: str) -> list[Fernet]:
    fernets = []
    for position, value in enumerate(values, start=1):
        try:
            fernets.append(Fernet(value.encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            # The value is a secret: name its position, never echo it.
            raise SecretsError(
                f"key number {position} in {origin} is not a Fernet key; "
                "generate one with `paperless-connector keys generate`."
            ) from None
    if not fernets:
        raise SecretsError(
            f"{origin} holds no key; generate one with `paperless-connector keys generate`."
        )
    return fernets


def _split(text: str, separator: str) -> list[str]:
    parts = (part.strip() for part in text.split(separator))
    return [part for part in parts if part and not part.startswith("#")]


def _create_key_file(path: Path) -> None:
    """Create the key file with a fresh key, readable by its owner only, atomically.

    O_EXCL makes a second process racing us fail instead of overwriting the key the first
    one may already have used; 0o600 is set at creation so the key is never briefly public.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise KeyFileError(
            f"cannot create the key file {path}: {exc.strerror}; "
            "check the permissions of the data directory or set CONNECTOR_SECRET_KEYS."
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(generate_key() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_key_file(path: Path) -> list[str]:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"the key file {path} is readable by other users (mode "
                f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}` and try again."
            )
        text = path.read_text(encoding="ascii")
    except KeyFileError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not a text file"
        raise KeyFileError(
            f"cannot read the key file {path}: {reason}; "
            "restore it from a backup or set CONNECTOR_SECRET_KEYS."
        ) from None
    return _split(text, "\n")


class KeyRing:
    """Encrypts with the newest key, decrypts with any."""

    def __init__(self, keys: list[str], origin: str = "the key ring") -> None:
        self._fernets = _parse_keys(keys, origin)
        self._multi = MultiFernet(self._fernets)
        self.origin = origin

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        if settings.secret_keys and settings.secret_keys.strip():
            return cls(_split(settings.secret_keys, ","), "CONNECTOR_SECRET_KEYS")
        path = settings.key_file
        if not path.exists():
            _create_key_file(path)
        return cls(_read_key_file(path), f"the key file {path}")

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str, *, what: str = "a token") -> str:
        try:
            return self._multi.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise DecryptionError(self._lost_key_message(what)) from None

    def rotate(self, ciphertext: str, *, what: str = "a token") -> str:
        """The same plaintext, encrypted under the newest key."""
        try:
            return self._multi.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise DecryptionError(self._lost_key_message(what)) from None

    def _lost_key_message(self, what: str) -> str:
        if self.origin == "CONNECTOR_SECRET_KEYS":
            advice = "add the old key to CONNECTOR_SECRET_KEYS after the new one"
        else:
            advice = (
                f"restore the old key in {self.origin} (a line after the new one), "
                "or set CONNECTOR_SECRET_KEYS to the new key followed by the old one"
            )
        return f"cannot decrypt {what}: the secret keys changed; {advice}."
