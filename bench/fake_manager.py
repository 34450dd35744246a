"""A minimal fake of Omni's connector-manager for the benchmark: accepts, counts, delays.

It answers every SDK call of omni-protocol.md §2 the way the manager would (content ids,
a sync-config for the one source it knows, checkpoints published on complete) after an
injected latency, and counts requests per route. It does not validate bodies: the strict
fake lives in tests/omni_double/; this one only has to be cheap and honest about counts.

`python -m bench.fake_manager --port 0 --latency 0.02` prints {"url": ...} once serving.
The source it serves comes from the environment (BENCH_SOURCE_ID, BENCH_PAPERLESS_URL,
BENCH_PAPERLESS_TOKEN) so the token never sits on a command line. `GET /_bench/stats` and
`POST /_bench/reset` are the benchmark's own, neither delayed nor counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RUN_ROUTE = re.compile(r"^/sdk/sync/[^/]+/")
_SOURCE_ROUTE = re.compile(r"^/sdk/source/[^/]+/")


class ManagerState:
    def __init__(self, latency: float, source: dict[str, Any]) -> None:
        self.latency = latency
        self.source = source
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.content_bytes = 0
        self.next_content = 0
        self.run_checkpoints: dict[str, Any] = {}
        self.completed: list[str] = []
        self.failed: dict[str, str] = {}

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": sum(self.requests.values()),
                "by_route": dict(self.requests),
                "events": dict(self.events),
                "content_bytes": self.content_bytes,
                "completed": list(self.completed),
                "failed": dict(self.failed),
            }

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.events.clear()
            self.content_bytes = 0


def route_of(method: str, path: str) -> str:
    path = path.split("?", 1)[0]
    path = _RUN_ROUTE.sub("/sdk/sync/{id}/", path)
    path = _SOURCE_ROUTE.sub("/sdk/source/{id}/", path)
    return f"{method} {path}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ManagerServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm holds the
        # second until the client's delayed ACK (40 ms), which would swamp the latency.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        state = self.server.state
        if self.path.startswith("/_bench/"):
            stats = state.stats()
            if self.path == "/_bench/reset":
                state.reset()
            self._answer(200, stats)
            return
        time.sleep(state.latency)
        route = route_of(method, self.path)
        with state.lock:
            state.requests[route] += 1
        status, answer = self._dispatch(route, body)
        self._answer(status, answer)

    def _dispatch(self, route: str, body: bytes) -> tuple[int, Any]:
        state = self.server.state
        run_id = self.path.split("/")[3] if route.startswith(("POST /sdk/sync/{", "PUT")) else ""
        if route == "GET /sdk/source/{id}/sync-config":
            source_id = self.path.split("/")[3]
            if source_id != state.source["source_id"]:
                return 404, {"error": f"unknown source {source_id}"}
            return 200, {
                "config": {"base_url": state.source["base_url"]},
                "credentials": {"api_key": state.source["token"]},
                "connector_state": None,
                "checkpoint": state.source.get("checkpoint"),
                "source_type": "paperless_ngx",
                "user_filter_mode": "all",
                "user_whitelist": None,
                "user_blacklist": None,
            }
        if route in ("POST /sdk/content", "POST /sdk/extract-content"):
            with state.lock:
                state.next_content += 1
                state.content_bytes += len(body)
                return 200, {"content_id": f"c{state.next_content}"}
        if route in ("POST /sdk/events/batch", "POST /sdk/events"):
            payload = json.loads(body or b"{}")
            events = payload.get("events") or [payload.get("event") or {}]
            with state.lock:
                state.events.update(str(event.get("type")) for event in events)
            return 200, {}
        if route == "PUT /sdk/sync/{id}/checkpoint":
            with state.lock:
                state.run_checkpoints[run_id] = json.loads(body or b"null")
            return 200, {}
        if route == "POST /sdk/sync/{id}/complete":
            with state.lock:
                state.completed.append(run_id)
                if run_id in state.run_checkpoints:
                    state.source["checkpoint"] = state.run_checkpoints[run_id]
            return 200, {}
        if route == "POST /sdk/sync/{id}/fail":
            with state.lock:
                state.failed[run_id] = str(json.loads(body or b"{}").get("error"))
            return 200, {}
        if route == "POST /sdk/sync/create":
            with state.lock:
                state.next_content += 1
                return 200, {"sync_run_id": f"run-{state.next_content}"}
        return 200, {}

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ManagerServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, state: ManagerState) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    source = {
        "source_id": os.environ.get("BENCH_SOURCE_ID", "bench"),
        "base_url": os.environ.get("BENCH_PAPERLESS_URL", ""),
        "token": os.environ.get("BENCH_PAPERLESS_TOKEN", ""),
        "checkpoint": None,
    }
    server = ManagerServer(args.port, ManagerState(args.latency, source))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
