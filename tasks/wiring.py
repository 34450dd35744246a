"""Which sink and source backend a run uses, and the per-process connections to them.

Omni mode (CONNECTOR_MANAGER_URL set) sends documents to Omni and reads sources from it;
otherwise documents go to the embedded local index and sources come from the encrypted
registry. Everything here is built once per process: a Celery prefork child must not reuse
its parent's sockets or SQLite handles, so the cache is keyed by the process id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from redis import Redis

from config.settings import Settings, get_settings
from tasks.limits import ServerLimiter
from tasks.paperless.client import PaperlessClient
from tasks.sinks.base import Sink, SourceBackend, SourceConfig


@dataclass
class Wiring:
    settings: Settings
    redis: Redis
    sink: Sink
    backend: SourceBackend


_cache: dict[int, Wiring] = {}


def get_redis(settings: Settings | None = None) -> Redis:
    settings = settings or get_settings()
    return Redis.from_url(settings.redis_url, health_check_interval=30)


def wiring() -> Wiring:
    """This process's sink, backend and Redis connection (built on first use)."""
    pid = os.getpid()
    built = _cache.get(pid)
    if built is None:
        _cache.clear()  # entries of a parent process are not ours to use
        built = _build(get_settings())
        _cache[pid] = built
    return built


def _build(settings: Settings) -> Wiring:
    redis = get_redis(settings)
    sink: Any
    backend: Any
    if settings.omni_mode:
        from tasks.sinks.omni import OmniSink, OmniSourceBackend, manager_from_settings

        manager = manager_from_settings(settings)
        sink, backend = OmniSink(manager, redis), OmniSourceBackend(manager)
    else:
        from config.secrets import KeyRing
        from config.sources import SourceRegistry
        from tasks.sinks.local import LocalIndex
        from tasks.source_backends import LocalSourceBackend

        registry = SourceRegistry(settings.registry_path, KeyRing.from_settings(settings))
        sink, backend = LocalIndex(settings.index_path), LocalSourceBackend(registry)
    return Wiring(settings=settings, redis=redis, sink=sink, backend=backend)


def source_exists(source_id: str) -> bool | None:
    """Whether the standalone registry knows the source; None in Omni mode (Omni knows)."""
    settings = get_settings()
    if settings.omni_mode:
        return None
    from config.secrets import KeyRing
    from config.sources import SourceRegistry

    registry = SourceRegistry(settings.registry_path, KeyRing.from_settings(settings))
    return registry.get(source_id) is not None


def make_client(config: SourceConfig, settings: Settings, redis: Redis) -> PaperlessClient:
    """A client for one run's source, capped by the server's cross-worker limiter."""
    limiter = ServerLimiter(
        redis,
        config.base_url,
        settings.max_concurrency_per_server,
        claim_seconds=settings.http_connect_timeout + settings.http_read_timeout + 60,
    )
    return PaperlessClient(
        config.base_url,
        config.token,
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        verify=config.ca_bundle if config.ca_bundle and settings.tls_verify else settings.tls,
        retries=settings.http_retries,
        limiter=limiter,
        allow_insecure_http=config.allow_insecure_http or settings.allow_insecure_http,
    )
