"""The figures of one benchmark run and their Markdown report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Measured:
    """One run of one part: what the report shows in its row."""

    label: str
    documents: int = 0
    seconds: float = 0.0
    paperless_requests: int | None = None
    manager_requests: int | None = None
    peaks_kb: dict[int, int] = field(default_factory=dict)
    client_cpu: float | None = None  # CPU seconds of the client under test (worker tree)
    server_cpu: float | None = None  # CPU seconds of the Paperless-ngx double meanwhile
    extra: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and self.seconds > 0

    @property
    def rate(self) -> float:
        return self.documents / self.seconds if self.ok else 0.0

    @property
    def peak_mib(self) -> float:
        return max(self.peaks_kb.values(), default=0) / 1024

    def per_document(self, requests: int | None) -> str:
        if requests is None:
            return "–"
        return f"{requests / self.documents:.3f}" if self.documents else f"{requests} total"

    def cpu_text(self) -> str:
        if self.client_cpu is None or self.server_cpu is None:
            return "–"
        return f"{self.client_cpu:.1f} / {self.server_cpu:.1f}"

    def peaks_text(self) -> str:
        if not self.peaks_kb:
            return "–"
        values = [f"{kb / 1024:.0f}" for kb in self.peaks_kb.values()]
        if len(values) == 1:
            return values[0]
        return f"{values[0]} (main) + {', '.join(values[1:])}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def run_rows(runs: list[Measured]) -> str:
    header = [
        "run", "wall time (s)", "documents/s", "Paperless-ngx requests/doc",
        "manager requests/doc", "peak RSS per worker process (MiB)",
        "CPU s: client / Paperless double",
    ]  # fmt: skip
    rows = []
    for run in runs:
        if not run.ok:
            rows.append([run.label, f"not run: {run.failure}", "", "", "", "", ""])
            continue
        rows.append(
            [
                run.label,
                f"{run.seconds:.1f}",
                f"{run.rate:.1f}",
                run.per_document(run.paperless_requests),
                run.per_document(run.manager_requests),
                run.peaks_text(),
                run.cpu_text(),
            ]
        )
    return table(header, rows)


def ratio(numerator: Measured, denominator: Measured) -> float | None:
    """Throughput of `numerator` over that of `denominator` (same documents)."""
    if not (numerator.ok and denominator.ok):
        return None
    return numerator.rate / denominator.rate


def fmt_ratio(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.0f} %" if percent else f"{value:.2f}×"


def verdict(met: bool | None) -> str:
    return "–" if met is None else ("met" if met else "**missed**")
