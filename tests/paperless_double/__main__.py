"""`python -m tests.paperless_double --documents N --seed S --port P [--latency 0.02]`

Prints one JSON line `{"url": ..., "tokens": {...}}` once serving, then serves until
SIGTERM or SIGINT (the demo and the benchmark spawn it this way).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from tests.paperless_double.corpus import generate_corpus
from tests.paperless_double.double import PaperlessDouble


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.paperless_double")
    parser.add_argument("--documents", type=int, default=300, help="corpus size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--prefix", default="", help="mount path, e.g. /paperless")
    parser.add_argument("--api-versions", default="9,10", help="comma-separated, e.g. 7,8,9")
    args = parser.parse_args(argv)
    versions = {int(v) for v in args.api_versions.split(",") if v.strip()}
    double = PaperlessDouble(
        generate_corpus(args.documents, args.seed), api_versions=versions, prefix=args.prefix
    )
    double.faults.latency = args.latency
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    double.start(args.port)
    print(json.dumps({"url": double.url, "tokens": double.tokens()}), flush=True)
    while not stopped.wait(0.5):
        pass
    double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
