"""The standalone source backend: a run's configuration from the encrypted registry.

In standalone mode there is nobody to report a run to: the run's state lives in Redis
(`tasks/runs.py`), so `commit` only stores the checkpoint and `fail` only logs.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from config.sources import SourceNotFound, SourceRegistry
from tasks.sinks.base import Checkpoint, RunInfo, SourceConfig

log = logging.getLogger(__name__)

__all__ = ["LocalSourceBackend", "SourceNotFound"]


class LocalSourceBackend:
    """Implements `SourceBackend` over `SourceRegistry`."""

    def __init__(self, registry: SourceRegistry) -> None:
        self.registry = registry

    def load(self, run: RunInfo) -> SourceConfig:
        source = self.registry.require(run.source_id)
        return SourceConfig(
            source_id=source.name,
            base_url=source.base_url,
            token=self.registry.token(source.name),
            checkpoint=self._checkpoint(run, source.checkpoint),
            allow_insecure_http=source.allow_insecure_http,
            ca_bundle=source.ca_bundle,
        )

    def commit(self, run: RunInfo, checkpoint: Checkpoint, counts: dict[str, int]) -> None:
        self.registry.save_checkpoint(run.source_id, checkpoint.model_dump(mode="json"))
        log.info(
            "checkpoint of %s committed (watermark %s)",
            run.source_id,
            checkpoint.watermark,
            extra={"run_id": run.run_id, "source_id": run.source_id},
        )

    def fail(self, run: RunInfo, cause: str) -> None:
        log.info(
            "run %s of %s failed: %s",
            run.run_id,
            run.source_id,
            cause,
            extra={"run_id": run.run_id, "source_id": run.source_id},
        )

    @staticmethod
    def _checkpoint(run: RunInfo, stored: dict | None) -> Checkpoint | None:
        if stored is None:
            return None
        try:
            return Checkpoint.model_validate(stored)
        except ValidationError:
            # Without a checkpoint the run looks at every document: slower, never lossy.
            log.warning(
                "the stored checkpoint of %s is unreadable; this run checks every document",
                run.source_id,
                extra={"run_id": run.run_id, "source_id": run.source_id},
            )
            return None
