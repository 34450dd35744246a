"""`PaperlessClient`: a read-only client of the Paperless-ngx REST API.

It can only send GET (its session refuses any other verb), negotiates the API version once
(10, stepping down to 7 on 406), puts a timeout on every request, retries transient
failures with urllib3's Retry (honouring Retry-After) and maps what finally came back to
`tasks.paperless.errors`. The token travels only in the Authorization header; messages name
the URL path, never the token or a URL with credentials.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

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

from tasks.paperless.errors import (
    AuthenticationError,
    BadResponseError,
    NotFoundError,
    PaperlessError,
    TransientError,
    UnreachableError,
    VersionError,
)
from tasks.paperless.models import LIGHT_FIELDS, utc_rfc3339

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = (10, 9, 8, 7)
LOOKUPS = (
    "tags",
    "correspondents",
    "document_types",
    "storage_paths",
    "custom_fields",
    "users",
    "groups",
)
MAX_PAGE_SIZE = 100_000
MAX_INLINE_WAIT = 30.0  # longest Retry-After slept inside one request; longer: TransientError
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RequestLimiter(Protocol):
    def slot(self) -> AbstractContextManager[None]:
        """Held around every HTTP request (caps concurrency across workers)."""
        ...

    def backoff(self, seconds: float) -> None:
        """Told on a 429 with Retry-After: the whole server backs off."""
        ...


@dataclass(frozen=True)
class ServerInfo:
    api_version: int
    server_version: str | None
    server_time: datetime
    document_count: int


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


class PaperlessClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        verify: bool | str = True,
        retries: int = 5,
        limiter: RequestLimiter | None = None,
        allow_insecure_http: bool = False,
        api_version: int | None = None,
        backoff_factor: float = 0.5,
    ) -> None:
        if not token or not token.strip():
            raise ValueError("the Paperless-ngx API token is empty: give the token of a user")
        if api_version is not None and api_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"API version {api_version} is not supported: use 7, 8, 9 or 10")
        self.base_url = normalise_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.host = urlsplit(self.base_url).netloc
        self.timeout = (connect_timeout, read_timeout)
        self.limiter = limiter
        self.server_version: str | None = None
        self._api_version = api_version
        self._session = _GetOnlySession()
        self._session.auth = _TokenAuth(token.strip())
        self._session.verify = verify
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
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    # -- public API ------------------------------------------------------------------

    @property
    def api_version(self) -> int:
        if self._api_version is None:
            self._negotiate()
        assert self._api_version is not None
        return self._api_version

    def probe(self) -> ServerInfo:
        """A cheap authenticated request: version, server time and document count."""
        response = self._negotiate() if self._api_version is None else None
        if response is None:
            response = self._get("/api/documents/", {"page_size": 1})
        data = self._json(response, "/api/documents/")
        return ServerInfo(
            api_version=self.api_version,
            server_version=self.server_version,
            server_time=self._server_time(response),
            document_count=int(self._page(data, "/api/documents/").get("count") or 0),
        )

    def list_lookup(self, name: str) -> list[dict[str, Any]]:
        if name not in LOOKUPS:
            raise ValueError(f"unknown lookup {name!r}: use one of {', '.join(LOOKUPS)}")
        return list(self._rows(f"/api/{name}/", {}))

    def list_document_ids(self, modified_after: datetime | None = None) -> list[int]:
        params: dict[str, Any] = {}
        if modified_after is not None:
            params["modified__gt"] = utc_rfc3339(modified_after)
        if self.api_version <= 9:
            # Up to API 9 every list carries `all`: every matching id in one small answer.
            path = "/api/documents/"
            data = self._json(self._get(path, {**params, "page_size": 1, "fields": "id"}), path)
            ids = self._page(data, path).get("all")
            if isinstance(ids, list):
                return sorted({int(i) for i in ids})
        params.update(fields="id", ordering="id")
        return sorted({int(row["id"]) for row in self._rows("/api/documents/", params)})

    def list_light(self) -> tuple[list[dict[str, Any]], datetime]:
        """Every document's cheap fields and permissions, and the server time of the start."""
        params = {
            # `fields` also filters the serialiser's `permissions`: ask for it by name.
            "fields": ",".join((*LIGHT_FIELDS, "permissions")),
            "full_perms": "true",
            "ordering": "id",
        }
        docs: list[dict[str, Any]] = []
        server_time: datetime | None = None
        for page, response in self._pages("/api/documents/", params):
            if server_time is None:
                server_time = self._server_time(response)
            docs.extend(page["results"])
        assert server_time is not None
        return docs, server_time

    def get_documents(self, ids: list[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        params = {
            "id__in": ",".join(str(int(i)) for i in ids),
            "full_perms": "true",
            "ordering": "id",
        }
        return list(self._rows("/api/documents/", params, page_size=len(ids)))

    def get_titles(self, ids: list[int]) -> dict[int, str]:
        if not ids:
            return {}
        params = {"id__in": ",".join(str(int(i)) for i in ids), "fields": "id,title"}
        rows = self._rows("/api/documents/", params, page_size=len(ids))
        return {int(row["id"]): str(row.get("title") or "") for row in rows}

    def get_notes(self, doc_id: int) -> list[dict[str, Any]]:
        path = f"/api/documents/{int(doc_id)}/notes/"
        data = self._json(self._get(path, {}), path)
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            return list(data["results"])  # some versions paginate notes
        if not isinstance(data, list):
            raise self._shape_error(path, "a list of notes")
        return data

    def download(self, doc_id: int) -> tuple[bytes, str, str]:
        """The archived file, else the original: (bytes, mime type, file name)."""
        path = f"/api/documents/{int(doc_id)}/download/"
        response = self._get(path, {})
        mime = response.headers.get("Content-Type", "application/octet-stream").split(";")[0]
        return response.content, mime.strip(), _filename(response, f"document-{doc_id}")

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PaperlessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------

    def _negotiate(self) -> requests.Response:
        """Find the newest API version the server accepts, with the probe request."""
        for version in SUPPORTED_VERSIONS:
            response = self._send("/api/documents/", {"page_size": 1}, version)
            if response.status_code == 406:
                continue
            self._check(response, "/api/documents/")
            newest = _int_header(response, "X-Api-Version")
            if newest is not None and newest < version:
                if newest < min(SUPPORTED_VERSIONS):
                    raise self._version_error(newest)
                version = newest
            self._api_version = version
            log.info("Paperless-ngx at %s speaks API %s", self.host, version)
            return response
        raise self._version_error(None)

    def _version_error(self, newest: int | None) -> VersionError:
        told = f" (it offers API {newest})" if newest is not None else ""
        return VersionError(
            f"Paperless-ngx at {self.host} speaks none of the API versions 7 to 10{told} "
            "on GET /api/documents/: upgrade Paperless-ngx to 1.14 or newer"
        )

    def _get(self, path: str, params: dict[str, Any]) -> requests.Response:
        response = self._send(path, params, self.api_version)
        if response.status_code == 406:
            raise self._version_error(_int_header(response, "X-Api-Version"))
        self._check(response, path)
        return response

    def _send(self, path: str, params: dict[str, Any], version: int) -> requests.Response:
        url = self.base_url + path
        headers = {"Accept": f"application/json; version={version}"}
        slot = self.limiter.slot() if self.limiter is not None else nullcontext()
        started = time.monotonic()
        try:
            with slot:
                response = self._session.get(
                    url, params=params, headers=headers, timeout=self.timeout, allow_redirects=False
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

    def _check(self, response: requests.Response, path: str) -> None:
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
        retry_after = _retry_after(response)
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

    def _json(self, response: requests.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise BadResponseError(
                f"GET {path} on {self.host} did not answer like Paperless-ngx "
                f"({kind or 'the answer'} is not JSON): check the base URL"
            ) from None

    def _page(self, data: Any, path: str) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise self._shape_error(path, "a page with results")
        return data

    def _shape_error(self, path: str, expected: str) -> BadResponseError:
        return BadResponseError(
            f"GET {path} on {self.host} did not answer like Paperless-ngx (not {expected}): "
            "check the base URL"
        )

    def _pages(
        self, path: str, params: dict[str, Any], *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[tuple[dict[str, Any], requests.Response]]:
        """Every page of a list. `next` gives only the page number: the server may sit
        behind a proxy and name a host or scheme we cannot reach."""
        page = 1
        while True:
            response = self._get(path, {**params, "page": page, "page_size": page_size})
            data = self._page(self._json(response, path), path)
            yield data, response
            following = data.get("next")
            if not following:
                return
            numbers = parse_qs(urlsplit(str(following)).query).get("page") or [str(page + 1)]
            try:
                next_page = int(numbers[0])
            except ValueError:
                raise self._shape_error(path, "a page with a numeric next page") from None
            if next_page <= page:
                raise self._shape_error(path, "a page whose next page moves forward")
            page = next_page

    def _rows(
        self, path: str, params: dict[str, Any], *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        for page, _ in self._pages(path, params, page_size=page_size):
            yield from page["results"]

    def _server_time(self, response: requests.Response) -> datetime:
        header = response.headers.get("Date")
        try:
            when = parsedate_to_datetime(header) if header else None
        except (TypeError, ValueError):
            when = None
        if when is None:
            raise BadResponseError(
                f"Paperless-ngx at {self.host} answered without a valid Date header, "
                "which the sync needs for its watermark: check the proxy in front of it"
            )
        return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers.get(name, ""))
    except ValueError:
        return None


def _retry_after(response: requests.Response) -> float | None:
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


def _filename(response: requests.Response, fallback: str) -> str:
    disposition = response.headers.get("Content-Disposition", "")
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename*" and "''" in value:
            from urllib.parse import unquote

            return unquote(value.split("''", 1)[1].strip('"'))
        if key.lower() == "filename" and value:
            return value.strip('"')
    return fallback
