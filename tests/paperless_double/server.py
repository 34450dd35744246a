"""The HTTP side: a threaded loopback server that authenticates, applies faults, logs
every request (any method) and writes the API's answer.

HTTP/1.1 with keep-alive, so a `requests.Session` reuses its connections as it would
against granian in front of the real server.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.paperless_double.api import Reply, Request, html_reply, json_reply, negotiate
from tests.paperless_double.model import User

if TYPE_CHECKING:
    from tests.paperless_double.double import PaperlessDouble

SERVER_RELEASE = "3.0.5"
ERROR_PAGES = {
    500: "Server Error (500)",
    502: "502 Bad Gateway",
    503: "503 Service Unavailable",
    504: "504 Gateway Time-out",
}


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # API path without the prefix, e.g. /api/documents/
    query: dict[str, str]
    user: str | None
    status: int  # 0: the connection was dropped without an answer


class DoubleHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], double: PaperlessDouble) -> None:
        self.double = double
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        """Cut kept-alive connections too, so a stopped double really is unreachable."""
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "granian"
    sys_version = ""
    server: DoubleHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two sends; without NODELAY the body waits for the
        # client's delayed ACK (40 ms on Linux) on every kept-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.handle_method("GET")

    def do_POST(self) -> None:
        self.handle_method("POST")

    def do_PUT(self) -> None:
        self.handle_method("PUT")

    def do_PATCH(self) -> None:
        self.handle_method("PATCH")

    def do_DELETE(self) -> None:
        self.handle_method("DELETE")

    def do_HEAD(self) -> None:
        self.handle_method("HEAD")

    def do_OPTIONS(self) -> None:
        self.handle_method("OPTIONS")

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the double's `log`

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header comes from the double's clock, like the server's own time.
        return formatdate(self.server.double.clock.now().timestamp(), usegmt=True)

    def handle_method(self, method: str) -> None:
        double = self.server.double
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        api_path = double.api_path(split.path)
        user = self.authenticate()
        username = user.username if isinstance(user, User) else None
        decision = double.faults.decide(api_path or split.path)
        if decision.latency:
            time.sleep(decision.latency)
        if decision.drop:
            double.record(RequestRecord(method, api_path or split.path, query, username, 0))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if decision.status is not None:
            reply = fault_reply(decision.status, decision.retry_after)
        else:
            reply = self.answer(method, api_path, query, user)
        if decision.malformed and reply.status == 200:
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
        if decision.delay:
            time.sleep(decision.delay)
        double.record(RequestRecord(method, api_path or split.path, query, username, reply.status))
        self.send(reply, method)

    def authenticate(self) -> User | bool | None:
        """The user, None without credentials, False for wrong ones."""
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        double = self.server.double
        if scheme.lower() == "token":
            return double.user_by_token(value.strip()) or False
        if scheme.lower() == "basic":
            try:
                username, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return double.user_by_password(username, password) or False
        return False

    def answer(self, method: str, api_path: str | None, query: dict[str, str], user: Any) -> Reply:
        double = self.server.double
        if api_path is None:
            return html_reply(404, "<h1>Not Found</h1>")
        if api_path == "/api/" and method == "GET":
            reply = Reply(302, b"", "text/html; charset=utf-8")
            reply.headers["Location"] = f"{double.prefix}/api/schema/view/"
            return reply
        version = negotiate(self.headers.get("Accept"), double.api_versions)
        if version is None:
            return json_reply(406, {"detail": 'Invalid version in "Accept" header.'})
        if user is None:
            return auth_reply("Authentication credentials were not provided.")
        if user is False:
            return auth_reply("Invalid token.")
        versions = {"X-Api-Version": str(max(double.api_versions)), "X-Version": double.release}
        if method != "GET":
            reply = json_reply(405, {"detail": f'Method "{method}" not allowed.'})
        else:
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
            request = Request(method, api_path, query, f"http://{host}{double.prefix}", None, user)
            reply = double.api.answer(request, version)
        reply.headers.update(versions)
        return reply

    def send(self, reply: Reply, method: str) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Allow", "GET, HEAD, OPTIONS")
        self.send_header("Vary", "Accept, Accept-Language, origin, Cookie, Accept-Encoding")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(reply.body)


def auth_reply(detail: str) -> Reply:
    reply = json_reply(401, {"detail": detail})
    reply.headers["WWW-Authenticate"] = "Token"
    return reply


def fault_reply(status: int, retry_after: float | None) -> Reply:
    if status == 429:
        wait = retry_after if retry_after is not None else 1
        reply = json_reply(
            429, {"detail": f"Request was throttled. Expected available in {wait:g} seconds."}
        )
        reply.headers["Retry-After"] = f"{wait:g}"
        return reply
    # Proxies and Django's 500 page answer HTML, not JSON.
    page = ERROR_PAGES.get(status, f"{status} Error")
    reply = html_reply(status, f"<html><body><h1>{page}</h1></body></html>")
    if retry_after is not None:
        reply.headers["Retry-After"] = f"{retry_after:g}"
    return reply
