"""How a request reaches Paperless-ngx, and what its answer (or its absence) means.

`Transport` owns one session that cannot send anything but GET, carries the token only in
the Authorization header, puts a timeout on every request, holds a limiter slot around it,
retries transient failures with urllib3's Retry (honouring Retry-After) and maps what
finally came back to `tasks.paperless.errors`: one sentence naming the URL path.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util.retry import Retry

from tasks.http_env import settle_environment
from tasks.paperless.errors import (
    AuthenticationError,
    BadResponseError,
    NotFoundError,
    PaperlessError,
    TransientError,
    UnreachableError,
)

log = logging.getLogger(__name__)

MAX_INLINE_WAIT = 30.0  # longest Retry-After slept inside one request; longer: TransientError
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RequestLimiter(Protocol):
    def slot(self) -> AbstractContextManager[None]:
        """Held around every HTTP request (caps concurrency across workers)."""
        ...

    def backoff(self, seconds: float) -> None:
        """Told on a 429 with Retry-After: the whole server backs off."""
        ...


class ReadOnlyViolation(PaperlessError):
    """Something tried to send a request other than GET to Paperless-ngx."""


class _GetOnlySession(requests.Session):
    """A session that cannot write: the connector must never change Paperless-ngx."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        _require_get(method)
        return super().request(method, url, *args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        _require_get(request.method or "")
        return super().send(request, **kwargs)


def _require_get(method: str | bytes) -> None:
    verb = method.decode() if isinstance(method, bytes) else str(method)
    if verb.upper() != "GET":
        raise ReadOnlyViolation(
            f"refused to send {verb.upper()} to Paperless-ngx: this connector only reads"
        )


class _TokenAuth(requests.auth.AuthBase):
    # Setting auth (not a plain header) also stops requests from taking ~/.netrc instead.
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Token {self._token}"
        return request

    def __repr__(self) -> str:
        return "<token auth>"


class _ThrottleAwareRetry(Retry):
    """urllib3's Retry that tells the limiter about each 429 it waits out, and does not
    sleep through a long Retry-After inside a request (and a limiter slot): the answer is
    returned instead, becomes a TransientError, and the task retries later."""

    on_throttle: Callable[[float], None] | None = None

    def new(self, **kwargs: Any) -> _ThrottleAwareRetry:
        retry = super().new(**kwargs)
        retry.on_throttle = self.on_throttle
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> _ThrottleAwareRetry:
        if response is not None and (self.get_retry_after(response) or 0) > MAX_INLINE_WAIT:
            # raise_on_status=False: urllib3 hands this answer back instead of retrying.
            raise MaxRetryError(_pool, url or "", ResponseError("Retry-After too long"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep_for_retry(self, response: Any) -> bool:
        if self.on_throttle is not None and response is not None and response.status == 429:
            seconds = self.get_retry_after(response)
            if seconds:
                self.on_throttle(seconds)
        return bool(super().sleep_for_retry(response))


def normalise_base_url(base_url: str, *, allow_insecure_http: bool = False) -> str:
    """The base URL without trailing slash (nor a pasted trailing /api), or ValueError."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "the Paperless-ngx URL must start with http:// or https:// and name a host, "
            f"e.g. https://paperless.example.com (got a {parts.scheme or 'schemeless'} URL)"
        )
    if parts.username or parts.password:
        raise ValueError(
            "the Paperless-ngx URL must not contain a user name or password: "
            "give the API token separately"
        )
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ValueError(
            f"refusing to send the API token over plain http to {parts.hostname}: "
            "use https or set ALLOW_INSECURE_HTTP=true"
        )
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Transport:
    """One GET-only session to one Paperless-ngx server."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        verify: bool | str,
        retries: int,
        backoff_factor: float,
        limiter: RequestLimiter | None,
        allow_insecure_http: bool,
    ) -> None:
        if not token or not token.strip():
            raise ValueError("the Paperless-ngx API token is empty: give the token of a user")
        self.base_url = normalise_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.host = urlsplit(self.base_url).netloc
        self.timeout = (connect_timeout, read_timeout)
        self.limiter = limiter
        self.server_version: str | None = None  # X-Version of the last answer
        self.session = _GetOnlySession()
        self.session.auth = _TokenAuth(token.strip())
        # Passed with every request (a session-level verify=False loses against
        # REQUESTS_CA_BUNDLE where requests merges the environment in).
        self.verify = settle_environment(self.session, self.base_url, verify)
        self.session.verify = self.verify
        retry = _ThrottleAwareRetry(
            total=retries,
            connect=min(retries, 2),  # a refused port rarely heals in seconds: fail fast
            read=retries,
            status=retries,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=_RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=30.0,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        retry.on_throttle = self._report_throttle
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def send(self, path: str, params: dict[str, Any], version: int) -> requests.Response:
        url = self.base_url + path
        headers = {"Accept": f"application/json; version={version}"}
        slot = self.limiter.slot() if self.limiter is not None else nullcontext()
        started = time.monotonic()
        try:
            with slot:
                response = self.session.get(
                    url,
                    params=params,
                    headers=headers,
                    timeout=self.timeout,
                    verify=self.verify,
                    allow_redirects=False,
                )
        except requests.exceptions.SSLError:
            raise PaperlessError(
                f"could not verify the TLS certificate of {self.host} on GET {path}: "
                "fix the certificate or set CA_BUNDLE to your CA's bundle"
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise UnreachableError(
                f"could not reach Paperless-ngx at {self.host}: connecting timed out "
                f"after {self.timeout[0]:g} s on GET {path}; check the URL and the network"
            ) from None
        except requests.exceptions.ReadTimeout:
            raise self._read_timeout(path) from None
        except requests.exceptions.ConnectionError as exc:
            raise self._connection_error(exc, path) from None
        except requests.exceptions.RequestException as exc:
            raise TransientError(
                f"GET {path} on {self.host} failed ({type(exc).__name__}): try again later"
            ) from None
        self.server_version = response.headers.get("X-Version") or self.server_version
        log.debug("GET %s -> %s in %.3fs", path, response.status_code, time.monotonic() - started)
        return response

    def _connection_error(self, exc: Exception, path: str) -> TransientError:
        # After urllib3's retries, requests wraps the last cause in a MaxRetryError.
        cause = getattr(exc.args[0], "reason", exc.args[0]) if exc.args else None
        if isinstance(cause, ReadTimeoutError):
            return self._read_timeout(path)
        if isinstance(cause, NewConnectionError):  # refused, unknown host (NameResolutionError)
            why = (
                "the host name does not resolve"
                if isinstance(cause, NameResolutionError)
                else "connection refused"
            )
            return UnreachableError(
                f"could not reach Paperless-ngx at {self.host}: {why} on GET {path}; check the URL"
            )
        return TransientError(
            f"the connection to {self.host} broke during GET {path} after retries: try again later"
        )

    def _read_timeout(self, path: str) -> TransientError:
        return TransientError(
            f"Paperless-ngx at {self.host} did not answer GET {path} within "
            f"{self.timeout[1]:g} s: it may be overloaded, try again later"
        )

    def check(self, response: requests.Response, path: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        answered = f"GET {path} answered {status}"
        if status in (401, 403):
            raise AuthenticationError(
                "authentication failed: check the API token and its user's permissions "
                f"({answered})",
                status=status,
            )
        if status == 404:
            raise NotFoundError(f"{answered}: the object does not exist or is not visible")
        if 300 <= status < 400:
            target = urlsplit(response.headers.get("Location", "")).path or "elsewhere"
            raise BadResponseError(
                f"{answered} redirecting to {target}, so {self.host} did not answer like the "
                "Paperless-ngx API: check the base URL"
            )
        retry_after = retry_after_of(response)
        if status == 429:
            if retry_after:
                self._report_throttle(retry_after)
            raise TransientError(
                f"{answered} (too many requests) after retries: the connector backs off, "
                "lower MAX_CONCURRENCY_PER_SERVER if this repeats",
                retry_after=retry_after,
            )
        if status >= 500:
            raise TransientError(
                f"{answered} after retries: Paperless-ngx has a problem, try again later",
                retry_after=retry_after,
            )
        raise BadResponseError(
            f"{answered}{_detail(response)}: this connector sent a request "
            "Paperless-ngx does not accept, please report it"
        )

    def _report_throttle(self, seconds: float) -> None:
        if self.limiter is not None:
            self.limiter.backoff(seconds)


def int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers.get(name, ""))
    except ValueError:
        return None


def retry_after_of(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _detail(response: requests.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return ""
    return f" ({str(detail)[:120]})" if detail else ""
