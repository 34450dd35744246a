"""Each measured part of the benchmark: it runs, counts requests on both servers, samples RSS."""

from __future__ import annotations

import random
import re
import statistics
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench.connector import ConnectorUnderTest
from bench.procs import (
    PYTHON,
    BenchError,
    RssSampler,
    read_json_line,
    spawn,
    stop,
    tree_cpu_seconds,
)
from bench.profile import summarise
from bench.report import Measured
from bench.server_limit import shipped_concurrency, shipped_page_size
from bench.services import FakeManager, PaperlessHost

SOURCE_ID = "bench"


def guarded(label: str, part: Callable[[], Measured]) -> Measured:
    """Run a part; a part that cannot run becomes a row saying why, and the rest goes on."""
    try:
        return part()
    except Exception as exc:  # every failure is reported in the table, none ends the run
        traceback.print_exc()
        return Measured(label, failure=_first_line(str(exc)) or type(exc).__name__)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _measured_child(
    argv: list[str], env: dict[str, str], what: str, timeout: float
) -> tuple[dict[str, Any], dict[int, int], float]:
    """The result line of a measured child, its peak RSS and the CPU time it used."""
    proc = spawn(argv, env=env, stdin=True)
    sampler = RssSampler(proc.pid).start()
    try:
        result = read_json_line(proc, timeout, what)
        cpu = tree_cpu_seconds(proc.pid)
    finally:
        peaks = sampler.stop()
        stop(proc)
    return result, {proc.pid: peaks.get(proc.pid, 0)}, cpu


def baseline(paperless: PaperlessHost, manager: FakeManager) -> Measured:
    paperless.reset()
    manager.reset()
    argv = [PYTHON, "-m", "bench.baseline", "--manager", manager.url, "--source", SOURCE_ID]
    timeout = 600 + paperless.documents * 0.5
    server_cpu = paperless.cpu_seconds()
    result, peaks, cpu = _measured_child(argv, {}, "the sequential baseline", timeout)
    served, managed = paperless.reset(), manager.reset()
    return Measured(
        "1. Sequential baseline (Omni's connector, §4)",
        documents=result["documents"],
        seconds=result["seconds"],
        paperless_requests=served["requests"],
        manager_requests=managed["requests"],
        peaks_kb=peaks,
        client_cpu=cpu,
        server_cpu=paperless.cpu_seconds() - server_cpu,
        extra={"paperless_routes": served["by_route"], "manager_routes": managed["by_route"]},
    )


def server_limit(
    paperless: PaperlessHost, floor: str | None = None, manager: FakeManager | None = None
) -> Measured:
    """Run (3), or with `floor` ("index" or "omni") run (4): the limit plus the sink's floor."""
    paperless.reset()
    if manager is not None:
        manager.reset()
    concurrency = shipped_concurrency()
    argv = [PYTHON, "-m", "bench.server_limit", "--url", paperless.url]
    argv += ["--concurrency", str(concurrency), "--page-size", str(shipped_page_size())]
    env = {"BENCH_PAPERLESS_TOKEN": paperless.token}
    if floor is not None:
        argv += ["--floor", floor]
    if manager is not None:
        env["BENCH_MANAGER_URL"] = manager.url
    server_cpu = paperless.cpu_seconds()
    timeout = 600 + paperless.documents
    result, peaks, cpu = _measured_child(argv, env, "the server-limit run", timeout)
    served = paperless.reset()
    extra: dict[str, Any] = {"paperless_routes": served["by_route"]}
    manager_requests = None
    if manager is not None:
        answered = manager.reset()
        manager_requests = answered["requests"]
        extra["manager_routes"] = answered["by_route"]
    return Measured(
        FLOOR_LABELS.get(floor or "", f"3. Server's limit (GETs only, {concurrency} in flight)"),
        documents=result["documents"],
        seconds=result["seconds"],
        paperless_requests=served["requests"],
        manager_requests=manager_requests,
        peaks_kb=peaks,
        client_cpu=cpu,
        server_cpu=paperless.cpu_seconds() - server_cpu,
        extra=extra,
    )


FLOOR_LABELS = {
    "omni": "4a. Limit + Omni's floor (one content upload per document)",
    "index": "4b. Limit + the index's floor (FTS5 of the texts, one commit per page)",
}


