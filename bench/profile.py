"""Where the worker's time goes: py-spy on the whole worker tree, summarised per function.

`python -m bench.run --profile DIR` records each connector run with
`py-spy record --subprocesses --idle --format raw` (idle included: a page task waiting on
Paperless-ngx is time the run spends too) and writes a summary of the functions that hold
the largest share of the pool processes' samples. py-spy comes with the dev extras
(`pip install -e '.[dev]'`); the product itself does not need it.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.procs import BenchError

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")
# The frames worth naming: our code and the libraries it spends time in.
_INTERESTING = re.compile(
    r"(tasks/|config/|sqlite3|json|pydantic|requests|urllib3|redis|socket|ssl|http/client|"
    r"kombu|celery/app/trace|hashlib|re/)"
)


class Profiler:
    """py-spy recording one process tree until stopped."""

    def __init__(self, pid: int, output: Path, rate: int = 50) -> None:
        beside = Path(sys.executable).parent / "py-spy"
        binary = str(beside) if beside.exists() else shutil.which("py-spy")
        if binary is None:
            raise BenchError("py-spy is not installed: `pip install py-spy` to profile the worker")
        self.output = output
        argv = [binary, "record", "--pid", str(pid), "--subprocesses", "--idle", "--nonblocking"]
        self.proc = subprocess.Popen(
            [*argv, "--rate", str(rate), "--format", "raw", "--output", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> Path:
        """Stop recording (py-spy writes its file on SIGINT)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.output


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for part in stack.split(";"):
        match = _FRAME.match(part.strip())
        if match:
            frames.append((match["func"], match["file"]))
    return frames


def summarise(raw: Path, top: int = 18) -> str:
    """Markdown: the share of pool-process samples in each interesting function (inclusive)."""
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = _frames(stack)
        # Only the pool processes run tasks; the main process mostly waits on Redis.
        if not any("celery/app/trace" in file for _, file in frames):
            continue
        count = int(count_text)
        total += count
        seen = {f"{func} ({file})" for func, file in frames if _INTERESTING.search(file)}
        inclusive.update(dict.fromkeys(seen, count))
        if frames:
            func, file = frames[-1]
            leaves[f"{func} ({file})"] += count
    if not total:
        return "(no samples of a running task)"
    lines = [f"{total} samples inside tasks; inclusive share per function:", ""]
    lines += [f"- {n / total * 100:5.1f} % {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "where the samples end (leaf frames):", ""]
    lines += [f"- {n / total * 100:5.1f} % {name}" for name, n in leaves.most_common(10)]
    return "\n".join(lines)
