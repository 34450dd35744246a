"""`python -m bench.run`: every part of issue 7's benchmark in one go, reported side by side.

    python -m bench.run [--documents 10000] [--latency 0.02] [--big 100000] [--skip-big]
                        [--quick] [--output FILE] [--json FILE]

Part one, against a test double of N documents: (1) the sequential baseline, (2) this
connector into Omni (a fake connector-manager) and into the local index, (3) the server's
limit. Part two, against 100,000 documents: a full sync into the local index (peak RSS
against part one's), an incremental sync with nothing changed, and search latency on the
index it built. Every request to both servers is delayed by --latency seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import parts
from bench.connector import ConnectorUnderTest
from bench.report import Measured, fmt_ratio, ratio, run_rows, table, verdict
from bench.server_limit import time_incremental_requests
from bench.services import FakeManager, PaperlessHost

QUICK_DOCUMENTS = 500
PART_ONE_ROWS = ("baseline", "omni", "local", "limit", "floor_omni", "floor_local")
ID_LISTING = "(fields)"


def part_one(args: argparse.Namespace) -> dict[str, Measured]:
    with ExitStack() as stack:
        paperless = PaperlessHost(args.documents, args.seed, args.latency)
        stack.callback(paperless.close)
        manager = FakeManager(args.latency, parts.SOURCE_ID, paperless)
        stack.callback(manager.close)
        runs = {
            "baseline": parts.guarded(
                "1. Sequential baseline", lambda: parts.baseline(paperless, manager)
            )
            if not args.skip_baseline
            else Measured("1. Sequential baseline", failure="left out (--skip-baseline)"),
            "omni": parts.guarded(
                "2a. This connector → Omni",
                lambda: parts.connector_full(
                    "2a. This connector → Omni", paperless, manager, args.profile
                ),
            ),
            "local": parts.guarded(
                "2b. This connector → local index",
                lambda: parts.connector_full(
                    "2b. This connector → local index", paperless, None, args.profile
                ),
            ),
            "limit": parts.guarded("3. Server's limit", lambda: parts.server_limit(paperless)),
            "floor_omni": parts.guarded(
                parts.FLOOR_LABELS["omni"],
                lambda: parts.server_limit(paperless, "omni", manager),
            ),
            "floor_local": parts.guarded(
                parts.FLOOR_LABELS["index"], lambda: parts.server_limit(paperless, "index")
            ),
        }
        for run in runs.values():
            _progress(run)
        return runs


def part_two(args: argparse.Namespace) -> dict[str, Any]:
    """Full and no-change incremental sync of the big instance, then search on its index."""
    out: dict[str, Any] = {}
    with ExitStack() as stack:
        paperless = PaperlessHost(args.big, args.seed, args.latency)
        stack.callback(paperless.close)
        connector = ConnectorUnderTest("big", profile_dir=args.profile)
        stack.callback(connector.close)
        connector.start_worker()
        label = f"full sync of {args.big:,} → local index"
        out["full"] = parts.guarded(
            label,
            lambda: parts.connector_sync(connector, label, "full", paperless, None, register=True),
        )
        _progress(out["full"])
        if not out["full"].ok:
            return out
        label = f"incremental sync of {args.big:,}, nothing changed"
        out["incremental"] = parts.guarded(
            label,
            lambda: parts.connector_sync(connector, label, "incremental", paperless, None),
        )
        _progress(out["incremental"])
        out["listing"] = time_incremental_requests(paperless.url, paperless.token)
        print(f"[bench] incremental requests alone: {out['listing']}", file=sys.stderr, flush=True)
        try:
            queries = parts.build_queries(paperless, args.seed)
            out["search"] = parts.search_latency(connector.index_path, queries)
            out["queries"] = queries
        except Exception as exc:  # reported as a missing row, the rest stands
            out["search_failure"] = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            )
        print(f"search: {out.get('search') or out.get('search_failure')}", file=sys.stderr)
    return out


def _routes(run: Measured) -> list[str]:
    lines = []
    for server in ("paperless", "manager"):
        routes = run.extra.get(f"{server}_routes")
        if routes:
            listed = ", ".join(f"`{route}` {n}" for route, n in sorted(routes.items()))
            lines.append(f"- {run.label}, {server}: {listed}")
    return lines


def _progress(run: Measured) -> None:
    state = f"{run.seconds:.1f} s, {run.documents} documents" if run.ok else run.failure
    print(f"[bench] {run.label}: {state}", file=sys.stderr, flush=True)


def _id_listing_split(run: Measured) -> tuple[int, int]:
    routes = run.extra.get("paperless_routes") or {}
    listing = sum(n for route, n in routes.items() if ID_LISTING in route)
    return listing, (run.paperless_requests or 0) - listing


def render(args: argparse.Namespace, one: dict[str, Measured], two: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark: {args.documents:,} documents, {args.latency * 1000:.0f} ms per request",
        "",
        f"Command: `{' '.join(['python -m bench.run', *sys.argv[1:]])}`  ",
        f"Machine: {platform.machine()}, {_cores()} cores, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Load average (1 min) at the start: {args.load_at_start:.1f}; at the end: "
        f"{os.getloadavg()[0]:.1f} (anything above 0 is other work competing for the 2 cores)",
        "",
        run_rows([one[key] for key in PART_ONE_ROWS if key in one]),
        "",
    ]
    base, limit = one["baseline"], one["limit"]
    ratios = [
        ["(2a)/(1): connector → Omni vs baseline", fmt_ratio(ratio(one["omni"], base))],
        ["(2b)/(1): connector → local vs baseline", fmt_ratio(ratio(one["local"], base))],
        [
            "(2a)/(3): connector → Omni vs server's limit",
            fmt_ratio(ratio(one["omni"], limit), True),
        ],
        [
            "(2b)/(3): connector → local vs server's limit",
            fmt_ratio(ratio(one["local"], limit), True),
        ],
    ]
    for run, floor, name in (("omni", "floor_omni", "Omni"), ("local", "floor_local", "local")):
        if floor in one:
            tag = floor[-4:].replace("omni", "4a").replace("ocal", "4b")
            ratios += [
                [
                    f"({tag})/(3): {name} floor vs server's limit (the most any connector "
                    "into this sink can reach here)",
                    fmt_ratio(ratio(one[floor], limit), True),
                ],
                [
                    f"(2{tag[-1]})/({tag}): connector → {name} vs that floor",
                    fmt_ratio(ratio(one[run], one[floor]), True),
                ],
            ]
    lines += [table(["ratio (documents/s)", "value"], ratios), ""]
    lines += ["Requests by route:", ""]
    for run in one.values():
        lines += _routes(run)
    lines.append("")
    if two:
        lines += _render_two(args, one, two)
    lines += ["## Targets", "", table(["target", "measured", "verdict"], _targets(one, two)), ""]
    runs = [*one.values(), *(v for v in two.values() if isinstance(v, Measured))]
    profiled = [run for run in runs if "profile" in run.extra]
    if profiled:
        lines += ["## Profiles of the worker (py-spy)", ""]
        for run in profiled:
            lines += [f"### {run.label}", "", run.extra["profile"], ""]
    return "\n".join(lines)


def _render_two(
    args: argparse.Namespace, one: dict[str, Measured], two: dict[str, Any]
) -> list[str]:
    lines = [f"## {args.big:,} documents", ""]
    runs = [two[key] for key in ("full", "incremental") if key in two]
    lines += [run_rows(runs), ""]
    if "incremental" in two and two["incremental"].ok:
        listing, other = _id_listing_split(two["incremental"])
        routes = two["incremental"].extra.get("paperless_routes", {})
        listed = ", ".join(f"{route}: {n}" for route, n in sorted(routes.items()))
        lines += [
            f"Incremental, nothing changed: {two['incremental'].seconds:.2f} s, "
            f"{other} requests plus {listing} for the id listing ({listed}).",
            "",
        ]
    if "listing" in two:
        alone = two["listing"]
        lines += [
            f"The same {alone['requests']} requests sent directly by the benchmark, one after "
            f"another (the server's share of that run): {alone['seconds']:.2f} s, of which "
            f"{alone['listing_seconds']:.2f} s for the light listing of "
            f"{alone['documents']:,} documents.",
            "",
        ]
    if "search" in two:
        s = two["search"]
        lines += [
            f"Search on the {args.big:,}-document local index: {s['queries']} queries × "
            f"{s['rounds']} rounds after a warm-up: median {s['median_ms']:.1f} ms, "
            f"p95 {s['p95_ms']:.1f} ms, max {s['max_ms']:.1f} ms "
            f"({s['hits_per_query']:.1f} hits per query).",
            "",
        ]
    elif "search_failure" in two:
        lines += [f"Search latency not measured: {two['search_failure']}", ""]
    return lines


def _targets(one: dict[str, Measured], two: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, name in (("omni", "→ Omni"), ("local", "→ local")):
        speedup = ratio(one[key], one["baseline"])
        met = None if speedup is None else speedup >= 5
        rows.append([f"full sync {name} ≥ 5× the baseline", fmt_ratio(speedup), verdict(met)])
        share = ratio(one[key], one["limit"])
        met = None if share is None else share >= 0.8
        ceiling = ratio(one[f"floor_{key}"], one["limit"]) if f"floor_{key}" in one else None
        said = verdict(met)
        if met is False and ceiling is not None and ceiling < 0.8:
            said += f" (the sink's floor alone reaches {fmt_ratio(ceiling, True)})"
        rows.append(
            [f"full sync {name} ≥ 80 % of the server's limit", fmt_ratio(share, True), said]
        )
    incremental = two.get("incremental")
    if incremental is not None and incremental.ok:
        listing, other = _id_listing_split(incremental)
        rows.append(
            [
                "incremental no-change at 100k < 3 s",
                f"{incremental.seconds:.2f} s",
                verdict(incremental.seconds < 3),
            ]
        )
        rows.append(
            [
                "… and < 10 requests plus the id listing",
                f"{other} + {listing}",
                verdict(other < 10),
            ]
        )
    full = two.get("full")
    if full is not None and full.ok and one["local"].ok:
        small = one["local"].peak_mib
        growth = full.peak_mib / small
        rows.append(
            [
                "worker peak RSS at 100k within 20 % of 10k",
                f"{full.peak_mib:.0f} MiB vs {small:.0f} MiB ({(growth - 1) * 100:+.0f} %)",
                verdict(growth <= 1.2),
            ]
        )
    search = two.get("search")
    if search is not None:
        rows.append(
            [
                "local search median < 50 ms",
                f"{search['median_ms']:.1f} ms",
                verdict(search["median_ms"] < 50),
            ]
        )
        rows.append(
            [
                "local search p95 < 200 ms",
                f"{search['p95_ms']:.1f} ms",
                verdict(search["p95_ms"] < 200),
            ]
        )
    return rows


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _as_json(one: dict[str, Measured], two: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return asdict(value) if isinstance(value, Measured) else value

    return {
        "part_one": {k: plain(v) for k, v in one.items()},
        "part_two": {k: plain(v) for k, v in two.items()},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--documents", type=int, default=10_000, help="documents of part one")
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds added to every request"
    )
    parser.add_argument("--big", type=int, default=100_000, help="documents of part two")
    parser.add_argument("--skip-big", action="store_true", help="leave part two out")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_DOCUMENTS} documents, no part two"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument("--json", type=Path, help="write every figure as JSON here")
    parser.add_argument("--profile", type=Path, help="record the worker with py-spy into DIR")
    parser.add_argument(
        "--skip-baseline", action="store_true", help="leave the slow baseline out (profiling)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.skip_big = True
        if "--documents" not in (argv if argv is not None else sys.argv):
            args.documents = QUICK_DOCUMENTS
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so every process the benchmark started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.load_at_start = os.getloadavg()[0]
    started = time.monotonic()
    one = part_one(args)
    two = {} if args.skip_big else part_two(args)
    report = render(args, one, two)
    report += f"\nThe whole benchmark took {time.monotonic() - started:.0f} s.\n"
    print(report)
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    if args.json:
        args.json.write_text(
            json.dumps(_as_json(one, two), indent=2, default=str), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
