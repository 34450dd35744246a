"""`paperless-connector`: the command line.

Errors a user can act on (a setting, a source, the server, Redis) end in one line on stderr
and exit status 2; a sync that failed or was cancelled, or is already running, exits 1.
The pipeline, the local index and the HTTP front are imported inside the commands that use
them, so `--help`, `sources` and `keys` start fast and work before those exist.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from config.logging import redact, register_secret, setup_logging
from config.secrets import SecretsError, generate_key
from config.settings import Settings, SettingsError, get_settings
from config.sources import (
    SourceError,
    SourceExists,
    SourceRegistry,
    normalise_base_url,
    validate_interval,
    validate_name,
)

EXIT_FAILED = 1  # the run failed or was cancelled; a sync is already running
EXIT_ERROR = 2  # a setting, a source, the server or Redis said no
POLL_SECONDS = 0.5

# What a sync loses when the token may not read a lookup (403), as `sources add` warns.
LOOKUP_CONSEQUENCES = {
    "custom_fields": "custom fields will be missing from the indexed documents",
    "users": "owners and user shares stay unresolved, so private documents are found only "
    "by the users and groups that can be resolved (they are never made public)",
    "groups": "group shares stay unresolved, so members will not find documents shared "
    "only with their group",
    "tags": "tag names will be missing",
    "correspondents": "correspondent names will be missing",
    "document_types": "document type names will be missing",
    "storage_paths": "storage path names will be missing",
}
# Commands other modules provide; looked up only when called, so cli.py needs no edit.
PLUGGED_COMMANDS = {
    "serve": ("worker.front", "serve_command"),
    "run-demo": ("worker.demo", "run_demo_command"),
    "worker": ("worker.app", "worker_command"),
    "flower": ("worker.flower_config", "command"),
}


class CliError(click.ClickException):
    """One line on stderr, exit status 2."""

    exit_code = EXIT_ERROR

    def show(self, file: Any = None) -> None:
        message = redact(self.format_message()).rstrip()
        ending = "" if message.endswith((".", "!", "?")) else "."
        click.echo(f"error: {message}{ending}", err=True)


def _domain_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [SettingsError, SecretsError, SourceError]
    for module, name in (
        ("tasks.paperless.errors", "PaperlessError"),
        ("tasks.sinks.local", "LocalIndexError"),
        ("tasks.search_query", "QueryError"),
    ):
        # Only modules a command already imported: this must not slow every error down.
        error = getattr(sys.modules.get(module), name, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            errors.append(error)
    return tuple(errors)


class ConnectorCli(click.Group):
    """Turns domain errors into one line, and finds the commands other modules provide."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(PLUGGED_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in PLUGGED_COMMANDS:
            command = _plugged(cmd_name, *PLUGGED_COMMANDS[cmd_name])
        return command

    def invoke(self, ctx: click.Context) -> Any:
        import redis.exceptions

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except _domain_errors() as exc:
            raise CliError(str(exc)) from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            url = redact(get_settings().redis_url)
            raise CliError(
                f"could not reach Redis at {url} ({exc}); start redis-server or set REDIS_URL."
            ) from None


def _plugged(name: str, module_name: str, attribute: str) -> click.Command | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        module = None
    command = getattr(module, attribute, None)
    if isinstance(command, click.Command):
        return command
    if name == "worker":
        return worker_fallback

    @click.command(name, help=f"Not available in this build ({module_name} is missing).")
    def unavailable() -> NoReturn:
        raise CliError(f"`{name}` is not available in this build: {module_name} is missing.")

    return unavailable


@click.group(cls=ConnectorCli)
@click.version_option(package_name="paperless-connector")
def main() -> None:
    """Keep a searchable, permission-aware copy of Paperless-ngx.

    Settings come from the environment (see README): CONNECTOR_DATA_DIR, REDIS_URL,
    CONNECTOR_SECRET_KEYS, CONNECTOR_MANAGER_URL, ...

    \b
    Example:
      PAPERLESS_TOKEN=... paperless-connector sources add home --url https://paperless.example.com
      paperless-connector sync home --wait
      paperless-connector search "invoice tag:tax"
    """


