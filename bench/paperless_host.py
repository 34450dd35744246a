"""Hosts the Paperless-ngx test double in its own process and reports its request counts.

The double's request log lives in the process that serves it; the benchmark needs that
process apart from its own (so the client under test never shares a GIL with the server),
hence this small host with a line protocol on stdin:

    stats            -> one JSON line: requests, GETs, other verbs, counts per route
    reset            -> clears the log, answers the stats before clearing
    latency SECONDS  -> sets the injected latency of every request

`python -m bench.paperless_host --documents N --seed S --latency L` prints
{"url": ..., "token": ..., "documents": N} once serving (a token of the test double's
admin, not a secret), then serves until stdin closes or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import sys
import time
from collections import Counter
from typing import Any

_ID_IN_PATH = re.compile(r"/\d+/")


def route_of(method: str, path: str, query: Any) -> str:
    """A route with ids folded, and the kind of document list request it was."""
    route = f"{method} {_ID_IN_PATH.sub('/{id}/', path)}"
    if path.rstrip("/").endswith("/api/documents"):
        keys = set(query or {})
        if "id__in" in keys:
            route += " (id__in)"
        elif "fields" in keys:
            route += " (fields)"
    return route


def stats_of(log: list[Any]) -> dict[str, Any]:
    routes: Counter[str] = Counter()
    for record in log:
        routes[route_of(record.method, record.path, record.query)] += 1
    gets = sum(1 for record in log if record.method == "GET")
    return {"requests": len(log), "gets": gets, "other_verbs": len(log) - gets, "by_route": routes}


def _no_nagle() -> None:
    """Send the double's responses without Nagle's delay, as production servers do.

    The double writes headers and body in two sends; with Nagle's algorithm on, the body
    waits for the client's delayed ACK (40 ms on Linux) on every request, which would add
    twice the injected latency to every Paperless-ngx request of the benchmark. Patched here,
    in the benchmark's own host process, rather than in the double (not ours to change).
    """
    from tests.paperless_double import server

    if getattr(server.Handler, "_bench_no_nagle", False):
        return
    original = server.Handler.setup

    def setup(handler: Any) -> None:
        original(handler)
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    server.Handler.setup = setup  # type: ignore[method-assign,assignment]
    server.Handler._bench_no_nagle = True  # type: ignore[attr-defined]


def _reset(double: Any) -> None:
    if hasattr(double, "reset_log"):
        double.reset_log()
    else:
        double.log.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()

    from tests.paperless_double import PaperlessDouble, generate_corpus

    _no_nagle()
    started = time.monotonic()
    double = PaperlessDouble(generate_corpus(args.documents, seed=args.seed))
    double.start()
    double.faults.latency = args.latency
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(
        json.dumps(
            {
                "url": double.url,
                "token": double.token("admin"),
                "documents": args.documents,
                "seconds_to_start": round(time.monotonic() - started, 2),
            }
        ),
        flush=True,
    )
    try:
        for line in sys.stdin:
            command = line.split()
            if not command:
                continue
            if command[0] == "stats":
                print(json.dumps(stats_of(list(double.log))), flush=True)
            elif command[0] == "reset":
                print(json.dumps(stats_of(list(double.log))), flush=True)
                _reset(double)
            elif command[0] == "latency":
                double.faults.latency = float(command[1])
                print(json.dumps({"latency": double.faults.latency}), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {command[0]}"}), flush=True)
    finally:
        double.stop()


if __name__ == "__main__":
    main()
