"""Drives one sync of this connector the way a user would, in its own process.

It reads the settings from the environment the benchmark set up (Redis, data dir, keys,
optionally the connector-manager), registers the source in standalone mode, triggers the
run with `tasks.trigger.trigger_sync`, waits for it to end and prints the run record with
the wall time from trigger to end. A process of its own because the Celery app and the
settings are read once per process, and each run of the benchmark has its own.

`python -m bench.connector_driver --source bench --mode full [--register URL] [--run-id ID]`
(the token for --register comes from BENCH_PAPERLESS_TOKEN).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

POLL_SECONDS = 0.1


def register(source_id: str, base_url: str, token: str) -> None:
    from config.secrets import KeyRing
    from config.settings import get_settings
    from config.sources import SourceRegistry

    settings = get_settings()
    registry = SourceRegistry(settings.registry_path, KeyRing.from_settings(settings))
    if registry.get(source_id) is not None:
        registry.remove(source_id)
    registry.add(source_id, base_url, token)


def sync(source_id: str, mode: str, run_id: str | None, timeout: float) -> dict[str, Any]:
    import worker  # noqa: F401  (binds the shared tasks to the app on the settings' Redis)
    from tasks.trigger import get_store, trigger_sync

    started = time.monotonic()
    record = trigger_sync(source_id, mode, run_id=run_id, trigger="cli")
    store = get_store()
    deadline = started + timeout
    while True:
        current = store.get(record.run_id)
        if current is not None and not current.running:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the run {record.run_id} did not end within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - started
    result = current.model_dump(mode="json")
    result["seconds"] = seconds
    result["errors_sample"] = store.errors(record.run_id, limit=5)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="bench")
    parser.add_argument("--mode", choices=["full", "incremental"], default="full")
    parser.add_argument("--register", metavar="URL")
    parser.add_argument("--run-id")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    if args.register:
        register(args.source, args.register, os.environ["BENCH_PAPERLESS_TOKEN"])
    print(json.dumps(sync(args.source, args.mode, args.run_id, args.timeout)), flush=True)


if __name__ == "__main__":
    main()