# -- shared helpers ------------------------------------------------------------------


_DURATION = re.compile(r"\s*(\d+)\s*([smhd]?)\s*")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType):
    """30s, 5m, 2h, 1d (or plain seconds) → seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _DURATION.fullmatch(str(value).lower())
        if match is None:
            self.fail(f"{value!r} is not a duration; use e.g. 30s, 5m, 2h or 1d.", param, ctx)
        return int(match[1]) * _UNIT_SECONDS[match[2]]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return " ".join(parts[:2])


_logging_set_for: list[Settings] = []  # the settings logging was last set up from


def _settings() -> Settings:
    settings = get_settings()
    if not _logging_set_for or _logging_set_for[0] is not settings:
        # INFO lines would bury the command's own output; an explicit LOG_LEVEL wins.
        quiet = "log_level" not in settings.model_fields_set
        setup_logging(settings.model_copy(update={"log_level": "WARNING"}) if quiet else settings)
        _logging_set_for[:] = [settings]
    return settings


def _registry(settings: Settings) -> SourceRegistry:
    return SourceRegistry.from_settings(settings)


def _store(settings: Settings) -> Any:
    """The run records; short socket timeouts so a dead Redis is reported, not waited on."""
    from redis import Redis

    from tasks.runs import RunStore

    return RunStore(Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10))


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _run_seconds(record: Any) -> float | None:
    started = _as_datetime(record.started_at) or _as_datetime(record.created_at)
    if started is None:
        return None
    finished = _as_datetime(record.finished_at) or datetime.now(UTC)
    return max(0.0, (finished - started).total_seconds())


def _state(record: Any) -> str:
    return str(getattr(record.state, "value", record.state))


# -- sources -------------------------------------------------------------------------


@main.group()
def sources() -> None:
    """Add, list, test, change and remove the Paperless-ngx instances to sync.

    \b
    Example:
      paperless-connector sources list
    """


def _read_token(token_stdin: bool) -> str:
    token = os.environ.get("PAPERLESS_TOKEN", "")
    if not token and token_stdin:
        token = sys.stdin.readline()
    if not token and not token_stdin:
        token = click.prompt(
            "Paperless-ngx API token", hide_input=True, default="", show_default=False
        )
    token = token.strip()
    if not token:
        raise CliError(
            "no API token was given; set PAPERLESS_TOKEN, pipe it with --token-stdin "
            "or type it at the prompt."
        )
    register_secret(token)
    return token


def _check_plain_http(base_url: str, allow_insecure_http: bool) -> None:
    from urllib.parse import urlsplit

    host = urlsplit(base_url).hostname or ""
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if base_url.startswith("http://") and not loopback and not allow_insecure_http:
        raise CliError(
            f"refusing to send the API token over plain http to {host}; use https, or pass "
            "--allow-insecure-http if the network between here and Paperless-ngx is trusted."
        )


def check_server(
    settings: Settings,
    base_url: str,
    token: str,
    *,
    ca_bundle: str | None = None,
    allow_insecure_http: bool = False,
) -> tuple[Any, list[str]]:
    """Probe the server with the token; the server info and what the token may not read."""
    from tasks.paperless.client import PaperlessClient
    from tasks.paperless.errors import AuthenticationError, NotFoundError

    try:
        client = PaperlessClient(
            base_url,
            token,
            connect_timeout=settings.http_connect_timeout,
            read_timeout=min(settings.http_read_timeout, 30.0),
            verify=ca_bundle or settings.tls,
            retries=1,  # a person is waiting: report a dead server now, not after backoff
            allow_insecure_http=allow_insecure_http,
        )
    except ValueError as exc:
        raise CliError(str(exc).rstrip(".") + ".") from None
    warnings = []
    try:
        info = client.probe()
        for lookup, consequence in LOOKUP_CONSEQUENCES.items():
            try:
                client.list_lookup(lookup)
            except (AuthenticationError, NotFoundError) as exc:
                status = getattr(exc, "status", 404)
                warnings.append(f"the token may not read /api/{lookup}/ ({status}): {consequence}")
    finally:
        client.close()
    return info, warnings


def _report_server(base_url: str, info: Any, warnings: list[str]) -> None:
    version = f"Paperless-ngx {info.server_version}" if info.server_version else "Paperless-ngx"
    click.echo(
        f"{version} at {base_url}: API version {info.api_version}, "
        f"{info.document_count} documents visible to this token."
    )
    for warning in warnings:
        click.echo(f"warning: {warning}.", err=True)


@sources.command("add")
@click.argument("name")
@click.option("--url", required=True, help="Address of Paperless-ngx (without /api).")
@click.option("--interval", type=Duration(), help="Incremental sync interval, e.g. 10m.")
@click.option("--token-stdin", is_flag=True, help="Read the API token from stdin.")
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False),
    help="CA bundle of a private CA that signed the server's certificate.",
)
@click.option(
    "--allow-insecure-http", is_flag=True, help="Allow a plain http URL to a non-local host."
)
def sources_add(
    name: str,
    url: str,
    interval: int | None,
    token_stdin: bool,
    ca_bundle: str | None,
    allow_insecure_http: bool,
) -> None:
    """Register a Paperless-ngx instance after checking the URL and token against it.

    The API token comes from PAPERLESS_TOKEN, from stdin with --token-stdin, or from a
    prompt that does not echo; it is never an argument (that would keep it in the shell
    history). It is stored encrypted.

    \b
    Example:
      read -rs PAPERLESS_TOKEN && export PAPERLESS_TOKEN
      paperless-connector sources add home --url https://paperless.example.com --interval 10m
    """
    settings = _settings()
    if settings.omni_mode:
        raise CliError(
            "CONNECTOR_MANAGER_URL is set, so sources are configured in Omni and a source "
            "added here would never sync; add it in Omni, or unset CONNECTOR_MANAGER_URL."
        )
    validate_name(name)
    base_url = normalise_base_url(url)
    _check_plain_http(base_url, allow_insecure_http)
    if interval is not None:
        validate_interval(interval)
    registry = _registry(settings)
    if registry.get(name) is not None:
        raise SourceExists(
            f"a source named {name!r} already exists; remove it first or pick another name."
        )
    token = _read_token(token_stdin)
    info, warnings = check_server(
        settings, base_url, token, ca_bundle=ca_bundle, allow_insecure_http=allow_insecure_http
    )
    _report_server(base_url, info, warnings)
    source = registry.add(
        name,
        base_url,
        token,
        interval,
        ca_bundle=ca_bundle,
        allow_insecure_http=allow_insecure_http,
    )
    click.echo(
        f"Added source {name} (incremental sync every {format_duration(source.interval_seconds)}); "
        f"start the first sync with `paperless-connector sync {name}`."
    )


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def sources_list(as_json: bool) -> None:
    """List the registered sources (never their tokens).

    \b
    Example:
      paperless-connector sources list --json
    """
    found = _registry(_settings()).list()
    if as_json:
        rows = [
            source.model_dump(exclude={"checkpoint"}) | {"watermark": source.watermark}
            for source in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo("No sources yet; add one with `paperless-connector sources add NAME --url URL`.")
        return
    from rich.table import Table

    table = Table("name", "url", "every", "enabled", "synced up to", box=None)
    for source in found:
        table.add_row(
            source.name,
            source.base_url,
            format_duration(source.interval_seconds),
            "yes" if source.enabled else "no",
            source.watermark or "never",
        )
    _console().print(table)


@sources.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def sources_remove(name: str, yes: bool) -> None:
    """Forget a source: its token, its checkpoint and its documents in the local index.

    \b
    Example:
      paperless-connector sources remove home --yes
    """
    settings = _settings()
    registry = _registry(settings)
    registry.require(name)
    if not yes:
        click.confirm(
            f"Remove source {name}, its token and its documents from the local index?",
            abort=True,
        )
    registry.remove(name)
    dropped = _drop_from_local_index(settings, name)
    click.echo(f"Removed source {name} ({dropped} documents dropped from the local index).")


def _drop_from_local_index(settings: Settings, name: str) -> int:
    if not settings.index_path.exists():
        return 0  # never synced locally: do not create an index just to empty it
    from tasks.sinks.local import LocalIndex

    index = LocalIndex(settings.index_path)
    try:
        return index.remove_source(name)
    finally:
        index.close()


@sources.command("test")
@click.argument("name")
def sources_test(name: str) -> None:
    """Check a registered source's URL and token against the server.

    \b
    Example:
      paperless-connector sources test home
    """
    settings = _settings()
    registry = _registry(settings)
    source = registry.require(name)
    info, warnings = check_server(
        settings,
        source.base_url,
        registry.token(name),
        ca_bundle=source.ca_bundle,
        allow_insecure_http=source.allow_insecure_http,
    )
    _report_server(source.base_url, info, warnings)


@sources.command("set")
@click.argument("name")
@click.option("--interval", type=Duration(), help="Incremental sync interval, e.g. 10m.")
@click.option("--enabled/--disabled", default=None, help="Whether beat syncs it periodically.")
def sources_set(name: str, interval: int | None, enabled: bool | None) -> None:
    """Change a source's sync interval or switch its periodic sync on or off.

    \b
    Example:
      paperless-connector sources set home --interval 10m --disabled
    """
    if interval is None and enabled is None:
        raise click.UsageError("nothing to change; give --interval, --enabled or --disabled.")
    source = _registry(_settings()).update(name, interval_seconds=interval, enabled=enabled)
    state = "enabled" if source.enabled else "disabled"
    click.echo(
        f"Source {name}: incremental sync every {format_duration(source.interval_seconds)}, "
        f"{state}."
    )


# -- keys ----------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage the keys that encrypt the tokens at rest.

    \b
    Example (rotation):
      paperless-connector keys generate        # put it first in CONNECTOR_SECRET_KEYS
      paperless-connector keys rotate          # then drop the old key
    """


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key.

    \b
    Example:
      export CONNECTOR_SECRET_KEYS="$(paperless-connector keys generate),$CONNECTOR_SECRET_KEYS"
    """
    click.echo(generate_key())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored token under the newest key.

    \b
    Example:
      CONNECTOR_SECRET_KEYS="NEW,OLD" paperless-connector keys rotate
    """
    registry = _registry(_settings())
    count = registry.rotate_keys()
    click.echo(f"Re-encrypted {count} tokens under the newest key.")
    if registry.keyring.key_count > 1:
        click.echo(f"The older keys in {registry.keyring.origin} can be removed now.")


