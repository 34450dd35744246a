"""Flower: behind basic auth, /metrics and /healthcheck open, never exposed without a password."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.flower import running
from tests.support.redis_server import RedisServer, free_port
from worker.flower_config import (
    FlowerConfigError,
    check_exposure,
    flower_argv,
    flower_env,
    parse_basic_auth,
)

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "pw-7f3a9c"


def _env(redis_url: str, auth: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env["REDIS_URL"] = redis_url
    if auth is not None:
        env["FLOWER_BASIC_AUTH"] = auth
    return env


def test_options_never_carry_the_password():
    pairs = parse_basic_auth(f"ops:{PASSWORD}")
    argv = flower_argv("0.0.0.0", 5555)
    assert not any(PASSWORD in arg for arg in argv)
    assert "--address=0.0.0.0" in argv
    assert flower_env(pairs)["FLOWER_BASIC_AUTH"] == f"ops:{PASSWORD}"


@pytest.mark.parametrize("value", ["ops", "ops:", ":secret", "ops:pw,alone"])
def test_malformed_credentials_are_refused(value: str):
    with pytest.raises(FlowerConfigError, match="user:password"):
        parse_basic_auth(value)


def test_no_password_is_only_allowed_on_loopback():
    check_exposure("127.0.0.1", [])
    check_exposure("::1", [])
    check_exposure("0.0.0.0", ["ops:pw"])
    for address in ("0.0.0.0", "", "192.168.1.4", "flower.example.com"):
        with pytest.raises(FlowerConfigError, match="refusing to start Flower"):
            check_exposure(address, [])


def test_refuses_to_start_on_all_interfaces_without_auth(redis_server: RedisServer, tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "worker.flower_config", "--address", "0.0.0.0"],
        cwd=tmp_path,
        env=_env(redis_server.url(9), None) | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "refusing to start Flower on 0.0.0.0 without a password" in done.stderr


CELERY_FLOWER = [sys.executable, "-m", "celery", "-A", "worker", "flower"]


def test_plain_celery_flower_refuses_all_interfaces_without_auth(
    redis_server: RedisServer, tmp_path: Path
):
    """`make flower` runs `celery -A worker flower`, whose default is every interface."""
    done = subprocess.run(
        [*CELERY_FLOWER, f"--port={free_port()}"],
        cwd=tmp_path,
        env=_env(redis_server.url(9), None) | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to start Flower on all interfaces without a password" in done.stderr


@pytest.fixture()
def flower(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    argv = [sys.executable, "-m", "worker.flower_config", "--address", "127.0.0.1"]
    with running(argv, tmp_path, _env(redis_server.url(9), f"ops:{PASSWORD}")) as served:
        yield served


def test_plain_celery_flower_takes_the_password_from_the_env_file(
    redis_server: RedisServer, tmp_path: Path
):
    (tmp_path / ".env").write_text(f"FLOWER_BASIC_AUTH=ops:{PASSWORD}\n")
    argv = [*CELERY_FLOWER, "--address=127.0.0.1"]
    with running(argv, tmp_path, _env(redis_server.url(9), None)) as (base, _log):
        assert requests.get(f"{base}/api/tasks", timeout=5).status_code == 401
        authed = requests.get(f"{base}/api/tasks", auth=("ops", PASSWORD), timeout=5)
        assert authed.status_code == 200


def test_flower_needs_the_password_and_serves_metrics(flower: tuple[str, Path]):
    base, log = flower
    assert requests.get(f"{base}/healthcheck", timeout=5).text == "OK"
    assert requests.get(f"{base}/api/tasks", timeout=5).status_code == 401
    assert requests.get(f"{base}/", timeout=5).status_code == 401
    assert requests.get(f"{base}/api/tasks", auth=("ops", "wrong"), timeout=5).status_code == 401

    authed = requests.get(f"{base}/api/tasks", auth=("ops", PASSWORD), timeout=5)
    assert authed.status_code == 200
    assert authed.json() == {}

    metrics = requests.get(f"{base}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert "flower_events_total" in metrics.text

    page = requests.get(f"{base}/workers", auth=("ops", PASSWORD), timeout=5)
    assert page.status_code == 200
    for text in (page.text, metrics.text, log.read_text()):
        assert PASSWORD not in text
