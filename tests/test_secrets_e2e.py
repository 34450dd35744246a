"""A token never leaves the places it must be: proven on a whole sync, not on one function.

A sync runs with a recognisable token through a real worker while Flower watches; then
every log line, every Redis key and value, Flower's task API, `status --json` and the
files in the data directory are searched for the token. A failing run (the token revoked
mid-way) is included, because error paths are where secrets usually slip out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tasks.trigger import trigger_sync
from tests.paperless_double import PaperlessDouble
from tests.support.flower import running
from tests.support.worker import REPO, SyncEnv, only_gets

TOKEN = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e7a11c"  # recognisable, shaped like a real one
FLOWER_PASSWORD = "flower-pw-31337"


@pytest.fixture
def flower(sync_env: SyncEnv, tmp_path: Path) -> Iterator[str]:
    argv = [sys.executable, "-m", "worker.flower_config", "--address", "127.0.0.1"]
    env = {**sync_env.env, "FLOWER_BASIC_AUTH": f"ops:{FLOWER_PASSWORD}"}
    with running(argv, tmp_path, env) as (base, _log):
        yield base


def redis_dump(sync_env: SyncEnv) -> bytes:
    """Every key and value of the test's Redis database, whatever its type."""
    client = sync_env.store.redis
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key).decode()
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                parts += [field, value]
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(client.smembers(key))
        elif kind == "zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            parts.append(repr(client.xrange(key)).encode())
    return b"\n".join(parts)


def files_under(path: Path) -> Iterator[tuple[Path, bytes]]:
    for file in path.rglob("*"):
        if file.is_file():
            yield file, file.read_bytes()


def test_the_token_appears_nowhere_after_syncs_that_succeed_and_fail(
    sync_env: SyncEnv, paperless: PaperlessDouble, flower: str
) -> None:
    paperless.corpus.user("admin").token = TOKEN
    worker = sync_env.start_worker()
    sync_env.add_source("secretive", paperless)

    assert sync_env.wait(trigger_sync("secretive", "full").run_id).state == "completed"
    paperless.edit_document(sorted(paperless.corpus.documents)[0], title="Changed")
    assert sync_env.wait(trigger_sync("secretive", "incremental").run_id).state == "completed"
    # The token is revoked on the server: the next run fails with an authentication error.
    paperless.corpus.user("admin").token = "0" * 40
    failed = sync_env.wait(trigger_sync("secretive", "incremental").run_id)
    assert failed.state == "failed" and "authentication failed" in (failed.error or "")

    secret = TOKEN.encode()
    assert secret not in redis_dump(sync_env)
    assert TOKEN not in worker.log()
    for file, content in files_under(sync_env.data_dir):
        assert secret not in content, f"the token is in {file}"

    tasks = requests.get(f"{flower}/api/tasks", auth=("ops", FLOWER_PASSWORD), timeout=10)
    assert tasks.status_code == 200
    seen = tasks.json()
    assert any(task["name"] == "paperless.fetch_page" for task in seen.values())
    assert TOKEN not in tasks.text
    for task_id in list(seen)[:20]:
        info = requests.get(
            f"{flower}/api/task/info/{task_id}", auth=("ops", FLOWER_PASSWORD), timeout=10
        )
        assert TOKEN not in info.text

    status = subprocess.run(
        [str(Path(sys.executable).with_name("paperless-connector")), "status", "--json"],
        cwd=REPO,
        env=sync_env.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)
    assert TOKEN not in status.stdout + status.stderr
    assert only_gets(paperless)
