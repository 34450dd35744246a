"""`paperless-connector run-demo` end to end: a real double, Redis, worker and sync.

Every process the demo starts inherits its CONNECTOR_DATA_DIR, a fresh temporary path, so
"nothing left behind" is checked by looking for any process with that path in its
environment once the demo has exited.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer, free_port

BIN = Path(sys.executable).parent
DEMO_DB = 13


def _demo_env(data_dir: Path, redis_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PAPERLESS_", "CONNECTOR_", "FLOWER_"))
    }
    env.update(
        REDIS_URL=redis_url,
        CONNECTOR_DATA_DIR=str(data_dir),
        COLUMNS="160",  # rich wraps at 80 columns when not on a terminal
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def _survivors(data_dir: Path) -> list[str]:
    """Command lines of live processes that carry this demo's data directory."""
    marker = f"CONNECTOR_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"{entry.name}: {cmdline.decode(errors='replace')}")
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def _assert_nothing_left(data_dir: Path) -> None:
    deadline = time.monotonic() + 5
    while _survivors(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _survivors(data_dir) == []


def _run_demo(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "paperless-connector"), "run-demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_demo_syncs_searches_and_cleans_up(redis_server: RedisServer, tmp_path: Path):
    redis_server.client(DEMO_DB).flushdb()
    data_dir = tmp_path / "data"
    done = _run_demo(tmp_path, _demo_env(data_dir, redis_server.url(DEMO_DB)))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output

    assert f"Redis: {redis_server.url(DEMO_DB)}" in output  # it used the one that answered
    assert "test double with 500 documents" in output
    assert "Full sync of 'demo': completed" in output
    assert re.search(r"documents scanned\s*│\s*500\b", output), output
    assert re.search(r"written to the index\s*│\s*500\b", output), output
    assert re.search(r"documents in the index\s*│\s*500 in ", output), output
    assert (data_dir / "index.sqlite3").is_file()

    # The searches found documents, and the permission-aware one found fewer.
    rechnung = output.split("search 'Rechnung'", 1)[1]
    assert re.search(r"#\d+ Rechnung ", rechnung), output
    assert re.search(r"search 'tag:Inbox'\n\s+#\d+ ", output), output
    seen = re.search(r"--as (\S+): (\d+) of (\d+) hits are theirs to see", output)
    assert seen, output
    assert 0 < int(seen.group(2)) < int(seen.group(3))

    assert "token" not in output.lower()
    _assert_nothing_left(data_dir)


def test_demo_starts_its_own_redis_and_syncs_paperless_url(tmp_path: Path, paperless):
    """No Redis answers REDIS_URL, and PAPERLESS_URL/PAPERLESS_TOKEN name an instance."""
    data_dir = tmp_path / "data"
    env = _demo_env(data_dir, f"redis://127.0.0.1:{free_port()}/0")
    env.update(PAPERLESS_URL=paperless.url, PAPERLESS_TOKEN=paperless.token("admin"))
    done = _run_demo(tmp_path, env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Redis: started a private redis-server at redis://127.0.0.1:" in output
    assert re.search(rf"Paperless-ngx: {re.escape(paperless.url)}/? \(PAPERLESS_URL\)", output)
    assert "test double with" not in output  # no second Paperless-ngx was started
    assert re.search(r"written to the index\s*│\s*200\b", output), output
    assert paperless.token("admin") not in output
    _assert_nothing_left(data_dir)


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path):
    data_dir = tmp_path / "data"
    dead = f"redis://127.0.0.1:{free_port()}/0"
    demo = subprocess.Popen(
        [str(BIN / "paperless-connector"), "run-demo", "--documents", "3000"],
        cwd=tmp_path,
        env=_demo_env(data_dir, dead),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (data_dir / "demo-worker.log").exists():
            assert demo.poll() is None, demo.communicate()[0]
            assert time.monotonic() < deadline, "the demo never started its worker"
            time.sleep(0.1)
        time.sleep(1.0)
        assert len(_survivors(data_dir)) >= 3  # redis, the double, the worker (and its pool)
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, output
    assert "Interrupted: stopping everything the demo started." in output
    _assert_nothing_left(data_dir)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_survivor_check_sees_a_live_child(tmp_path: Path):
    """The check above must be able to fail: a child with the marker is found."""
    env = dict(os.environ, CONNECTOR_DATA_DIR=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        deadline = time.monotonic() + 5
        while not _survivors(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(str(child.pid) in line for line in _survivors(tmp_path))
    finally:
        child.kill()
        child.wait()
