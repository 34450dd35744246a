"""What can go wrong talking to Paperless-ngx, as a small hierarchy the pipeline can act on.

`TransientError` (and its `UnreachableError`) is worth retrying later; the others are not
until someone changes the configuration. Every message is one sentence that names the URL
path (never the token, never a URL with credentials) and says what to do.
"""

from __future__ import annotations

from typing import Any


class PaperlessError(Exception):
    """Base of every error the Paperless-ngx client raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery pickles exceptions between processes: keep the extra attributes.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[PaperlessError], message: str, state: dict[str, Any]) -> PaperlessError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class AuthenticationError(PaperlessError):
    """401 or 403: the token is wrong, or its user lacks a permission."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(PaperlessError):
    """404: the path does not exist, the object is not visible, or a page is past the end."""


class TransientError(PaperlessError):
    """Timeouts, dropped connections, 429 and 5xx that outlasted the client's retries."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnreachableError(TransientError):
    """No connection at all: refused, unknown host, connect timeout."""


class BadResponseError(PaperlessError):
    """An answer that is not Paperless-ngx's API: not JSON, wrong shape, a redirect."""


class VersionError(PaperlessError):
    """The server speaks none of the API versions this connector understands (7 to 10)."""
