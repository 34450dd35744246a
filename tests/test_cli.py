"""The command line, run as a user would: the real console script, or click's runner."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from click.testing import CliRunner

from config.secrets import KeyRing, generate_key
from config.settings import get_settings
from config.sources import SourceRegistry
from worker.cli import Duration, format_duration, main

TOKEN = "feedc0de0123456789abcdef0123456789abcdef"
SCRIPT = str(Path(sys.executable).with_name("paperless-connector"))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    values = {
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CONNECTOR_SECRET_KEYS": generate_key(),
        "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens: Redis is never needed here
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("PAPERLESS_TOKEN", "CONNECTOR_MANAGER_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


def run_cli(env: dict[str, str], *args: str, stdin: str = "", **extra: str) -> Any:
    """The installed console script in a subprocess, exactly as a user runs it."""
    full_env = {k: v for k, v in os.environ.items() if k != "PAPERLESS_TOKEN"}
    full_env.update(env, **extra)
    return subprocess.run(
        [SCRIPT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


class Outcome(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def invoke(env: dict[str, str], *args: str, stdin: str = "", **extra: str) -> Outcome:
    """The same command in-process with click's runner: fast, for the steps where the
    console script itself adds nothing a subprocess test does not already show."""
    overrides: dict[str, str | None] = {"PAPERLESS_TOKEN": None, "COLUMNS": "200", **extra}
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, list(args), input=stdin, env=overrides)
    finally:
        get_settings.cache_clear()
    return Outcome(result.exit_code, result.stdout, result.stderr)


def registry(env: dict[str, str]) -> SourceRegistry:
    return SourceRegistry(
        Path(env["CONNECTOR_DATA_DIR"]) / "sources.sqlite3",
        KeyRing([env["CONNECTOR_SECRET_KEYS"]]),
        default_interval_seconds=300,
    )


# -- a tiny stand-in server for the ways `sources add` can go wrong ---------------------


class _Stub(BaseHTTPRequestHandler):
    behaviour = "paperless"
    forbidden: tuple[str, ...] = ("users", "groups")
    methods: list[str] = []

    def do_GET(self) -> None:
        self.methods.append("GET")
        path = self.path.split("?")[0]
        if self.behaviour == "html":
            return self._send(200, b"<html>login</html>", "text/html")
        if self.behaviour == "401" or self.headers.get("Authorization") != f"Token {TOKEN}":
            return self._send(401, b'{"detail": "Invalid token."}')
        lookup = path.strip("/").split("/")[-1]
        if lookup in self.forbidden:
            return self._send(403, b'{"detail": "You do not have permission."}')
        count = 42 if lookup == "documents" else 0
        body = {"count": count, "next": None, "previous": None, "results": []}
        return self._send(200, json.dumps(body).encode())

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("X-Api-Version", "9")
        self.send_header("X-Version", "2.15.3")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[type[_Stub]]:
    handler = type("Handler", (_Stub,), {"methods": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("90", 90)]
)
def test_durations(text: str, seconds: int) -> None:
    assert Duration().convert(text, None, None) == seconds


def test_duration_formatting() -> None:
    assert [format_duration(s) for s in (None, 5, 300, 5400, 90061)] == [
        "-",
        "5s",
        "5m",
        "1h 30m",
        "1d 1h",
    ]


# -- sources add ---------------------------------------------------------------------


def test_add_checks_the_server_and_stores_the_token_encrypted(
    env: dict[str, str], stub: Any
) -> None:
    result = run_cli(
        env,
        "sources",
        "add",
        "home",
        "--url",
        stub.url + "/api/",
        "--interval",
        "10m",
        "--token-stdin",
        stdin=TOKEN + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "Paperless-ngx 2.15.3" in result.stdout and "42 documents visible" in result.stdout
    assert "/api/users/ (403)" in result.stderr and "/api/groups/ (403)" in result.stderr
    assert "custom_fields" not in result.stderr  # readable: no warning
    assert set(stub.methods) == {"GET"}

    source = registry(env).require("home")
    assert (source.base_url, source.interval_seconds) == (stub.url, 600)
    assert registry(env).token("home") == TOKEN
    db_bytes = (Path(env["CONNECTOR_DATA_DIR"]) / "sources.sqlite3").read_bytes()
    assert TOKEN.encode() not in db_bytes
    assert TOKEN not in result.stdout + result.stderr


def test_add_reads_the_token_from_the_environment(env: dict[str, str], stub: Any) -> None:
    result = invoke(env, "sources", "add", "home", "--url", stub.url, PAPERLESS_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert registry(env).token("home") == TOKEN


def test_add_prompts_without_echo(env: dict[str, str], stub: Any) -> None:
    outcome = CliRunner().invoke(main, ["sources", "add", "home", "--url", stub.url], input=TOKEN)
    assert outcome.exit_code == 0, outcome.output
    assert "Paperless-ngx API token:" in outcome.output
    assert TOKEN not in outcome.output  # hidden input is not echoed
    assert registry(env).token("home") == TOKEN


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("html", "did not answer like Paperless-ngx"),
        ("401", "authentication failed: check the API token"),
    ],
)
def test_add_refuses_what_is_not_a_working_paperless(
    env: dict[str, str], stub: Any, behaviour: str, expected: str
) -> None:
    stub.behaviour = behaviour
    result = invoke(env, "sources", "add", "home", "--url", stub.url, PAPERLESS_TOKEN=TOKEN)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert registry(env).list() == []


def test_add_unreachable_server(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(env, "sources", "add", "home", "--url", url, PAPERLESS_TOKEN=TOKEN)
    assert result.returncode == 2
    assert "could not reach Paperless-ngx" in result.stderr
    assert "Traceback" not in result.stderr


def test_add_refuses_plain_http_to_a_remote_host_before_asking_for_the_token(
    env: dict[str, str],
) -> None:
    result = invoke(env, "sources", "add", "home", "--url", "http://paperless.example.com")
    assert result.returncode == 2
    assert "--allow-insecure-http" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sources", "add", "Bad Name", "--url", "https://x.example.com"], "is not allowed"),
        (
            ["sources", "add", "home", "--url", "https://x.example.com", "--interval", "5s"],
            "at least 10 seconds",
        ),
        (
            ["sources", "add", "home", "--url", "https://x.example.com", "--interval", "soon"],
            "is not a duration",
        ),
        (["sources", "test", "nope"], "sources list"),
        (["sources", "remove", "nope", "--yes"], "there is no source named 'nope'"),
    ],
)
def test_usage_and_domain_errors_exit_2(
    env: dict[str, str], args: list[str], expected: str
) -> None:
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 2, outcome.output
    assert expected in outcome.output


def test_add_in_omni_mode_is_refused(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_MANAGER_URL", "http://127.0.0.1:9/")
    get_settings.cache_clear()
    outcome = CliRunner().invoke(main, ["sources", "add", "home", "--url", "https://x.example"])
    assert outcome.exit_code == 2 and "configured in Omni" in outcome.stderr


def test_a_duplicate_name_is_refused_before_the_token_is_asked(env: dict[str, str]) -> None:
    registry(env).add("home", "https://a.example.com", TOKEN)
    outcome = CliRunner().invoke(main, ["sources", "add", "home", "--url", "https://b.example.com"])
    assert outcome.exit_code == 2
    assert "already exists" in outcome.output and "token" not in outcome.output.lower()


# -- list, set, remove, test ---------------------------------------------------------


def test_list_never_shows_tokens(env: dict[str, str]) -> None:
    registry(env).add("home", "https://a.example.com", TOKEN, 600)
    registry(env).save_checkpoint("home", {"watermark": "2026-01-01T00:00:00Z", "known_ids": []})
    plain = CliRunner().invoke(main, ["sources", "list"], env={"COLUMNS": "200"})
    as_json = invoke(env, "sources", "list", "--json")
    assert plain.exit_code == as_json.returncode == 0
    assert "home" in plain.stdout and "https://a.example.com" in plain.stdout
    rows = json.loads(as_json.stdout)
    assert rows == [
        {
            "name": "home",
            "base_url": "https://a.example.com",
            "interval_seconds": 600,
            "enabled": True,
            "ca_bundle": None,
            "allow_insecure_http": False,
            "created_at": rows[0]["created_at"],
            "updated_at": rows[0]["updated_at"],
            "watermark": "2026-01-01T00:00:00Z",
        }
    ]
    assert TOKEN not in plain.stdout + as_json.stdout


def test_set_interval_and_enabled(env: dict[str, str]) -> None:
    registry(env).add("home", "https://a.example.com", TOKEN, 600)
    outcome = CliRunner().invoke(main, ["sources", "set", "home", "--interval", "2h", "--disabled"])
    assert outcome.exit_code == 0, outcome.output
    assert "every 2h, disabled" in outcome.output
    source = registry(env).require("home")
    assert (source.interval_seconds, source.enabled) == (7200, False)
    assert CliRunner().invoke(main, ["sources", "set", "home"]).exit_code == 2


def test_remove_asks_first(env: dict[str, str]) -> None:
    registry(env).add("home", "https://a.example.com", TOKEN)
    declined = CliRunner().invoke(main, ["sources", "remove", "home"], input="n\n")
    assert declined.exit_code == 1 and registry(env).get("home") is not None
    accepted = CliRunner().invoke(main, ["sources", "remove", "home"], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "Removed source home" in accepted.output
    assert registry(env).get("home") is None


def test_test_uses_the_stored_token(env: dict[str, str], stub: Any) -> None:
    registry(env).add("home", stub.url, TOKEN)
    stub.forbidden = ("custom_fields",)
    result = invoke(env, "sources", "test", "home")
    assert result.returncode == 0, result.stderr
    assert "42 documents visible" in result.stdout
    assert "custom fields will be missing" in result.stderr


def test_test_after_the_keys_changed_says_what_to_do(env: dict[str, str]) -> None:
    registry(env).add("home", "https://a.example.com", TOKEN)
    result = run_cli(env, "sources", "test", "home", CONNECTOR_SECRET_KEYS=generate_key())
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: cannot decrypt the token of source home: the secret keys changed; "
        "add the old key to CONNECTOR_SECRET_KEYS after the new one."
    )


# -- keys ----------------------------------------------------------------------------


def test_keys_generate_and_rotate(env: dict[str, str]) -> None:
    old = env["CONNECTOR_SECRET_KEYS"]
    registry(env).add("a", "https://a.example.com", TOKEN)
    registry(env).add("b", "https://b.example.com", TOKEN)
    new = CliRunner().invoke(main, ["keys", "generate"]).stdout.strip()
    KeyRing([new])  # a valid Fernet key

    rotated = run_cli(env, "keys", "rotate", CONNECTOR_SECRET_KEYS=f"{new},{old}")
    assert rotated.returncode == 0, rotated.stderr
    assert "Re-encrypted 2 tokens" in rotated.stdout
    only_new = SourceRegistry(Path(env["CONNECTOR_DATA_DIR"]) / "sources.sqlite3", KeyRing([new]))
    assert only_new.token("a") == only_new.token("b") == TOKEN


def test_key_file_is_created_when_no_keys_are_set(env: dict[str, str]) -> None:
    result = invoke(env, "sources", "list", CONNECTOR_SECRET_KEYS="")
    assert result.returncode == 0, result.stderr
    key_file = Path(env["CONNECTOR_DATA_DIR"]) / "secret.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


# -- help and plugged commands -------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["sources", "add"],
        ["sources", "list"],
        ["sources", "remove"],
        ["sources", "test"],
        ["sources", "set"],
        ["keys", "rotate"],
        ["keys", "generate"],
        ["search"],
        ["export"],
        ["sync"],
        ["status"],
        ["cancel"],
    ],
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    outcome = CliRunner().invoke(main, [*command, "--help"])
    assert outcome.exit_code == 0
    assert "Example" in outcome.output and "paperless-connector" in outcome.output


def test_plugged_commands_are_listed() -> None:
    listing = CliRunner().invoke(main, ["--help"]).output
    for name in ("serve", "run-demo", "worker"):
        assert name in listing


def test_database_is_sqlite_with_a_row_per_source(env: dict[str, str]) -> None:
    registry(env).add("home", "https://a.example.com", TOKEN)
    path = Path(env["CONNECTOR_DATA_DIR"]) / "sources.sqlite3"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM sources").fetchone() == (1,)


# -- search, export and remove against a real local index ----------------------------


@pytest.fixture
def indexed(env: dict[str, str]) -> Path:
    from tasks.sinks.local import LocalIndex
    from tests.support.documents import make_doc, private, run_of

    path = Path(env["CONNECTOR_DATA_DIR"]) / "index.sqlite3"
    index = LocalIndex(path)
    index.write(
        run_of("home"),
        [
            make_doc(
                1,
                "Electricity invoice",
                source_id="home",
                correspondent="PowerCo",
                tags=["bills", "tax"],
                text="Invoice for electricity in March.",
            ),
            make_doc(
                2,
                "Salary slip",
                source_id="home",
                access=private("bob@example.com"),
                text="Monthly salary statement.",
            ),
        ],
    )
    index.write(run_of("work"), [make_doc(3, "Water invoice", source_id="work")])
    index.close()
    return path


def test_search_pretty_and_json(env: dict[str, str], indexed: Path) -> None:
    pretty = run_cli(env, "search", "invoice", "--source", "home")
    assert pretty.returncode == 0, pretty.stderr
    assert "Electricity invoice" in pretty.stdout and "Water invoice" not in pretty.stdout
    assert "PowerCo · bills, tax · 2024-01-15" in pretty.stdout
    assert "http://paperless.test/documents/1/details/" in pretty.stdout

    hits = json.loads(CliRunner().invoke(main, ["search", "invoice", "--json"]).stdout)
    assert sorted(hit["key"] for hit in hits) == ["paperless:home:1", "paperless:work:3"]


def test_search_as_a_user_sees_only_their_documents(env: dict[str, str], indexed: Path) -> None:
    def keys(*args: str) -> list[str]:
        outcome = CliRunner().invoke(main, ["search", "salary", "--json", *args])
        assert outcome.exit_code == 0, outcome.output
        return [hit["key"] for hit in json.loads(outcome.output)]

    assert keys("--as", "bob@example.com") == ["paperless:home:2"]
    assert keys("--as", "eve@example.com") == []


def test_search_without_an_index(env: dict[str, str]) -> None:
    missing = CliRunner().invoke(main, ["search", "x"])
    assert missing.exit_code == 2 and "does not exist yet" in missing.output


def test_search_bad_operator_is_one_line(env: dict[str, str], indexed: Path) -> None:
    result = run_cli(env, "search", "created:notadate")
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_export_json_lines(env: dict[str, str], indexed: Path, tmp_path: Path) -> None:
    out = tmp_path / "home.jsonl"
    result = run_cli(env, "export", "--source", "home", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "Exported 2 documents" in result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["doc_id"] for row in rows] == [1, 2]
    assert rows[0]["text"] == "Invoice for electricity in March."
    everything = CliRunner().invoke(main, ["export"]).stdout.splitlines()
    assert len(everything) == 3


def test_remove_drops_the_source_from_the_local_index(env: dict[str, str], indexed: Path) -> None:
    from tasks.sinks.local import LocalIndex

    registry(env).add("home", "https://a.example.com", TOKEN)
    result = invoke(env, "sources", "remove", "home", "--yes")
    assert result.returncode == 0, result.stderr
    assert "2 documents dropped" in result.stdout
    index = LocalIndex(indexed)
    try:
        assert (index.count("home"), index.count("work")) == (0, 1)
    finally:
        index.close()


# -- status, against run records in a real Redis --------------------------------------


@pytest.fixture
def runs(env: dict[str, str], redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from tasks.runs import RunStore

    redis_server.client(3).flushdb()
    env["REDIS_URL"] = redis_server.url(3)
    monkeypatch.setenv("REDIS_URL", env["REDIS_URL"])
    get_settings.cache_clear()
    store = RunStore(redis_server.client(3))
    registry(env).add("home", "https://a.example.com", TOKEN, 600)
    registry(env).add("work", "https://b.example.com", TOKEN)
    registry(env).update("work", enabled=False)

    assert store.create("r-old", "home", "full", "cli") is None
    store.mark_running("r-old")
    store.set_fields("r-old", pages_total=2, pages_done=1, scanned=100, failed=1)
    store.mark_failed("r-old", "authentication failed: check the API token (GET /api/ 401)")
    assert store.create("r-now", "home", "incremental", "beat") is None
    store.mark_running("r-now")
    store.set_fields("r-now", pages_total=4, pages_done=3, scanned=300, written=12)
    return store


def test_status_json(env: dict[str, str], runs: Any) -> None:
    result = run_cli(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    report = {entry["source"]: entry for entry in json.loads(result.stdout)}
    assert set(report) == {"home", "work"}
    home = report["home"]
    assert home["active_run"] == "r-now"
    assert [run["run_id"] for run in home["runs"]] == ["r-now", "r-old"]
    assert home["runs"][1]["state"] == "failed"
    assert home["runs"][1]["error"].startswith("authentication failed")
    assert (report["work"]["enabled"], report["work"]["runs"]) == (False, [])


def test_status_pretty_for_one_source(env: dict[str, str], runs: Any) -> None:
    outcome = CliRunner().invoke(main, ["status", "home"], env={"COLUMNS": "200"})
    assert outcome.exit_code == 0, outcome.output
    assert "running now: r-now" in outcome.output
    assert "3/4" in outcome.output  # pages of the running run
    assert "r-old" in outcome.output and "failed" in outcome.output
    assert "authentication failed" in outcome.output
    assert "work" not in outcome.output


def test_status_when_redis_is_down_is_one_line(env: dict[str, str]) -> None:
    registry(env).add("home", "https://a.example.com", TOKEN)
    result = run_cli(env, "status")
    assert result.returncode == 2
    assert result.stderr.startswith("error: could not reach Redis at redis://127.0.0.1:1/0")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_wrong_setting_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    # In-process: importing `worker` (worker/app.py) reads the settings before the CLI runs.
    outcome = invoke(env, "sources", "list", PAGE_SIZE="0")
    assert outcome.returncode == 2
    assert outcome.stderr.startswith("error: setting PAGE_SIZE is invalid")
    assert len(outcome.stderr.strip().splitlines()) == 1
