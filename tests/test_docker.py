"""The docker files: the compose file parses and wires the roles as operations.md says.

There is no Docker engine (or compose plugin) here, so this checks the files' content, not a
running stack.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOCKER = Path(__file__).resolve().parents[1] / "docker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed in this environment")
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text()))


def test_compose_has_every_role(compose: dict[str, Any]):
    assert set(compose["services"]) == {"redis", "worker", "beat", "flower", "api"}
    services = compose["services"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "worker", "worker"]
    assert "control,pages" in services["worker"]["command"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "worker", "beat"]
    assert services["api"]["command"] == ["paperless-connector", "serve"]


def test_redis_keeps_its_data_and_never_evicts(compose: dict[str, Any]):
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_flower_requires_auth_from_the_environment(compose: dict[str, Any]):
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert flower["command"][:4] == ["celery", "-A", "worker", "flower"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])


def test_connector_roles_share_data_and_wait_for_redis(compose: dict[str, Any]):
    for name in ("worker", "beat", "flower", "api"):
        service = compose["services"][name]
        assert "connector-data:/data" in service["volumes"], name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert service["environment"]["CONNECTOR_DATA_DIR"] == "/data", name


def test_no_secret_is_written_into_the_files():
    for path in (DOCKER / "compose.yaml", DOCKER / "Dockerfile"):
        text = path.read_text()
        # Secrets only ever come from the environment: ${VAR...} references, never values.
        for line in text.splitlines():
            match = re.match(r"\s*(\w*(?:KEY|AUTH|TOKEN|PASSWORD)\w*):\s*(\S+)", line)
            if match:
                assert match.group(2).startswith('"${') or match.group(2).startswith("${"), line


def test_dockerfile_runs_as_non_root_with_cached_dependencies():
    text = (DOCKER / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert re.search(r"^USER connector$", text, re.M)
    assert text.index("COPY pyproject.toml") < text.index("COPY tasks")
    assert "HEALTHCHECK" in text
