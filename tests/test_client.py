"""PaperlessClient over real HTTP: negotiation, paging, every fault, and GET only."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.paperless.client import LIGHT_PAGE_SIZE, PaperlessClient, ReadOnlyViolation
from tasks.paperless.errors import (
    AuthenticationError,
    BadResponseError,
    NotFoundError,
    PaperlessError,
    TransientError,
    UnreachableError,
    VersionError,
)
from tests.support.client_http import (
    DROP,
    Reply,
    ScriptedServer,
    Seen,
    page,
    paperless_headers,
    requested_version,
    self_signed_tls,
    versioned,
)

TOKEN = "tok-0123456789abcdef-secret"


class Corpus:
    """Answers /api/documents/ like Paperless-ngx: paging, id__in, fields, `all` up to v9."""

    def __init__(self, n: int = 25, *, foreign_next: bool = False) -> None:
        self.docs = [
            {"id": i, "title": f"Doc {i}", "content": "x" * i, "owner": None, "tags": [1]}
            for i in range(1, n + 1)
        ]
        self.foreign_next = foreign_next

    def __call__(self, seen: Seen, before: int) -> Reply:
        if seen.path.rstrip("/").endswith("/api/tags"):
            return Reply(200, page([{"id": 1, "name": "Inbox"}]), paperless_headers())
        q = seen.query
        docs = self.docs
        if "id__in" in q:
            wanted = {int(i) for i in q["id__in"].split(",")}
            docs = [d for d in docs if d["id"] in wanted]
        size, number = int(q.get("page_size", 25)), int(q.get("page", 1))
        chunk = docs[(number - 1) * size : number * size]
        if number > 1 and not chunk:
            return Reply(404, {"detail": "Invalid page."}, paperless_headers())
        if "fields" in q:
            keep = q["fields"].split(",")
            chunk = [{k: v for k, v in d.items() if k in keep} for d in chunk]
        host = "http://paperless.internal:8000" if self.foreign_next else ""
        more = number * size < len(docs)
        nxt = f"{host}{seen.path}?page={number + 1}&page_size={size}" if more else None
        body = page(chunk, next_url=nxt)
        body["count"] = len(docs)
        if (requested_version(seen) or 10) <= 9:
            body["all"] = [d["id"] for d in docs]
        return Reply(200, body, paperless_headers())


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def start(answer: Any, tls: Any = None) -> ScriptedServer:
        server = ScriptedServer(answer, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        # Invariant 1: whatever a test did, only GET reached the server.
        assert {s.method for s in server.log} <= {"GET"}
        for seen in server.log:
            assert TOKEN not in seen.path and TOKEN not in str(seen.query)
        server.stop()


def client_for(server: ScriptedServer, prefix: str = "", **kwargs: Any) -> PaperlessClient:
    kwargs.setdefault("backoff_factor", 0.01)
    return PaperlessClient(server.url + prefix, TOKEN, **kwargs)


def assert_clean(error: Exception) -> str:
    message = str(error)
    assert TOKEN not in message and "\n" not in message
    return message


# -- negotiation and headers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("accepted", "expected"),
    [({9, 10}, 10), ({7, 8, 9}, 9), ({9}, 9), ({7}, 7)],
)
def test_negotiates_the_newest_common_version(serve, accepted: set[int], expected: int) -> None:
    server = serve(versioned(Corpus(), frozenset(accepted)))
    client = client_for(server)
    info = client.probe()
    assert info.api_version == client.api_version == expected
    assert info.server_version == "3.0.5"
    assert info.document_count == 25
    assert abs(info.server_time - datetime.now(UTC)) < timedelta(seconds=5)
    asked = [requested_version(s) for s in server.log]
    assert asked == list(range(10, expected - 1, -1))  # one probe per version tried, then none
    client.list_lookup("tags")
    assert requested_version(server.log[-1]) == expected


def test_a_server_without_any_supported_version_is_a_version_error(serve) -> None:
    server = serve(versioned(Corpus(), frozenset({5, 6})))
    with pytest.raises(VersionError) as caught:
        client_for(server).probe()
    assert "/api/documents/" in assert_clean(caught.value)
    assert [requested_version(s) for s in server.log] == [10, 9, 8, 7]


def test_sends_the_token_and_json_accept_header(serve) -> None:
    server = serve(versioned(Corpus()))
    client_for(server).list_lookup("tags")
    headers = server.log[-1].headers
    assert headers["authorization"] == f"Token {TOKEN}"
    assert headers["accept"] == "application/json; version=10"


def test_a_given_api_version_skips_negotiation(serve) -> None:
    server = serve(versioned(Corpus()))
    client = client_for(server, api_version=9)
    client.list_lookup("tags")
    assert len(server.log) == 1 and requested_version(server.log[0]) == 9


# -- base URL ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["/paperless", "/paperless/", "/paperless/api/"])
def test_a_path_prefix_is_kept(serve, suffix: str) -> None:
    server = serve(versioned(Corpus()))
    client = client_for(server, suffix)
    assert client.base_url == server.url + "/paperless"
    assert len(client.get_documents([3, 4])) == 2
    assert {s.path for s in server.log} == {"/paperless/api/documents/"}


@pytest.mark.parametrize("url", ["ftp://paperless.example.com", "paperless.example.com", ""])
def test_only_http_and_https_urls_are_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        PaperlessClient(url, TOKEN)


def test_refuses_to_send_the_token_over_plain_http_to_a_remote_host() -> None:
    with pytest.raises(ValueError) as caught:
        PaperlessClient("http://paperless.example.com/", TOKEN)
    assert assert_clean(caught.value) == (
        "refusing to send the API token over plain http to paperless.example.com: "
        "use https or set ALLOW_INSECURE_HTTP=true"
    )
    allowed = PaperlessClient("http://paperless.example.com/", TOKEN, allow_insecure_http=True)
    assert allowed.base_url == "http://paperless.example.com"
    assert PaperlessClient("https://paperless.example.com/", TOKEN).base_url.startswith("https")
    assert PaperlessClient("http://localhost:8000", TOKEN).base_url == "http://localhost:8000"


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(ValueError, match="must not contain a user name or password"):
        PaperlessClient("https://admin:pw@paperless.example.com", TOKEN)


# -- reading -----------------------------------------------------------------------------


def test_paging_follows_page_numbers_on_our_own_base_url(serve) -> None:
    server = serve(versioned(Corpus(25, foreign_next=True)))
    client = client_for(server, api_version=10)
    ids = [d["id"] for d in client.get_documents(list(range(1, 26)))]
    assert ids == list(range(1, 26))
    # The server named another host in `next`; we stayed on ours and moved by page number.
    client_pages = [s for s in server.log if "id__in" in s.query]
    assert [s.query["page"] for s in client_pages] == ["1"]
    light_server = serve(versioned(Corpus(7, foreign_next=True)))
    client = client_for(light_server, api_version=10)
    original = client._pages

    def small_pages(path, params, page_size=3):  # force several pages
        return original(path, params, page_size=3)

    client._pages = small_pages  # type: ignore[method-assign]
    assert client.list_document_ids() == list(range(1, 8))
    assert [s.query["page"] for s in light_server.log] == ["1", "2", "3"]


def test_list_light_asks_for_the_light_fields_and_full_perms(serve) -> None:
    server = serve(versioned(Corpus()))
    client = client_for(server, api_version=10)
    docs, server_time = client.list_light()
    assert len(docs) == 25 and set(docs[0]) == {"id", "title", "tags", "owner"}
    query = server.log[0].query
    assert query["full_perms"] == "true" and query["ordering"] == "id"
    assert query["page_size"] == str(LIGHT_PAGE_SIZE)
    assert query["fields"].split(",")[:3] == ["id", "modified", "title"]
    assert "permissions" in query["fields"].split(",")
    assert abs(server_time - datetime.now(UTC)) < timedelta(seconds=5)
    assert server_time.tzinfo is not None


def test_list_document_ids_uses_all_up_to_api_9(serve) -> None:
    server = serve(versioned(Corpus(), frozenset({9})))
    client = client_for(server, api_version=9)
    assert client.list_document_ids() == list(range(1, 26))
    assert len(server.log) == 1 and server.log[0].query["page_size"] == "1"


def test_list_document_ids_pages_fields_id_on_api_10(serve) -> None:
    server = serve(versioned(Corpus()))
    client = client_for(server, api_version=10)
    since = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert client.list_document_ids(modified_after=since) == list(range(1, 26))
    query = server.log[0].query
    assert query["fields"] == "id" and int(query["page_size"]) >= 10000
    assert query["modified__gt"] == "2024-05-01T12:00:00Z"


def test_get_documents_asks_for_exactly_the_ids_with_full_perms(serve) -> None:
    server = serve(versioned(Corpus()))
    client = client_for(server, api_version=10)
    docs = client.get_documents([5, 3, 999])
    assert [d["id"] for d in docs] == [3, 5]  # 999 vanished: simply missing
    query = server.log[0].query
    assert query["id__in"] == "5,3,999" and query["full_perms"] == "true"
    assert query["page_size"] == "3" and query["ordering"] == "id"
    assert client.get_documents([]) == [] and len(server.log) == 1


def test_get_titles_and_notes_and_download(serve) -> None:
    def answer(seen: Seen, before: int) -> Reply:
        if seen.path.endswith("/notes/"):
            return Reply(200, [{"id": 1, "note": "hi", "user": 2}], paperless_headers())
        if seen.path.endswith("/download/"):
            headers = {
                "Content-Type": "application/pdf",
                "Content-Disposition": "attachment; filename*=utf-8''Rechnung%20M%C3%A4rz.pdf",
            }
            return Reply(200, b"%PDF-1.7 fake", headers)
        return Corpus()(seen, before)

    server = serve(versioned(answer))
    client = client_for(server, api_version=10)
    assert client.get_titles([2, 4]) == {2: "Doc 2", 4: "Doc 4"}
    assert server.log[0].query["fields"] == "id,title"
    assert client.get_notes(7) == [{"id": 1, "note": "hi", "user": 2}]
    assert client.download(7) == (b"%PDF-1.7 fake", "application/pdf", "Rechnung März.pdf")


def test_unknown_lookup_names_are_refused() -> None:
    client = PaperlessClient("https://paperless.example.com", TOKEN)
    with pytest.raises(ValueError, match="unknown lookup"):
        client.list_lookup("mail_accounts")


# -- faults ------------------------------------------------------------------------------


def always(reply: Reply) -> Any:
    return lambda seen, before: reply


@pytest.mark.parametrize("status", [401, 403])
def test_authentication_failures(serve, status: int) -> None:
    server = serve(always(Reply(status, {"detail": "Invalid token."}, paperless_headers())))
    with pytest.raises(AuthenticationError) as caught:
        client_for(server).probe()
    assert caught.value.status == status
    assert assert_clean(caught.value) == (
        "authentication failed: check the API token and its user's permissions "
        f"(GET /api/documents/ answered {status})"
    )
    assert len(server.log) == 1  # not retried


def test_not_found(serve) -> None:
    server = serve(always(Reply(404, {"detail": "No Document matches."}, paperless_headers())))
    with pytest.raises(NotFoundError) as caught:
        client_for(server, api_version=10).get_notes(12345)
    assert "GET /api/documents/12345/notes/ answered 404" in assert_clean(caught.value)


def test_429_honours_retry_after_and_tells_the_limiter(serve) -> None:
    def answer(seen: Seen, before: int) -> Reply:
        if before == 0:
            return Reply(429, {"detail": "slow down"}, {"Retry-After": "1"})
        return Corpus()(seen, before)

    limiter = CountingLimiter()
    server = serve(versioned(answer))
    client = client_for(server, api_version=10, limiter=limiter)
    started = time.monotonic()
    assert client.list_lookup("tags") == [{"id": 1, "name": "Inbox"}]
    assert time.monotonic() - started >= 0.95
    assert len(server.log) == 2
    assert limiter.backoffs == [1.0]
    assert limiter.slots == 1 and limiter.held == 0  # urllib3 retried inside one slot


def test_persistent_429_is_transient_with_retry_after(serve) -> None:
    limiter = CountingLimiter()
    server = serve(always(Reply(429, {"detail": "slow down"}, {"Retry-After": "0"})))
    with pytest.raises(TransientError) as caught:
        client_for(server, api_version=10, retries=2, limiter=limiter).list_lookup("tags")
    assert caught.value.retry_after == 0.0
    assert "GET /api/tags/ answered 429" in assert_clean(caught.value)
    assert len(server.log) == 3


def test_a_long_retry_after_is_not_slept_inside_the_request(serve) -> None:
    limiter = CountingLimiter()
    server = serve(always(Reply(429, {"detail": "slow down"}, {"Retry-After": "120"})))
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        client_for(server, api_version=10, limiter=limiter).list_lookup("tags")
    assert time.monotonic() - started < 5
    assert caught.value.retry_after == 120.0
    assert limiter.backoffs == [120.0] and len(server.log) == 1


def test_server_errors_then_success(serve) -> None:
    statuses = [500, 502, 503]

    def answer(seen: Seen, before: int) -> Reply:
        if before < len(statuses):
            return Reply(statuses[before], "<h1>Bad Gateway</h1>")
        return Corpus()(seen, before)

    server = serve(versioned(answer))
    assert client_for(server, api_version=10).list_lookup("tags")[0]["name"] == "Inbox"
    assert len(server.log) == 4


def test_persistent_503_is_a_transient_error_after_the_retries(serve) -> None:
    server = serve(always(Reply(503, "<h1>Service Unavailable</h1>")))
    with pytest.raises(TransientError) as caught:
        client_for(server, api_version=10, retries=3).list_lookup("groups")
    assert not isinstance(caught.value, UnreachableError)
    assert "GET /api/groups/ answered 503 after retries" in assert_clean(caught.value)
    assert len(server.log) == 4  # the first try and three retries


@pytest.mark.parametrize(
    ("body", "kind"),
    [("<html><body>Login</body></html>", "text/html"), (b"{not json", "application/octet-stream")],
)
def test_answers_that_are_not_json(serve, body: Any, kind: str) -> None:
    server = serve(always(Reply(200, body, paperless_headers())))
    with pytest.raises(BadResponseError) as caught:
        client_for(server, api_version=10).list_lookup("tags")
    assert assert_clean(caught.value) == (
        f"GET /api/tags/ on 127.0.0.1:{server.port} did not answer like Paperless-ngx "
        f"({kind} is not JSON): check the base URL"
    )


def test_json_of_the_wrong_shape(serve) -> None:
    server = serve(always(Reply(200, {"hello": "world"}, paperless_headers())))
    with pytest.raises(BadResponseError, match="did not answer like Paperless-ngx"):
        client_for(server, api_version=10).list_lookup("tags")


def test_a_redirect_to_a_login_page_is_not_followed(serve) -> None:
    server = serve(always(Reply(302, "", {"Location": "/accounts/login/?next=/api/documents/"})))
    with pytest.raises(BadResponseError) as caught:
        client_for(server).probe()
    message = assert_clean(caught.value)
    assert "answered 302 redirecting to /accounts/login/" in message
    assert message.endswith("check the base URL")
    assert server.paths() == ["/api/documents/"]


def test_a_dropped_connection_is_retried(serve) -> None:
    server = serve(versioned(lambda seen, before: DROP if before == 0 else Corpus()(seen, before)))
    assert client_for(server, api_version=10).list_lookup("tags")[0]["id"] == 1
    assert len(server.log) == 2


def test_a_dead_server_is_unreachable_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = PaperlessClient(f"http://127.0.0.1:{port}", TOKEN)  # default retries and backoff
    started = time.monotonic()
    with pytest.raises(UnreachableError) as caught:
        client.probe()
    assert time.monotonic() - started < 3
    assert assert_clean(caught.value) == (
        f"could not reach Paperless-ngx at 127.0.0.1:{port}: connection refused on "
        "GET /api/documents/; check the URL"
    )


def test_a_read_timeout_is_transient(serve) -> None:
    def slow(seen: Seen, before: int) -> Reply:
        time.sleep(0.5)
        return Corpus()(seen, before)

    server = serve(slow)
    client = client_for(server, api_version=10, read_timeout=0.1, retries=1)
    with pytest.raises(TransientError, match=r"did not answer GET /api/tags/ within 0\.1 s"):
        client.list_lookup("tags")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verification(serve, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    context, cert_file = self_signed_tls(tmp_path)
    server = serve(versioned(Corpus()), context)
    assert server.url.startswith("https://")
    with pytest.raises(PaperlessError) as caught:
        client_for(server).probe()
    assert not isinstance(caught.value, TransientError)  # retrying will not fix a certificate
    assert assert_clean(caught.value) == (
        f"could not verify the TLS certificate of 127.0.0.1:{server.port} on "
        "GET /api/documents/: fix the certificate or set CA_BUNDLE to your CA's bundle"
    )
    assert client_for(server, verify=str(cert_file)).probe().document_count == 25
    # verify=False holds even when the environment names a CA bundle.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    assert client_for(server, verify=False).probe().document_count == 25


# -- read-only -----------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_the_session_cannot_send_anything_but_get(serve, verb: str) -> None:
    import requests

    server = serve(versioned(Corpus()))
    client = client_for(server, api_version=10)
    with pytest.raises(ReadOnlyViolation, match=f"refused to send {verb}"):
        client.transport.session.request(verb, server.url + "/api/documents/1/")
    prepared = requests.Request(verb, server.url + "/api/documents/1/").prepare()
    with pytest.raises(ReadOnlyViolation):
        client.transport.session.send(prepared)
    assert server.log == []
    assert not any(hasattr(client, name) for name in ("post", "put", "patch", "delete"))


class CountingLimiter:
    def __init__(self) -> None:
        self.slots = 0
        self.held = 0
        self.backoffs: list[float] = []

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.slots += 1
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1

    def backoff(self, seconds: float) -> None:
        self.backoffs.append(seconds)


def test_every_request_holds_a_limiter_slot(serve) -> None:
    limiter = CountingLimiter()
    server = serve(versioned(Corpus()))
    client = client_for(server, limiter=limiter)
    client.probe()
    client.get_documents([1, 2])
    client.list_lookup("tags")
    assert limiter.slots == len(server.log) == 3 and limiter.held == 0


def test_the_token_never_reaches_the_logs(serve, caplog: pytest.LogCaptureFixture) -> None:
    answers = [Reply(503, "<h1>down</h1>"), DROP, Reply(429, {}, {"Retry-After": "0"})]

    def answer(seen: Seen, before: int) -> Any:
        return answers[before] if before < len(answers) else Corpus()(seen, before)

    server = serve(versioned(answer))
    refusing = serve(always(Reply(401, {"detail": "Invalid token."})))
    with caplog.at_level(logging.DEBUG):
        client_for(server).probe()
        with pytest.raises(AuthenticationError):
            client_for(refusing).probe()
    assert caplog.records and TOKEN not in caplog.text
    assert "Retrying" in caplog.text  # urllib3 did log its retries, without the token
