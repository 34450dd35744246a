"""Log redaction: a token logged by accident never reaches the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from config.logging import install_redaction, register_secret, setup_logging
from config.settings import Settings

SECRET = "5ecret0123456789abcdef0123456789abcdef99"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = setup_logging(Settings(log_level="DEBUG"), stream=stream)
    register_secret(SECRET)
    yield stream
    logging.getLogger().removeHandler(handler)


def test_secret_in_message_args_and_extra_text(output: io.StringIO) -> None:
    log = logging.getLogger("tasks.paperless.client")
    log.info("calling with token %s", SECRET)
    log.warning(f"inline {SECRET} in an f-string")
    log.error("headers: %r", {"Authorization": f"Token {SECRET}"})
    text = output.getvalue()
    assert SECRET not in text
    assert text.count("[redacted]") >= 3
    assert "calling with token [redacted]" in text


def test_secret_in_exception_traceback(output: io.StringIO) -> None:
    def leaky(token: str) -> None:
        raise RuntimeError(f"request failed for {token}")

    try:
        leaky(SECRET)
    except RuntimeError:
        logging.getLogger("tasks.pipeline").exception("page failed")
    text = output.getvalue()
    assert "Traceback" in text and "RuntimeError: request failed for [redacted]" in text
    assert SECRET not in text


def test_unregistered_tokens_by_pattern(output: io.StringIO) -> None:
    log = logging.getLogger("anything")
    log.info("sent Authorization: Token abcdef0123456789 to the server")
    log.info("header Token 99ffee77aa and Bearer xyz.123.abc")
    log.info("proxy https://user:hunter2pw@proxy.example.com:3128/")
    log.info("Token expired for the source home")  # an ordinary sentence survives
    text = output.getvalue()
    for leaked in ("abcdef0123456789", "99ffee77aa", "xyz.123.abc", "hunter2pw"):
        assert leaked not in text
    assert "Token expired for the source home" in text
    assert "https://user:[redacted]@proxy.example.com" in text


def test_json_lines_with_run_context() -> None:
    stream = io.StringIO()
    handler = setup_logging(Settings(log_level="INFO", log_json=True), stream=stream)
    register_secret(SECRET)
    try:
        log = logging.getLogger("tasks.pipeline")
        log.debug("not shown at INFO")
        log.info("page %d done with %s", 3, SECRET, extra={"run_id": "r1", "source_id": "home"})
        try:
            raise ValueError(SECRET)
        except ValueError:
            log.error("failed", exc_info=True, extra={"task": "fetch_page"})
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["message"] == "page 3 done with [redacted]"
    assert (first["level"], first["logger"], first["run_id"], first["source_id"]) == (
        "INFO",
        "tasks.pipeline",
        "r1",
        "home",
    )
    assert first["time"].endswith("Z")
    assert second["task"] == "fetch_page" and "ValueError: [redacted]" in second["exception"]
    assert SECRET not in stream.getvalue()


def test_install_redaction_on_a_celery_style_logger() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("celery.task.test")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        register_secret(SECRET)
        install_redaction(logger)
        install_redaction(logger)  # idempotent: one filter per handler
        logger.warning("retrying with %s", SECRET)
    finally:
        logger.removeHandler(handler)
    assert len(handler.filters) == 1
    assert stream.getvalue().strip() == "retrying with [redacted]"


def test_setup_is_idempotent() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first = setup_logging(Settings())
    second = setup_logging(Settings())
    try:
        assert len(root.handlers) == before + 1
        assert first not in root.handlers and second in root.handlers
    finally:
        root.removeHandler(second)