# -- search and export ---------------------------------------------------------------


def _local_index(settings: Settings) -> Any:
    if settings.omni_mode:
        raise CliError(
            "documents go to Omni (CONNECTOR_MANAGER_URL is set), so there is no local index; "
            "search in Omni instead."
        )
    if not settings.index_path.exists():
        raise CliError(
            f"the local index {settings.index_path} does not exist yet; "
            "run `paperless-connector sync NAME` first."
        )
    from tasks.sinks.local import LocalIndex

    return LocalIndex(settings.index_path)


@main.command()
@click.argument("query")
@click.option("--source", help="Only this source.")
@click.option("--as", "as_email", metavar="EMAIL", help="Only what this user may see.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def search(query: str, source: str | None, as_email: str | None, limit: int, as_json: bool) -> None:
    """Search the local index (operators: tag:, correspondent:, type:, created:).

    \b
    Example:
      paperless-connector search 'invoice tag:tax correspondent:"ACME Corp"' --as alice@example.com
    """
    index = _local_index(_settings())
    try:
        hits = index.search(query, source_id=source, as_email=as_email, limit=limit)
    finally:
        index.close()
    if as_json:
        click.echo(json.dumps([hit.model_dump(mode="json") for hit in hits], indent=2))
        return
    if not hits:
        click.echo(f"No documents match {query!r}.")
        return
    from rich.markup import escape

    console = _console()
    for hit in hits:
        facts = [hit.correspondent, hit.document_type, ", ".join(hit.tags or []), hit.created]
        console.print(f"[bold]{escape(hit.title)}[/bold]  [dim]{escape(hit.key)}[/dim]")
        if hit.snippet:
            # The index marks matched words «like this».
            snippet = re.sub(r"«([^«»]*)»", r"[bold yellow]\1[/bold yellow]", escape(hit.snippet))
            console.print(f"  {snippet}")
        console.print(f"  {escape(' · '.join(str(f) for f in facts if f))}")
        console.print(f"  [blue]{escape(hit.url)}[/blue]\n")


@main.command()
@click.option("--source", help="Only this source.")
@click.option("--output", type=click.Path(dir_okay=False), help="File to write (default stdout).")
def export(source: str | None, output: str | None) -> None:
    """Write every indexed document as JSON lines.

    \b
    Example:
      paperless-connector export --source home --output home.jsonl
    """
    index = _local_index(_settings())
    count = 0
    try:
        with click.open_file(output or "-", "w", encoding="utf-8", atomic=bool(output)) as out:
            for document in index.export(source):
                out.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")
                count += 1
    finally:
        index.close()
    if output:
        click.echo(f"Exported {count} documents to {output}.", err=True)


# -- runs: sync, status, cancel -------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--full", is_flag=True, help="Look at every document, not only changes.")
@click.option("--wait", is_flag=True, help="Show progress until the run ends.")
@click.pass_context
def sync(ctx: click.Context, name: str, full: bool, wait: bool) -> None:
    """Start a sync of a source now (a worker must be running).

    Exit status with --wait: 0 completed, 1 failed or cancelled.

    \b
    Example:
      paperless-connector sync home --full --wait
    """
    settings = _settings()
    if not settings.omni_mode:
        _registry(settings).require(name)
    from tasks.trigger import AlreadyRunning, trigger_sync

    mode = "full" if full else "incremental"
    try:
        record = trigger_sync(name, mode, trigger="cli")
    except AlreadyRunning as exc:
        click.echo(f"a sync of {name} is already running (run {exc.run_id}).", err=True)
        ctx.exit(EXIT_FAILED)
    click.echo(f"Started a {mode} sync of {name}: run {record.run_id}.")
    if not wait:
        click.echo(f"Follow it with `paperless-connector status {name}`.")
        return
    store = _store(settings)
    final = follow_run(store, record.run_id)
    if final is None:
        return
    print_summary(store, final)
    ctx.exit(0 if _state(final) == "completed" else EXIT_FAILED)


def _counts(record: Any) -> str:
    return (
        f"scanned {record.scanned} · written {record.written} · unchanged {record.unchanged}"
        f" · deleted {record.deleted} · failed {record.failed}"
    )


class _RunProgress:
    """A bar of pages (with ETA) over a line of document counts, redrawn in place."""

    def __init__(self) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<9}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TextColumn("pages"),
            TimeRemainingColumn(),
        )
        self.task = self.bar.add_task("queued", total=None)
        self.counts = Text("", style="dim")
        console = _console(stderr=True)
        self.live = Live(Group(self.bar, self.counts), console=console, refresh_per_second=4)

    def show(self, record: Any) -> None:
        seconds = _run_seconds(record) or 0.0
        rate = record.scanned / seconds if seconds > 0 else 0.0
        self.bar.update(
            self.task,
            completed=record.pages_done,
            total=record.pages_total or None,
            description=_state(record),
        )
        self.counts.plain = f"{_counts(record)} · {rate:.1f} docs/s"


