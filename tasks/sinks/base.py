"""The one interface both sinks implement, and the source backend that feeds a run.

A *sink* is where documents go (the local index, or Omni's connector-manager). A *source
backend* is where a run's configuration, credentials and checkpoint come from and go back to
(the encrypted local registry, or Omni's sync-config and checkpoint endpoints).

Every method is idempotent: a page task that runs twice (redelivery, retry) leaves the sink
as running it once. `write` and `delete` return only once the change is durable.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from pydantic import BaseModel, Field

from tasks.document import IndexedDocument, Principals


class StoredState(NamedTuple):
    """What a sink remembers of a document it holds, to skip unchanged ones.

    A plain tuple, not a model: a plan reads one per document of the source (100,000
    validated models took 1.2 s of an incremental run's planning, these about 0.05 s).
    """

    light_fingerprint: str
    fingerprint: str


class Checkpoint(BaseModel):
    """Committed by the finalizer only, after every page of a run is durably in the sink.

    `watermark` is an RFC 3339 time on Paperless-ngx's clock (its `Date` header at the start
    of the run, less an overlap). `known_ids` are the ids of every document the source held
    at that run, as sorted inclusive ranges `[[first, last], ...]` (compact for dense ids).
    `lookups` is the digest of the run's lookup snapshot when no document failed, and
    `listing` that of the memo of its light listing (`tasks.listing.ListingMemo`).
    """

    watermark: str | None = None
    known_ids: list[list[int]] = Field(default_factory=list)
    # A digest of the run's lookups (names, users, groups, custom fields), when every
    # document was written with them: the next plan may then skip resolving names.
    lookups: str | None = None
    # The digest of the memo of the run's light listing, under the same condition: the next
    # plan may then skip decoding the pages whose bytes are the same.
    listing: str | None = None
    version: int = 1


class SourceConfig(BaseModel):
    """Everything a run needs to reach one Paperless-ngx instance. Never stored in Redis."""

    source_id: str
    base_url: str
    token: str = Field(repr=False)
    checkpoint: Checkpoint | None = None
    allow_insecure_http: bool = False
    ca_bundle: str | None = None  # a private CA of this source (else the CA_BUNDLE setting)


class RunInfo(BaseModel):
    run_id: str
    source_id: str
    mode: str  # "full" | "incremental"


class FileSource(Protocol):
    def download(self, doc_id: int) -> tuple[bytes, str, str]:
        """The archived file (else the original) as (bytes, mime type, file name)."""
        ...


class Sink(Protocol):
    name: str

    def stored_states(
        self, source_id: str, doc_ids: list[int] | None = None
    ) -> dict[int, StoredState]:
        """States of the given documents (all of the source's when `doc_ids` is None)."""
        ...

    def write(
        self, run: RunInfo, docs: list[IndexedDocument], files: FileSource | None = None
    ) -> None:
        """Upsert these documents; durable on return.

        `files` lets a sink fetch the file of a document without OCR text (Omni hands it to
        its own extraction; the local index ignores it).
        """
        ...

    def delete(self, run: RunInfo, doc_ids: list[int]) -> None:
        """Remove these documents of the run's source; unknown ids are ignored."""
        ...

    def record_principals(self, run: RunInfo, principals: Principals) -> None:
        """Users and groups of the source (local: for `search --as`; Omni: group events)."""
        ...

    def progress(self, run: RunInfo, scanned: int) -> None:
        """A page finished having looked at `scanned` documents (Omni: scanned + heartbeat)."""
        ...

    def close(self) -> None: ...


class SourceBackend(Protocol):
    def load(self, run: RunInfo) -> SourceConfig:
        """Configuration, credentials and the last committed checkpoint of the run's source."""
        ...

    def commit(self, run: RunInfo, checkpoint: Checkpoint, counts: dict[str, int]) -> None:
        """Store the checkpoint and mark the run completed (Omni: checkpoint, then complete)."""
        ...

    def fail(self, run: RunInfo, cause: str) -> None:
        """Report the run failed with a one-line cause; the checkpoint stays as it was."""
        ...
