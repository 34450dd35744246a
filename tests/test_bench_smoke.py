"""The benchmark harness works end to end: `python -m bench.run --quick` on a small instance.

No timing is asserted (the machine decides those); what is asserted is what a reader of the
report relies on: every row is there, every run finished with every document, and the
figures are real (positive counts, positive memory), with the ratios computed from them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = 120

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench")
    report, figures = out / "report.md", out / "figures.json"
    argv = [sys.executable, "-m", "bench.run", "--quick", "--documents", str(DOCUMENTS)]
    argv += ["--latency", "0.002", "--output", str(report), "--json", str(figures)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stderr[-3000:]
    return report.read_text(), json.loads(figures.read_text())


def test_report_has_every_row_and_ratio(bench_run: tuple[str, dict]) -> None:
    report, _ = bench_run
    for row in (
        "| 1. Sequential baseline",
        "| 2a. This connector → Omni",
        "| 2b. This connector → local index",
        "| 3. Server's limit",
        "| (2a)/(1)",
        "| (2b)/(1)",
        "| (2a)/(3)",
        "| (2b)/(3)",
        "## Targets",
    ):
        assert row in report, f"{row!r} missing from the report:\n{report}"
    assert "not run" not in report, report
    assert "Command: `python -m bench.run --quick" in report


def test_every_run_synced_every_document_with_real_figures(bench_run: tuple[str, dict]) -> None:
    _, figures = bench_run
    runs = figures["part_one"]
    assert set(runs) == {"baseline", "omni", "local", "limit", "floor_omni", "floor_local"}
    for name, run in runs.items():
        assert run["failure"] is None, (name, run["failure"])
        assert run["documents"] == DOCUMENTS, name
        assert run["seconds"] > 0, name
        assert run["paperless_requests"] > 0, name
        assert run["peaks_kb"] and all(kb > 0 for kb in run["peaks_kb"].values()), name
    # One page of 100 per request at most, plus probe and lookups: far fewer than documents.
    assert runs["limit"]["paperless_requests"] < DOCUMENTS
    # The baseline posts content and a scanned count per document: at least two each.
    assert runs["baseline"]["manager_requests"] >= 2 * DOCUMENTS
    assert runs["omni"]["manager_requests"] > 0
    assert runs["local"]["manager_requests"] is None
    # Omni's floor uploads every document once (and a batch of events per page).
    assert runs["floor_omni"]["manager_requests"] >= DOCUMENTS
    assert runs["floor_local"]["manager_requests"] is None


def test_the_ratios_in_the_report_follow_from_the_figures(bench_run: tuple[str, dict]) -> None:
    report, figures = bench_run
    runs = figures["part_one"]

    def rate(name: str) -> float:
        return runs[name]["documents"] / runs[name]["seconds"]

    speedup = rate("local") / rate("baseline")
    share = rate("local") / rate("limit")
    assert f"| (2b)/(1): connector → local vs baseline | {speedup:.2f}× |" in report
    assert f"| (2b)/(3): connector → local vs server's limit | {share * 100:.0f} % |" in report
    floor = rate("floor_local") / rate("limit")
    label = "(4b)/(3): local floor vs server's limit"
    assert f"| {label} (the most any connector into this sink can reach here) |" in report
    assert f"here) | {floor * 100:.0f} % |" in report