@contextmanager
def _progress() -> Iterator[_RunProgress]:
    progress = _RunProgress()
    with progress.live:
        yield progress


def follow_run(store: Any, run_id: str, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Poll the run until it ends; its final record, or None when the user stopped waiting."""
    from tasks.trigger import cancel_run

    while True:
        try:
            with _progress() as progress:
                while True:
                    record = store.get(run_id)
                    if record is None:
                        raise CliError(
                            f"run {run_id} is not in Redis any more; "
                            "check `paperless-connector status`."
                        )
                    progress.show(record)
                    if not record.running:
                        return record
                    sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            try:
                cancel = click.confirm(
                    f"\nCancel run {run_id}? (no: stop waiting, the run goes on)", default=False
                )
            except click.Abort:
                cancel = False
            if not cancel:
                click.echo(
                    f"Stopped waiting; run {run_id} goes on (see `paperless-connector status`).",
                    err=True,
                )
                return None
            cancel_run(run_id)
            click.echo(f"Cancel requested for run {run_id}; waiting for it to stop.", err=True)


def print_summary(store: Any, record: Any) -> None:
    state = _state(record)
    click.echo(
        f"Run {record.run_id} ({record.mode} sync of {record.source_id}) {state} "
        f"in {format_duration(_run_seconds(record))}."
    )
    click.echo(f"  pages {record.pages_done}/{record.pages_total} · {_counts(record)}")
    for degraded in record.degraded or []:
        click.echo(f"  degraded: {degraded}")
    errors = store.errors(record.run_id, limit=5) if record.failed else []
    if errors:
        click.echo("  first document errors:")
        for error in errors:
            click.echo(f"    document {error.get('doc_id')}: {error.get('reason')}")
    if record.error:
        click.echo(f"  cause: {record.error}")


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(name: str | None, as_json: bool) -> None:
    """Show the sources, their last runs and what is running now.

    \b
    Example:
      paperless-connector status home
    """
    settings = _settings()
    registry = _registry(settings)
    if name is not None:
        wanted = [name] if settings.omni_mode else [registry.require(name).name]
    else:
        wanted = [source.name for source in registry.list()]
    store = _store(settings)
    report = []
    for source_id in wanted:
        source = registry.get(source_id)
        report.append(
            {
                "source": source_id,
                "enabled": source.enabled if source else None,
                "interval_seconds": source.interval_seconds if source else None,
                "active_run": store.active_run(source_id),
                "runs": store.runs_for(source_id, limit=5),
            }
        )
    if as_json:
        for entry in report:
            entry["runs"] = [run.model_dump(mode="json") for run in entry["runs"]]
        click.echo(json.dumps(report, indent=2, default=str))
        return
    if not report:
        click.echo("No sources yet; add one with `paperless-connector sources add NAME --url URL`.")
        return
    _print_status(report)


def _print_status(report: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    for entry in report:
        heading = f"[bold]{entry['source']}[/bold]"
        if entry["interval_seconds"] is not None:
            heading += f"  every {format_duration(entry['interval_seconds'])}"
            heading += "" if entry["enabled"] else "  (periodic sync disabled)"
        heading += f"  running now: {entry['active_run']}" if entry["active_run"] else "  idle"
        console.print(heading)
        if not entry["runs"]:
            console.print("  no runs yet\n")
            continue
        table = Table("run", "mode", "state", "pages", "started", "took", "scanned", "written")
        for column in ("deleted", "failed", "error"):
            table.add_column(column)
        for run in entry["runs"]:
            started = _as_datetime(run.started_at) or _as_datetime(run.created_at)
            table.add_row(
                run.run_id,
                run.mode,
                _state(run),
                f"{run.pages_done}/{run.pages_total}",
                started.strftime("%Y-%m-%d %H:%M:%S") if started else "-",
                format_duration(_run_seconds(run)),
                *(str(v) for v in (run.scanned, run.written, run.deleted, run.failed)),
                escape(run.error or ""),
            )
        console.print(table)


@main.command()
@click.argument("run_id")
@click.pass_context
def cancel(ctx: click.Context, run_id: str) -> None:
    """Cancel a running sync; pages in flight finish, the checkpoint stays where it was.

    \b
    Example:
      paperless-connector cancel 3f2a9c
    """
    _settings()
    from tasks.trigger import cancel_run

    if cancel_run(run_id):
        click.echo(f"Cancel requested for run {run_id}.")
        return
    click.echo(f"run {run_id} is not running (unknown or already finished).", err=True)
    ctx.exit(EXIT_FAILED)


@click.command(
    "worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_fallback(celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker on both queues; extra arguments go to `celery worker`.

    \b
    Example:
      paperless-connector worker --concurrency 8
    """
    settings = _settings()
    from worker.app import app

    app.worker_main(
        ["worker", "-Q", "control,pages", "--loglevel", settings.log_level, *celery_args]
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
