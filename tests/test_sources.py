"""The source registry, and the standalone source backend that reads it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from config.secrets import DecryptionError, KeyRing, generate_key
from config.sources import (
    InvalidSource,
    SourceExists,
    SourceNotFound,
    SourceRegistry,
    normalise_base_url,
)
from tasks.sinks.base import Checkpoint, RunInfo
from tasks.source_backends import LocalSourceBackend

TOKEN = "c0ffee0123456789abcdef0123456789abcdef01"


@pytest.fixture
def registry(tmp_path: Path) -> SourceRegistry:
    return SourceRegistry(
        tmp_path / "nested" / "sources.sqlite3",
        KeyRing([generate_key()]),
        default_interval_seconds=600,
    )


def test_add_and_read_back(registry: SourceRegistry) -> None:
    source = registry.add("home", "https://Paperless.Example.com/api/", TOKEN)
    assert source.base_url == "https://paperless.example.com"
    assert source.interval_seconds == 600  # the default from the settings
    assert source.enabled
    assert source.created_at.endswith("Z") and source.created_at == source.updated_at
    assert source.checkpoint is None
    assert registry.get("home") == source
    assert registry.token("home") == TOKEN
    assert [s.name for s in registry.list()] == ["home"]


def test_registry_file_is_private(registry: SourceRegistry) -> None:
    assert registry.path.stat().st_mode & 0o777 == 0o600


def test_token_is_not_stored_in_clear(registry: SourceRegistry) -> None:
    registry.add("home", "https://paperless.example.com", TOKEN)
    registry.save_checkpoint("home", {"watermark": "2026-01-01T00:00:00Z"})
    with sqlite3.connect(registry.path) as db:
        db.execute("PRAGMA wal_checkpoint(FULL)")
    raw = b"".join(p.read_bytes() for p in registry.path.parent.iterdir())
    assert TOKEN.encode() not in raw
    assert b"paperless.example.com" in raw  # the file really was read


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://paperless.example.com/", "https://paperless.example.com"),
        ("HTTP://LOCALHOST:8000/api", "http://localhost:8000"),
        ("https://example.com/paperless/api/?x=1#y", "https://example.com/paperless"),
        ("  https://[::1]:8443/ ", "https://[::1]:8443"),
    ],
)
def test_base_url_is_normalised(given: str, expected: str) -> None:
    assert normalise_base_url(given) == expected


@pytest.mark.parametrize(
    "url", ["paperless.example.com", "ftp://x", "https://user:pw@example.com", "https://h:99999"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidSource) as caught:
        normalise_base_url(url)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize("name", ["", "Home", "-x", "a b", "x" * 65, "a/b", "ü"])
def test_bad_names_are_refused(registry: SourceRegistry, name: str) -> None:
    with pytest.raises(InvalidSource):
        registry.add(name, "https://example.com", TOKEN)


def test_names_are_unique(registry: SourceRegistry) -> None:
    registry.add("home", "https://a.example.com", TOKEN)
    with pytest.raises(SourceExists):
        registry.add("home", "https://b.example.com", TOKEN)
    assert registry.get("home").base_url == "https://a.example.com"  # type: ignore[union-attr]


def test_update_remove_and_unknown_names(registry: SourceRegistry) -> None:
    registry.add("home", "https://example.com", TOKEN, 60)
    changed = registry.update("home", interval_seconds=120, enabled=False)
    assert (changed.interval_seconds, changed.enabled) == (120, False)
    with pytest.raises(InvalidSource):
        registry.update("home", interval_seconds=5)
    with pytest.raises(SourceNotFound) as caught:
        registry.update("nope", enabled=True)
    assert str(caught.value) == (
        "there is no source named 'nope'; see `paperless-connector sources list`."
    )
    with pytest.raises(SourceNotFound):
        registry.token("nope")
    assert registry.remove("home") is True
    assert registry.remove("home") is False
    assert registry.list() == []


def test_checkpoint_round_trip(registry: SourceRegistry) -> None:
    registry.add("home", "https://example.com", TOKEN)
    checkpoint = {"watermark": "2026-01-02T03:04:05Z", "known_ids": [[1, 5], [9, 9]], "version": 1}
    registry.save_checkpoint("home", checkpoint)
    assert registry.require("home").checkpoint == checkpoint


def test_rotate_keys_then_old_key_can_go(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    path = tmp_path / "sources.sqlite3"
    SourceRegistry(path, KeyRing([old])).add("a", "https://a.example.com", TOKEN, 60)
    SourceRegistry(path, KeyRing([old])).add("b", "https://b.example.com", TOKEN[::-1], 60)

    with pytest.raises(DecryptionError, match="cannot decrypt the token of source a"):
        SourceRegistry(path, KeyRing([new])).token("a")

    assert SourceRegistry(path, KeyRing([new, old])).rotate_keys() == 2
    after = SourceRegistry(path, KeyRing([new]))
    assert (after.token("a"), after.token("b")) == (TOKEN, TOKEN[::-1])


def test_rotate_keys_is_all_or_nothing(tmp_path: Path) -> None:
    old, lost, new = generate_key(), generate_key(), generate_key()
    path = tmp_path / "sources.sqlite3"
    SourceRegistry(path, KeyRing([old])).add("a", "https://a.example.com", TOKEN, 60)
    SourceRegistry(path, KeyRing([lost])).add("b", "https://b.example.com", TOKEN, 60)
    with pytest.raises(DecryptionError):
        SourceRegistry(path, KeyRing([new, old])).rotate_keys()
    assert SourceRegistry(path, KeyRing([old])).token("a") == TOKEN  # not half-rotated


def test_local_backend_loads_and_commits(registry: SourceRegistry) -> None:
    registry.add("home", "https://example.com", TOKEN, allow_insecure_http=True)
    backend = LocalSourceBackend(registry)
    run = RunInfo(run_id="r1", source_id="home", mode="incremental")

    first = backend.load(run)
    assert (first.base_url, first.token, first.checkpoint) == ("https://example.com", TOKEN, None)
    assert first.allow_insecure_http is True
    assert TOKEN not in repr(first)

    backend.commit(run, Checkpoint(watermark="2026-01-01T00:00:00Z", known_ids=[[1, 3]]), {})
    loaded = backend.load(run).checkpoint
    assert loaded == Checkpoint(watermark="2026-01-01T00:00:00Z", known_ids=[[1, 3]])
    backend.fail(run, "boom")  # nothing to report; the checkpoint stays
    assert backend.load(run).checkpoint == loaded


def test_local_backend_unknown_source_and_bad_checkpoint(registry: SourceRegistry) -> None:
    backend = LocalSourceBackend(registry)
    with pytest.raises(SourceNotFound, match="paperless-connector sources list"):
        backend.load(RunInfo(run_id="r1", source_id="gone", mode="full"))
    registry.add("home", "https://example.com", TOKEN)
    registry.save_checkpoint("home", {"known_ids": "not ranges"})
    assert backend.load(RunInfo(run_id="r2", source_id="home", mode="full")).checkpoint is None
