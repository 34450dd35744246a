"""`paperless-connector`: the command line."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Keep a searchable, permission-aware copy of Paperless-ngx."""
