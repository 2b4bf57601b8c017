"""What every benchmark shares: running a measured child process, describing the machine,
writing results and printing tables.

A measurement runs in a fresh child process so that its peak memory is its own: the
child's resident high-water mark comes from ``wait4``'s resource usage of that one child
(``ru_maxrss``, KiB on Linux), not from the benchmark driver that generated the input.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    """One child process: its wall time, its peak RSS and what it printed as JSON."""

    wall_s: float
    peak_rss_mb: float
    output: dict[str, Any]


class BenchmarkError(RuntimeError):
    """A measured child failed; the message carries the end of its stderr."""


def run_measured(argv: Sequence[str], *, cwd: Path = ROOT, timeout_s: float = 1800.0) -> Measured:
    """Run ``argv``; its stdout must be one JSON object (the child's own figures).

    The child is reaped with ``wait4`` here, so its resource usage is that child's alone.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, stdout=out, stderr=err)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        tail = stderr.decode("utf-8", errors="replace")[-4000:]
        raise BenchmarkError(f"{' '.join(argv)}: exited with {proc.returncode}:\n{tail}")
    output = json.loads(stdout.decode("utf-8"))
    return Measured(wall_s=wall, peak_rss_mb=usage.ru_maxrss / 1024.0, output=output)


def peak_rss_kib() -> int:
    """This process's resident high-water mark (VmHWM), KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def machine() -> dict[str, Any]:
    """The machine a figure was measured on, as far as it can be read without root."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib: float | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / MIB, 1)
    except OSError:
        pass
    os_name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {
        "os": os_name,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
    }


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    commit = done.stdout.strip() or None
    return f"{commit}+dirty" if commit and dirty.stdout.strip() else commit


def write_results(name: str, data: Mapping[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """``results_dir/<name>.json``: the figures with the machine and commit they came from."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    document = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table: ``columns`` are (key, heading); floats get up to 2 decimals."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return "-" if value is None else str(value)

    lines = [
        "| " + " | ".join(h for _, h in columns) + " |",
        "|" + "|".join("---:" for _ in columns) + "|",
    ]
    lines.extend("| " + " | ".join(cell(row.get(k)) for k, _ in columns) + " |" for row in rows)
    return "\n".join(lines)


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares ``y = a + b x``: (a, b, r²). r² near 1 with a small ``a`` is linear."""
    n = len(xs)
    if n < 2:
        return (ys[0] if ys else 0.0), 0.0, 1.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return intercept, slope, (1.0 - ss_res / ss_tot) if ss_tot else 1.0


def python() -> str:
    """The interpreter the children run with: the one running the benchmark (the venv's)."""
    return sys.executable


def add_run_options(parser: argparse.ArgumentParser, smoke_help: str, what: str = "runs") -> None:
    """The options every benchmark's command line has: --smoke, --workdir, --keep."""
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--workdir", type=Path, help=f"where the {what} go (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help=f"keep the {what}")


def publish(
    name: str,
    data: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
    *,
    results: bool,
    quiet: bool,
) -> dict[str, Any]:
    """A finished benchmark: its figures saved (full runs), its tables printed."""
    if results:
        path = write_results(name, data)
        if not quiet:
            print(f"results: {path}", file=sys.stderr)
    if not quiet:
        print(render(data))
    return data
