"""Logging setup, plain or JSON lines, with a filter that keeps tokens out of every line.

Redaction happens on the handlers, not the loggers: a filter on a logger does not see
records propagated from its children, a filter on a handler sees everything it writes.
Every place that holds a token in clear calls `register_secret(token)`; the filter also
catches `Token <x>`, `Bearer <x>`, `Authorization: …` and passwords in URLs, for secrets
nobody registered.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.settings import Settings

REDACTED = "[redacted]"
# Shorter values would redact ordinary words; real API tokens are 40 hex characters.
MIN_SECRET_LENGTH = 8

_PATTERNS = (
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+"), rf"\1{REDACTED}"),
    # The HTTP schemes are capitalised; a value needs a digit, so "Token expired" survives.
    (
        re.compile(r"\b(Token|Bearer|Basic)(\s+)(?=[\w.~+/=-]*\d)[\w.~+/=-]{6,}"),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), rf"\1{REDACTED}@"),
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_OUR_HANDLER = "_paperless_connector_handler"


def register_secret(value: str | None) -> None:
    """From now on, `value` is replaced by "[redacted]" wherever it would be logged."""
    if value and len(value.strip()) >= MIN_SECRET_LENGTH:
        with _secrets_lock:
            _secrets.add(value.strip())


def redact(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record so that its message, arguments and traceback hold no secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line, nor leak args
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            # Formatters reuse exc_text when set, so the clear traceback is never rendered.
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.rstrip("\n")
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Put a `RedactingFilter` on every handler of `logger` (default: the root logger).

    The worker calls this for Celery's loggers once Celery has set up its own handlers
    (signals `after_setup_logger` and `after_setup_task_logger`).
    """
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the run's context."""

    CONTEXT = ("run_id", "source_id", "task")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in self.CONTEXT:
            value = getattr(record, key, None)
            if value is None and key == "task":
                value = getattr(record, "task_name", None)
            if value is not None:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is now (test runners and Celery swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def setup_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Configure the root logger from the settings; idempotent. Returns the handler."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OUR_HANDLER, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else _CurrentStderr())
    setattr(handler, _OUR_HANDLER, True)
    if settings.log_json:
        handler.setFormatter(JsonLinesFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    install_redaction(root)
    return handler
