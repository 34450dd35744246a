"""The Omni connector front: the HTTP service Omni's connector-manager calls (`serve`).

It only records and enqueues (`tasks.trigger`) and reads run state from Redis
(`tasks.runs.RunStore`), so it answers at once and a restart loses nothing: the manager's
`GET /sync/{id}` polls keep seeing a run that the workers are still doing. It notes every
source id it is asked to sync (`tasks.omni_sources`): beat keeps periodic syncs for those.
It registers its manifest with the manager at start and every 30 s, as Omni's connectors do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal, Protocol

import click
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from config.settings import Settings, SettingsError, get_settings
from tasks.omni_client import ManagerClient, ManagerError
from tasks.omni_sources import OmniSources

if TYPE_CHECKING:
    from tasks.runs import RunStore

log = logging.getLogger(__name__)

SERVICE = "paperless-connector"
REGISTER_EVERY = 30.0


class RunConflict(Exception):
    """The source already has a sync in progress."""


class Runs(Protocol):
    """What the front needs from the pipeline (tasks/trigger.py and tasks/runs.py)."""

    def trigger(self, source_id: str, mode: str, run_id: str, is_resume: bool) -> None: ...
    def cancel(self, run_id: str) -> bool: ...
    def running(self, run_id: str) -> bool: ...


class PipelineRuns:
    """`Runs` over tasks.trigger; imported on first use so the front starts without Celery."""

    def __init__(self, store: RunStore | None = None) -> None:
        self._store = store  # default: the settings' Redis

    def trigger(self, source_id: str, mode: str, run_id: str, is_resume: bool) -> None:
        from tasks.trigger import AlreadyRunning, trigger_sync

        try:
            trigger_sync(source_id, mode, run_id=run_id, trigger="omni", is_resume=is_resume)
        except AlreadyRunning as exc:
            raise RunConflict(str(exc)) from None

    def cancel(self, run_id: str) -> bool:
        from tasks.trigger import cancel_run

        return cancel_run(run_id)

    def running(self, run_id: str) -> bool:
        if self._store is None:
            from tasks.trigger import get_store

            self._store = get_store()
        record = self._store.get(run_id)
        return record is not None and record.running


class SourceBook(Protocol):
    """Where the front notes each source it is asked to sync (beat schedules those)."""

    def remember(self, source_id: str) -> None: ...


class SyncRequest(BaseModel):
    sync_run_id: str = Field(min_length=1)
    source_id: str = Field(min_length=1)
    sync_mode: Literal["full", "incremental", "realtime"]
    last_sync_at: str | None = None
    checkpoint: dict[str, Any] | None = None  # we read our checkpoint from sync-config
    is_resume: bool = False
    documents_scanned: int = 0
    documents_updated: int = 0


class CancelRequest(BaseModel):
    sync_run_id: str = Field(min_length=1)


def manifest(settings: Settings) -> dict[str, Any]:
    return {
        "name": "paperless_ngx",
        "display_name": "Paperless-ngx",
        "version": _version(),
        "sync_modes": ["full", "incremental"],
        "connector_id": "paperless_ngx",
        "connector_url": f"http://{settings.connector_host_name}:{settings.port}",
        "source_types": ["paperless_ngx"],
        "description": "Documents, OCR text, classification, custom fields and notes from "
        "Paperless-ngx, with their permissions.",
        "search_operators": [
            {"operator": "correspondent", "attribute_key": "correspondent", "value_type": "text"},
            {"operator": "type", "attribute_key": "document_type", "value_type": "text"},
            {"operator": "tag", "attribute_key": "tags", "value_type": "text"},
        ],
        "actions": [],
        "mcp_enabled": False,
    }


def create_app(
    settings: Settings | None = None,
    *,
    runs: Runs | None = None,
    manager: ManagerClient | None = None,
    register_every: float = REGISTER_EVERY,
    sources: SourceBook | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    runs = runs or PipelineRuns()
    known: SourceBook = sources or OmniSources.from_url(settings.redis_url)
    the_manifest = manifest(settings)
    if manager is None and settings.connector_manager_url:
        manager = ManagerClient(
            settings.connector_manager_url,
            timeout=(settings.http_connect_timeout, settings.http_read_timeout),
            retries=1,  # the next registration is 30 s away anyway
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None
        if manager is None:
            log.warning("CONNECTOR_MANAGER_URL is not set: not registering with Omni")
        else:
            task = asyncio.create_task(_register_forever(manager, the_manifest, register_every))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="Paperless-ngx connector", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, f"invalid request: {problems}.")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "healthy", "service": SERVICE}

    @app.get("/manifest")
    def get_manifest() -> dict[str, Any]:
        return the_manifest

    @app.post("/sync")
    def sync(body: SyncRequest) -> JSONResponse:
        # Realtime is not something Paperless-ngx can push; the nearest is an incremental run.
        mode = "full" if body.sync_mode == "full" else "incremental"
        try:
            # Omni lists no sources to a connector: its POST /sync is how beat learns of one.
            known.remember(body.source_id)
            runs.trigger(body.source_id, mode, body.sync_run_id, body.is_resume)
        except RunConflict:
            return _error(409, "Sync already in progress for this source")
        except ValueError as exc:  # e.g. a run id that belongs to another source
            return _error(400, f"{exc}.")
        except RedisError as exc:
            log.warning("could not start sync %s: %s", body.sync_run_id, exc)
            return _error(503, f"could not start the sync ({type(exc).__name__}); {_retry}")
        except Exception:
            log.exception("could not start sync %s", body.sync_run_id)
            return _error(500, "could not start the sync; see the connector's log for why.")
        return JSONResponse({"status": "started"})

    @app.post("/cancel")
    def cancel(body: CancelRequest) -> JSONResponse:
        try:
            found = runs.cancel(body.sync_run_id)
        except Exception as exc:
            log.exception("could not cancel %s", body.sync_run_id)
            return _error(503, f"could not cancel the sync ({type(exc).__name__}); {_retry}")
        if not found:
            return JSONResponse({"status": "not_found"}, status_code=404)
        return JSONResponse({"status": "cancelled"})

    @app.get("/sync/{sync_run_id}")
    def sync_status(sync_run_id: str) -> JSONResponse:
        try:
            return JSONResponse({"running": runs.running(sync_run_id)})
        except Exception as exc:
            # Not "false": the manager would resume a run the workers may still be doing.
            log.exception("could not read run %s", sync_run_id)
            return _error(503, f"could not read the run ({type(exc).__name__}); {_retry}")

    return app


_retry = "check that Redis (REDIS_URL) is reachable and try again."


async def _register_forever(manager: ManagerClient, body: dict[str, Any], every: float) -> None:
    while True:
        try:
            await asyncio.to_thread(manager.register, body)
        except ManagerError as exc:
            log.warning("registration with the connector-manager failed: %s", exc)
        except Exception:
            log.exception("registration with the connector-manager failed")
        await asyncio.sleep(every)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message}, status_code=status)


def _version() -> str:
    try:
        return metadata.version("paperless-connector")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@click.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=None, help="Port to listen on [default: PORT, 8000].")
def command(host: str, port: int | None) -> None:
    """Serve the Omni connector front (health, manifest, sync, cancel, run status).

    Omni's connector-manager calls it; it registers itself with the manager every 30 s.

    \b
    Example:
      CONNECTOR_MANAGER_URL=http://connector-manager:8080 CONNECTOR_HOST_NAME=paperless \\
        paperless-connector serve --port 8000
    """
    import uvicorn

    try:
        settings = get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if port is not None:
        settings = settings.model_copy(update={"port": port})  # the manifest names this port
    from worker.app import app as celery_app

    # Endpoints run in a thread pool; Celery's "current app" is per thread, its default is not.
    celery_app.set_default()
    uvicorn.run(
        create_app(settings),
        host=host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )


serve_command = command  # the name worker/cli.py looks up
