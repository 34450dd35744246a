"""`paperless-connector flower`: Flower on the worker's Redis, behind basic auth.

Flower is started as `celery -A worker flower` with the options built here. The credentials
travel in the environment (`FLOWER_BASIC_AUTH`, which Flower reads itself), never on the
command line, where any local user could read them with `ps`. Without credentials Flower
may only listen on the loopback interface; `/healthcheck` and `/metrics` (Prometheus) stay
open for probes and scrapers, everything else asks for the password.
"""

from __future__ import annotations

import ipaddress
import os
import sys

import click

from config.settings import SettingsError, get_settings

DEFAULT_PORT = 5555
# Workers that stopped sending heartbeats vanish from the dashboard after this long.
PURGE_OFFLINE_SECONDS = 300


class FlowerConfigError(click.ClickException):
    """Flower would start unsafely or with unusable options; the message says what to do."""


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # "" or a host name: Flower would listen beyond this machine


def parse_basic_auth(value: str | None) -> list[str]:
    """`user:pass[,user2:pass2]` → the pairs; raise when a pair lacks a user or a password."""
    if value is None or not value.strip():
        return []
    pairs = [pair.strip() for pair in value.split(",") if pair.strip()]
    for pair in pairs:
        user, _, password = pair.partition(":")
        if not user or not password:
            raise FlowerConfigError(
                "FLOWER_BASIC_AUTH must look like user:password (comma-separated for several "
                "users); set it again with both parts."
            )
    return pairs


def check_exposure(address: str, auth_pairs: list[str]) -> None:
    if not auth_pairs and not is_loopback(address):
        shown = address or "all interfaces"
        raise FlowerConfigError(
            f"refusing to start Flower on {shown} without a password; set "
            "FLOWER_BASIC_AUTH=user:password, or listen on 127.0.0.1 (--address 127.0.0.1 "
            "or FLOWER_ADDRESS=127.0.0.1)."
        )


def flower_argv(
    address: str, port: int, *, url_prefix: str | None = None, read_only: bool = False
) -> list[str]:
    """The command that starts Flower; holds no credential."""
    argv = [sys.executable, "-m", "celery", "-A", "worker", "flower"]
    argv += [
        f"--address={address}",
        f"--port={port}",
        "--persistent=False",
        f"--purge_offline_workers={PURGE_OFFLINE_SECONDS}",
    ]
    if url_prefix:
        argv.append(f"--url_prefix={url_prefix.strip('/')}")
    if read_only:
        argv.append("--read_only=True")
    return argv


def flower_env(auth_pairs: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    # An unauthenticated API would expose task control to anyone who reaches the port.
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    env.pop("FLOWER_BASIC_AUTH", None)
    if auth_pairs:
        env["FLOWER_BASIC_AUTH"] = ",".join(auth_pairs)
    return env


def install_flower_guard() -> None:
    """Give `celery -A worker flower` (and `make flower`) the same rules as this command.

    Celery's CLI imports Flower's command before it loads our app, so when Flower is present
    its options exist by the time `worker` is imported; the callback runs once Flower has
    read its options (environment, config file, command line) and before it serves.
    """
    if "flower.command" not in sys.modules:
        return
    from tornado.options import options

    options.add_parse_callback(_enforce_flower_rules)


def _enforce_flower_rules() -> None:
    from tornado.options import options

    try:
        pairs = parse_basic_auth(get_settings().flower_basic_auth)
        pairs = pairs or parse_basic_auth(",".join(options.basic_auth or []))
        if not options.unix_socket:  # a socket file is local by nature
            check_exposure(options.address, pairs)
    except (FlowerConfigError, SettingsError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"error: {message}", err=True)
        raise SystemExit(2) from None
    # FLOWER_BASIC_AUTH may come from the .env file, which Flower itself never reads.
    options.basic_auth = pairs


@click.command("flower")
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; anything but loopback needs FLOWER_BASIC_AUTH.",
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option("--url-prefix", default=None, help="Serve under this path (behind a proxy).")
@click.option("--read-only", is_flag=True, help="Hide revoke, restart and shutdown controls.")
def command(address: str, port: int, url_prefix: str | None, read_only: bool) -> None:
    """Start Flower, the dashboard of workers and tasks, behind basic auth.

    \b
    Examples:
      paperless-connector flower                      # 127.0.0.1:5555, no password needed
      FLOWER_BASIC_AUTH=ops:a-long-password paperless-connector flower --address 0.0.0.0
    """
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    auth_pairs = parse_basic_auth(settings.flower_basic_auth)
    check_exposure(address, auth_pairs)
    argv = flower_argv(address, port, url_prefix=url_prefix, read_only=read_only)
    sys.stdout.flush()
    # exec: Flower becomes this process, so signals and the exit status reach it directly.
    os.execve(argv[0], argv, flower_env(auth_pairs))


flower_command = command  # the name worker/cli.py's plugged commands use

if __name__ == "__main__":
    command()
