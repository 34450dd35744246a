"""The key ring: tokens encrypted at rest, keys rotated without losing a token."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config.secrets import DecryptionError, KeyFileError, KeyRing, SecretsError, generate_key
from config.settings import Settings

TOKEN = "0123456789abcdef0123456789abcdef01234567"


def settings_for(data_dir: Path, keys: str | None = None) -> Settings:
    return Settings(connector_data_dir=data_dir, CONNECTOR_SECRET_KEYS=keys)


def test_round_trip_and_ciphertext_hides_the_token() -> None:
    ring = KeyRing([generate_key()])
    ciphertext = ring.encrypt(TOKEN)
    assert TOKEN not in ciphertext
    assert ring.decrypt(ciphertext) == TOKEN


def test_rotation_add_new_key_first_then_drop_the_old_one() -> None:
    old, new = generate_key(), generate_key()
    stored = KeyRing([old]).encrypt(TOKEN)

    both = KeyRing([new, old])
    assert both.decrypt(stored) == TOKEN  # old tokens still decrypt after adding a key
    rotated = both.rotate(stored)
    assert Fernet(new.encode()).decrypt(rotated.encode()).decode() == TOKEN

    only_new = KeyRing([new])
    assert only_new.decrypt(rotated) == TOKEN  # the old key can go now
    with pytest.raises(DecryptionError):
        only_new.decrypt(stored)


def test_wrong_key_is_one_sentence_naming_the_source_and_the_fix(tmp_path: Path) -> None:
    stored = KeyRing([generate_key()]).encrypt(TOKEN)
    ring = KeyRing.from_settings(settings_for(tmp_path, generate_key()))
    with pytest.raises(DecryptionError) as caught:
        ring.decrypt(stored, what="the token of source home")
    assert str(caught.value) == (
        "cannot decrypt the token of source home: the secret keys changed; "
        "add the old key to CONNECTOR_SECRET_KEYS after the new one."
    )


def test_keys_from_settings_newest_first(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    ring = KeyRing.from_settings(settings_for(tmp_path, f" {new} , {old} "))
    assert ring.key_count == 2
    assert Fernet(new.encode()).decrypt(ring.encrypt(TOKEN).encode()).decode() == TOKEN
    assert not (tmp_path / "secret.key").exists()  # no key file when keys are given


def test_malformed_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(SecretsError) as caught:
        KeyRing.from_settings(settings_for(tmp_path, f"{generate_key()},not-a-key-secretish"))
    assert "key number 2 in CONNECTOR_SECRET_KEYS" in str(caught.value)
    assert "not-a-key-secretish" not in str(caught.value)


def test_key_file_created_once_with_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        first = KeyRing.from_settings(settings_for(data_dir))
    finally:
        os.umask(old_umask)
    key_file = data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    ciphertext = first.encrypt(TOKEN)
    second = KeyRing.from_settings(settings_for(data_dir))  # reuses the file, same key
    assert second.decrypt(ciphertext) == TOKEN
    assert len(key_file.read_text().split()) == 1


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    KeyRing.from_settings(settings_for(tmp_path))
    key_file = tmp_path / "secret.key"
    key_file.chmod(0o644)
    with pytest.raises(KeyFileError) as caught:
        KeyRing.from_settings(settings_for(tmp_path))
    assert "chmod 600" in str(caught.value)


def test_key_file_with_a_new_key_line_first_rotates(tmp_path: Path) -> None:
    ring = KeyRing.from_settings(settings_for(tmp_path))
    stored = ring.encrypt(TOKEN)
    key_file = tmp_path / "secret.key"
    key_file.write_text(generate_key() + "\n" + key_file.read_text())
    rotated = KeyRing.from_settings(settings_for(tmp_path)).rotate(stored)
    assert KeyRing([key_file.read_text().split()[0]]).decrypt(rotated) == TOKEN
