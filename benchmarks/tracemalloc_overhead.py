"""What the tracemalloc startup hook costs the demo pipeline: frames per second without
and with it, on this machine (docs/performance.md, "tracemalloc: its cost on the demo
pipeline").

The pipeline (examples/workloads/video_pipeline.py) runs for ``--seconds`` alone, then
with the hook exactly as the runner installs it (fleetprof_device/inprogram.py:
PYTHONTRACEMALLOC and sitecustomize.py on PYTHONPATH), at the campaign's defaults
(a snapshot every 2 s, 1 frame) and at 5 frames; each round runs every configuration
once, in an order rotated per round. Its own fps.json gives the rate over the whole run.

    .venv/bin/python -m benchmarks.tracemalloc_overhead --rounds 3 --seconds 10 [--python PY]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fleetprof_device.contract import TRACEMALLOC_MAX_BYTES
from fleetprof_device.inprogram import launch_env

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "examples" / "workloads" / "video_pipeline.py"
CONFIGS = {"off": None, "tracemalloc, 1 frame": 1, "tracemalloc, 5 frames": 5}


def one_run(
    python: str, frames: int | None, seconds: float, work: Path
) -> tuple[float, float | None]:
    """(fps, the hook's peak traced MB or None) of one run of the pipeline."""
    env = dict(os.environ)
    env.pop("PYTHONTRACEMALLOC", None)
    if frames is not None:
        spec = {
            "status": "planned",
            "builtin": "tracemalloc",
            "max_bytes": TRACEMALLOC_MAX_BYTES,
            "options": {"interval_s": 2.0, "frames": frames, "top": 20},
        }
        env = launch_env(env, [spec], str(work), lambda line: None)
    fps_file = work / "fps.json"
    argv = [python, str(PIPELINE), "--duration", str(seconds)]
    subprocess.run(
        [*argv, "--fps-file", str(fps_file), "--out", str(work / "out")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    fps = float(json.loads(fps_file.read_text())["fps"])
    summary = work / "tracemalloc.json"
    peak = None
    if frames is not None and summary.exists():
        peak = json.loads(summary.read_text())["traced_peak_bytes"] / 1024 / 1024
    return fps, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--python", default=sys.executable, help="the pipeline's interpreter")
    args = parser.parse_args()
    names = list(CONFIGS)
    fps: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            with tempfile.TemporaryDirectory() as temp:
                rate, peak = one_run(args.python, CONFIGS[name], args.seconds, Path(temp))
            fps[name].append(rate)
            if peak is not None:
                peaks[name].append(peak)
            print(f"round {round_ + 1}: {name}: {rate:.2f} fps", flush=True)
    base = statistics.median(fps["off"])
    print("| configuration | runs | fps, median | min | max | loss % | peak traced MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        median = statistics.median(fps[name])
        peak = f"{statistics.median(peaks[name]):.1f}" if peaks[name] else "-"
        print(
            f"| {name} | {len(fps[name])} | {median:.2f} | {min(fps[name]):.2f} | "
            f"{max(fps[name]):.2f} | {100 * (base - median) / base:.1f} | {peak} |"
        )


if __name__ == "__main__":
    main()