def connector_sync(
    connector: ConnectorUnderTest,
    label: str,
    mode: str,
    paperless: PaperlessHost,
    manager: FakeManager | None,
    *,
    register: bool = False,
) -> Measured:
    """One run of the connector; the servers' counts cover exactly this run.

    `register` adds the source to the standalone registry first (the first run only: doing
    it again would drop the source's checkpoint).
    """
    paperless.reset()
    if manager is not None:
        manager.reset()
    source = (paperless.url, paperless.token) if register else None
    timeout = 600 + paperless.documents * 0.2
    server_cpu, worker_cpu = paperless.cpu_seconds(), connector.cpu_seconds()
    record = connector.sync(mode, register=source, run_id=uuid.uuid4().hex, timeout=timeout)
    server_cpu, worker_cpu = (
        paperless.cpu_seconds() - server_cpu,
        connector.cpu_seconds() - worker_cpu,
    )
    served = paperless.reset()
    managed = manager.reset() if manager is not None else None
    measured = Measured(
        label,
        documents=int(record.get("scanned") or 0),
        seconds=float(record["seconds"]),
        paperless_requests=served["requests"],
        manager_requests=managed["requests"] if managed is not None else None,
        peaks_kb=connector.peaks_kb(),
        client_cpu=worker_cpu,
        server_cpu=server_cpu,
        extra={"record": record, "paperless_routes": served["by_route"]},
    )
    if managed is not None:
        measured.extra["manager_routes"] = managed["by_route"]
    if connector.last_profile is not None and connector.last_profile.exists():
        measured.extra["profile"] = summarise(connector.last_profile)
    if served["other_verbs"]:
        measured.failure = f"{served['other_verbs']} requests other than GET reached Paperless-ngx"
    if record.get("state") != "completed":
        cause = record.get("error") or "no cause recorded"
        measured.failure = f"the run ended {record.get('state')}: {_first_line(str(cause))}"
    return measured


def connector_full(
    label: str,
    paperless: PaperlessHost,
    manager: FakeManager | None,
    profile_dir: Path | None = None,
) -> Measured:
    kind = "omni" if manager is not None else "local"
    url = manager.url if manager is not None else None
    connector = ConnectorUnderTest(kind, url, profile_dir)
    try:
        connector.start_worker()
        register = manager is None
        measured = connector_sync(connector, label, "full", paperless, manager, register=register)
        if measured.documents != paperless.documents and measured.ok:
            measured.extra["warning"] = (
                f"scanned {measured.documents} of {paperless.documents} documents"
            )
        return measured
    finally:
        connector.close()


def build_queries(
    paperless: PaperlessHost, seed: int, count: int = 40
) -> list[tuple[str, str | None]]:
    """A fixed query set from the corpus: words, phrases, operators, and searches as a user."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {paperless.token}"

    def results(path: str, **params: Any) -> list[dict[str, Any]]:
        answer = session.get(f"{paperless.url}{path}", params=params, timeout=(5, 120))
        answer.raise_for_status()
        return list(answer.json()["results"])

    docs = results("/api/documents/", page_size=50, ordering="id", fields="id,title,content")
    tags = [item["name"] for item in results("/api/tags/", page_size=1000)]
    correspondents = [item["name"] for item in results("/api/correspondents/", page_size=1000)]
    types = [item["name"] for item in results("/api/document_types/", page_size=1000)]
    emails = [u["email"] for u in results("/api/users/", page_size=1000) if u.get("email")]
    session.close()
    rng = random.Random(seed)
    words = sorted({w for d in docs for w in re.findall(r"[^\W\d_]{6,}", d.get("content") or "")})
    runs = [d["content"].split() for d in docs if len((d.get("content") or "").split()) > 3]
    queries: list[tuple[str, str | None]] = []
    queries += [(w, None) for w in rng.sample(words, min(12, len(words)))]
    queries += [
        (f"{a} {b}", None) for a, b in zip(rng.sample(words, 6), rng.sample(words, 6), strict=True)
    ]
    for run in rng.sample(runs, min(4, len(runs))):
        start = rng.randrange(len(run) - 2)
        queries.append(('"' + re.sub(r'["]', "", f"{run[start]} {run[start + 1]}") + '"', None))
    queries += [(f'tag:"{t}"', None) for t in rng.sample(tags, min(4, len(tags)))]
    queries += [
        (f'correspondent:"{c}"', None)
        for c in rng.sample(correspondents, min(3, len(correspondents)))
    ]
    queries += [(f'type:"{t}"', None) for t in rng.sample(types, min(3, len(types)))]
    queries += [(f'{rng.choice(words)} tag:"{rng.choice(tags)}"', None) for _ in range(3)]
    queries += [(rng.choice(words), email) for email in emails[:5]]
    return queries[:count]


def search_latency(
    index_path: Path, queries: list[tuple[str, str | None]], rounds: int = 3
) -> dict[str, Any]:
    """Median and p95 of LocalIndex.search over the query set, after one warm-up round."""
    from tasks.sinks.local import LocalIndex

    index = LocalIndex(index_path)
    timings: list[float] = []
    hits = 0
    try:
        for round_no in range(rounds + 1):
            for query, as_email in queries:
                started = time.perf_counter()
                found = index.search(query, as_email=as_email, limit=10)
                elapsed = time.perf_counter() - started
                if round_no:
                    timings.append(elapsed)
                    hits += len(found)
    finally:
        index.close()
    if not timings:
        raise BenchError("no search query could be built from the corpus")
    timings.sort()
    return {
        "queries": len(queries),
        "rounds": rounds,
        "median_ms": statistics.median(timings) * 1000,
        "p95_ms": timings[max(0, round(0.95 * len(timings)) - 1)] * 1000,
        "max_ms": timings[-1] * 1000,
        "hits_per_query": hits / len(timings),
    }
