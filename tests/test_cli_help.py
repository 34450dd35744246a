"""Every command's --help explains it with an example (issue 6)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from worker.cli import main


def all_commands() -> list[list[str]]:
    found: list[list[str]] = []

    def walk(group: click.Group, path: list[str]) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            if isinstance(command, click.Group):
                walk(command, [*path, name])
            else:
                found.append([*path, name])

    walk(main, [])
    return found


def test_the_commands_operators_need_are_there() -> None:
    names = {" ".join(path) for path in all_commands()}
    expected = {"sources add", "sources list", "search", "export", "sync", "status", "serve"}
    assert expected | {"run-demo", "flower", "keys rotate", "cancel"} <= names


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_help_has_an_example(path: list[str]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, result.output
