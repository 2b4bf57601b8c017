"""What memray and line-profiler cost the demo pipeline: frames per second without and
with each, on this machine (docs/performance.md, "memray and line-profiler: their cost on
the demo pipeline").

The pipeline (examples/workloads/video_pipeline.py, run as a module) runs for
``--seconds`` alone, then wrapped as the runner wraps it (profilers/memray.py,
profilers/line_profiler.py): under ``python -m memray run -q -o FILE`` (the campaign's
defaults), with ``--trace-python-allocators``, and under ``python -m kernprof -l -p
video_pipeline`` (every function of the pipeline timed line by line). Each round runs
every configuration once, in an order rotated per round; the pipeline's own fps.json
gives the rate over the whole run. memray and line_profiler must be installed for
``--python``.

    .venv/bin/python -m benchmarks.wrapped_overhead --rounds 3 --seconds 10 [--python PY]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "examples" / "workloads" / "video_pipeline.py"
CONFIGS: dict[str, list[str]] = {
    "off": [],
    "memray": ["-m", "memray", "run", "-q", "-o", "{work}/memray.bin"],
    "memray, trace_python_allocators": [
        *["-m", "memray", "run", "-q", "-o", "{work}/memray.bin"],
        "--trace-python-allocators",
    ],
    "line-profiler, every function": [
        *["-m", "kernprof", "-l", "-p", "video_pipeline", "-o", "{work}/line_profiler.lprof"],
    ],
}


def one_run(python: str, wrap: list[str], seconds: float, work: Path) -> tuple[float, int]:
    """(fps, bytes of the profiler's output) of one run of the pipeline."""
    fps_file = work / "fps.json"
    # As a module (-m video_pipeline): kernprof takes a script's --out for an abbreviation
    # of its own --outfile or --output-interval; after -m it leaves the arguments alone.
    argv = [python, *(arg.replace("{work}", str(work)) for arg in wrap), "-m", PIPELINE.stem]
    subprocess.run(
        [*argv, "--duration", str(seconds), "--fps-file", str(fps_file), "--out", str(work / "o")],
        cwd=PIPELINE.parent,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    written = sum(p.stat().st_size for p in work.glob("*.*prof")) + sum(
        p.stat().st_size for p in work.glob("memray.bin*")
    )
    return float(json.loads(fps_file.read_text())["fps"]), written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--python", default=sys.executable, help="the pipeline's interpreter")
    args = parser.parse_args()
    names = list(CONFIGS)
    fps: dict[str, list[float]] = {name: [] for name in names}
    sizes: dict[str, list[int]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            with tempfile.TemporaryDirectory() as temp:
                rate, size = one_run(args.python, CONFIGS[name], args.seconds, Path(temp))
            fps[name].append(rate)
            sizes[name].append(size)
            print(f"round {round_ + 1}: {name}: {rate:.2f} fps, {size} bytes", flush=True)
    base = statistics.median(fps["off"])
    print("| configuration | runs | fps, median | min | max | loss % | output MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        median = statistics.median(fps[name])
        size = statistics.median(sizes[name]) / 1024 / 1024
        print(
            f"| {name} | {len(fps[name])} | {median:.2f} | {min(fps[name]):.2f} | "
            f"{max(fps[name]):.2f} | {100 * (base - median) / base:.1f} | {size:.1f} |"
        )


if __name__ == "__main__":
    main()
