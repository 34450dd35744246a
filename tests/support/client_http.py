"""A tiny scripted HTTP server for the client's fault tests (real sockets, real HTTP).

Each request is logged; `answer` (a function of the request) decides the response, so a
test can script 503-then-200, a 429 with Retry-After, HTML, a dropped connection, a 302…
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DROP = object()  # answer with this to close the connection without a response


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list → JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)


Answer = Callable[[Seen, int], "Reply | object"]  # (request, how many came before on the path)


class ScriptedServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.log: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    parts.path,
                    {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                )
                with server._lock:
                    before = sum(1 for s in server.log if s.path == seen.path)
                    server.log.append(seen)
                reply = server.answer(seen, before)
                if reply is DROP:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                assert isinstance(reply, Reply)
                body = reply.body
                if isinstance(body, dict | list):
                    data = json.dumps(body).encode()
                    content_type = "application/json"
                elif isinstance(body, str):
                    data, content_type = body.encode(), "text/html; charset=utf-8"
                else:
                    data, content_type = body or b"", "application/octet-stream"
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                # The client may have given up (a timeout test): nothing left to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def paths(self) -> list[str]:
        return [s.path for s in self.log]


def page(results: list[Any], *, next_url: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"count": len(results), "next": next_url, "previous": None, "results": results, **extra}


def paperless_headers(newest: int = 10) -> dict[str, str]:
    # http.server adds the Date header itself.
    return {"X-Api-Version": str(newest), "X-Version": "3.0.5"}


def requested_version(seen: Seen) -> int | None:
    accept = seen.headers.get("accept", "")
    for part in accept.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "version":
            return int(value)
    return None


def versioned(
    answer: Callable[[Seen, int], Reply | object], accepted: frozenset[int] = frozenset({9, 10})
) -> Answer:
    """Wrap an answer so that unsupported `Accept: …; version=N` gets 406, like DRF."""

    def wrapped(seen: Seen, before: int) -> Reply | object:
        version = requested_version(seen)
        if version is not None and version not in accepted:
            return Reply(
                406,
                {"detail": 'Invalid version in "Accept" header.'},
                paperless_headers(max(accepted)),
            )
        return answer(seen, before)

    return wrapped
