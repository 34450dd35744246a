"""Responses recorded from a real Paperless-ngx 3.0.5 server (shared/reference)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tasks.paperless.errors import AuthenticationError
from tasks.snapshot import LookupSnapshot

_REPO = Path(__file__).resolve().parents[2]
_CANDIDATES = (
    _REPO.parent / "shared" / "reference" / "paperless-samples",
    Path("/work/shared/reference/paperless-samples"),
)


def samples_dir() -> Path:
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    pytest.skip("the recorded Paperless-ngx samples (shared/reference) are not beside the repo")


@cache
def _load(name: str) -> Any:
    return json.loads((samples_dir() / name).read_text(encoding="utf-8"))


def sample(name: str) -> Any:
    """A fresh copy of one recorded response, e.g. sample("document_full_90.json")."""
    return copy.deepcopy(_load(name))


class RecordedLookups:
    """Answers list_lookup from the recorded lookups; names in `forbidden` answer 403."""

    def __init__(self, forbidden: tuple[str, ...] = ()) -> None:
        self.forbidden = forbidden
        self.asked: list[str] = []

    def list_lookup(self, name: str) -> list[dict[str, Any]]:
        self.asked.append(name)
        if name in self.forbidden:
            raise AuthenticationError(
                "authentication failed: check the API token and its user's permissions "
                f"(GET /api/{name}/ answered 403)",
                status=403,
            )
        rows: list[dict[str, Any]] = sample(f"{name}.json")["results"]
        return rows


def recorded_snapshot(forbidden: tuple[str, ...] = ()) -> LookupSnapshot:
    return LookupSnapshot.load(RecordedLookups(forbidden))
