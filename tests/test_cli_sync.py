"""The CLI against the Paperless-ngx double and a real Celery worker: add, sync --wait,
already running, cancel, a failed run, Ctrl-C while waiting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.support.worker import SyncEnv
from worker import cli

SCRIPT = str(Path(sys.executable).with_name("paperless-connector"))


def run_cli(env: dict[str, str], *args: str, timeout: float = 120, **extra: str) -> Any:
    return subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        env={**env, **extra},
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def invoke(*args: str, **env: str) -> Any:
    """In-process, for the steps whose console-script path another test already covers."""
    return CliRunner().invoke(cli.main, list(args), env=env or None)


def test_add_as_admin_then_as_a_user_with_fewer_rights(sync_env: SyncEnv, paperless: Any) -> None:
    admin = run_cli(
        sync_env.env, "sources", "add", "main", "--url", paperless.url,
        PAPERLESS_TOKEN=paperless.token("admin"),
    )  # fmt: skip
    assert admin.returncode == 0, admin.stderr
    assert f"Paperless-ngx {paperless.release} at {paperless.url}: API version 10" in admin.stdout
    assert "warning" not in admin.stderr

    dave = invoke("sources", "add", "dave", "--url", paperless.url,
                  PAPERLESS_TOKEN=paperless.token("dave"))  # fmt: skip
    assert dave.exit_code == 0, dave.output
    for lookup in ("custom_fields", "users", "groups"):
        assert f"/api/{lookup}/ (403)" in dave.stderr
    assert "custom fields will be missing" in dave.stderr
    assert paperless.token("dave") not in dave.output
    assert {entry.method for entry in paperless.log} == {"GET"}

    wrong = invoke("sources", "add", "bad", "--url", paperless.url, PAPERLESS_TOKEN="0" * 40)
    assert wrong.exit_code == 2
    assert wrong.stderr.startswith("error: authentication failed")


def test_sync_wait_completes_and_the_documents_are_searchable(
    sync_env: SyncEnv, worker: Any, paperless: Any
) -> None:
    sync_env.add_source("main", paperless)
    result = run_cli(sync_env.env, "sync", "main", "--full", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr + worker.log()[-3000:]
    assert "completed in" in result.stdout
    run_id = result.stdout.split("run ", 1)[1].split(".", 1)[0]
    record = sync_env.store.get(run_id)
    assert record is not None and record.state == "completed"
    assert f"scanned {record.scanned} · written {record.written}" in result.stdout
    assert record.written > 0

    exported = invoke("export", "--source", "main").stdout.splitlines()
    assert len(exported) == record.written
    title = json.loads(exported[0])["title"]
    hits = json.loads(invoke("search", title, "--json").stdout)
    assert json.loads(exported[0])["key"] in [hit["key"] for hit in hits]

    status = json.loads(invoke("status", "main", "--json").stdout)
    assert status[0]["runs"][0]["run_id"] == run_id and status[0]["active_run"] is None


def test_already_running_and_cancel(sync_env: SyncEnv, paperless: Any) -> None:
    sync_env.add_source("main", paperless)
    assert sync_env.store.create("held-run", "main", "full", "beat") is None  # no worker: stays

    busy = run_cli(sync_env.env, "sync", "main")
    assert busy.returncode == 1
    assert busy.stderr.strip() == "a sync of main is already running (run held-run)."

    cancelled = invoke("cancel", "held-run")
    assert cancelled.exit_code == 0, cancelled.output
    assert sync_env.store.get("held-run").state == "cancelled"  # type: ignore[union-attr]
    again = invoke("cancel", "held-run")
    assert again.exit_code == 1 and "not running" in again.stderr


def test_sync_of_an_unknown_source(sync_env: SyncEnv) -> None:
    result = invoke("sync", "nope")
    assert result.exit_code == 2
    assert "sources list" in result.stderr


def test_failed_run_exits_1_with_its_cause(sync_env: SyncEnv, worker: Any, paperless: Any) -> None:
    sync_env.add_source("main", paperless)
    paperless.stop()
    result = run_cli(sync_env.env, "sync", "main", "--wait")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed in" in result.stdout
    assert "cause: could not reach Paperless-ngx" in result.stdout


# -- waiting, without a worker: a scripted run store ----------------------------------


class ScriptedStore:
    """Returns the records of a run one poll after another; raises what it is given."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps
        self.polls = 0

    def get(self, run_id: str) -> Any:
        step = self.steps[min(self.polls, len(self.steps) - 1)]
        self.polls += 1
        if isinstance(step, BaseException):
            raise step
        return step

    def errors(self, run_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return [{"doc_id": 7, "reason": "created: invalid date '2024-13-45'"}][:limit]


def record(state: str, **counts: int) -> Any:
    from tasks.runs import RunRecord

    return RunRecord(
        run_id="r1", source_id="main", mode="full", state=state, trigger="cli",
        created_at="2026-01-01T00:00:00Z", started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:01:30Z" if state != "running" else None, **counts,
    )  # fmt: skip


def test_follow_polls_until_the_run_ends_and_summarises() -> None:
    final = record("completed", pages_total=2, pages_done=2, scanned=150, written=140, failed=1)
    store = ScriptedStore([record("running", pages_total=2), final])
    sleeps: list[float] = []
    with CliRunner().isolation() as streams:
        assert cli.follow_run(store, "r1", sleep=sleeps.append) == final
        cli.print_summary(store, final)
        text = streams[0].getvalue().decode()
    assert sleeps == [cli.POLL_SECONDS]
    assert "Run r1 (full sync of main) completed in 1m 30s." in text
    assert "pages 2/2 · scanned 150 · written 140" in text
    assert "document 7: created: invalid date" in text


@pytest.mark.parametrize(("answer", "cancels"), [("y\n", True), ("n\n", False)])
def test_ctrl_c_while_waiting_asks_whether_to_cancel(
    monkeypatch: pytest.MonkeyPatch, answer: str, cancels: bool
) -> None:
    import tasks.trigger

    cancelled: list[str] = []
    monkeypatch.setattr(tasks.trigger, "cancel_run", lambda run_id: cancelled.append(run_id))
    final = record("cancelled")
    store = ScriptedStore([record("running"), KeyboardInterrupt(), final])
    with CliRunner().isolation(input=answer):
        outcome = cli.follow_run(store, "r1", sleep=lambda _: None)
    assert cancelled == (["r1"] if cancels else [])
    assert outcome == (final if cancels else None)
