"""Start skew: how far apart the hosts of one campaign really start, against the number of
hosts, on the SSH test fleet (tests/fleet).

Skew is the report's ``start_skew_ms``: max - min of the hosts' ``start_offset_ms``, each
the runner's actual start (``manifest.json`` ``started_at_controller``, the device clock
corrected by preflight's offset) minus the common T0 on the controller's clock. The fleet's
hosts share the controller's clock, so the figure is the orchestration's alone, not clock
error. Each size runs ``repeats`` times (a fresh SSH control directory each: cold
connections), py-spy already on the hosts, a launched idle Python loop as the target,
``lead: 0s`` so fleetprof picks its own lead. A host counts as late when its runner
started more than 50 ms after T0 (the report's ``session.late_by_ms``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import add_run_options, linear_fit, publish, table
from benchmarks.fleetbench import (
    FleetprofRun,
    bench_fleet,
    control_dir,
    idle_target,
    require_fleet,
    run_fleetprof,
    skip_smoke,
    spread,
    write_campaign,
    write_inventory,
)

NAME = "start_skew"
SUMMARY = "max - min actual start across 1-32 fleet hosts (controller clock), ms"
CAMPAIGN = "bench-start-skew"
FULL_SIZES = (1, 4, 16, 32)
FULL_REPEATS = 3
SMOKE_SIZES = (1, 2)
SMOKE_REPEATS = 1
WINDOW_S = 2.0
RATE_HZ = 19
GOAL_MS = 50.0
GOAL_HOSTS = 16


def size_row(hosts: int, runs: Sequence[FleetprofRun]) -> dict[str, Any]:
    skews = [r.skew_ms for r in runs if r.skew_ms is not None]
    offsets = [
        float(h["start_offset_ms"])
        for r in runs
        for h in r.hosts
        if isinstance(h.get("start_offset_ms"), int | float)
    ]
    leads = [r.lead_s for r in runs if r.lead_s is not None]
    skew = spread(skews)
    return {
        "hosts": hosts,
        "repeats": len(runs),
        "skew_ms_median": skew["median"],
        "skew_ms_min": skew["min"],
        "skew_ms_max": skew["max"],
        "skews_ms": skews,
        "offset_ms_median": statistics.median(offsets) if offsets else None,
        "offset_ms_max": max(offsets) if offsets else None,
        "late_hosts": sum(r.late_hosts for r in runs),
        "not_ok_hosts": sum(hosts - r.ok_hosts for r in runs),
        "lead_s_median": statistics.median(leads) if leads else None,
    }


def run(
    sizes: Sequence[int] = FULL_SIZES,
    repeats: int = FULL_REPEATS,
    *,
    window_s: float = WINDOW_S,
    workdir: Path | None = None,
    keep: bool = False,
    results: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    require_fleet()
    base = Path(tempfile.mkdtemp(prefix="fpbench-start-skew-", dir=workdir))
    rows: list[dict[str, Any]] = []
    try:
        with bench_fleet(max(sizes), seeded=True) as fleet:
            campaign = write_campaign(
                base / "campaign.yml",
                CAMPAIGN,
                window_s,
                idle_target(fleet.python),
                {"py-spy": {"rate": RATE_HZ, "idle": True}},
            )
            for n in sorted(sizes):
                names = [h.name for h in fleet.hosts[:n]]
                inventory = write_inventory(fleet.inventory, names, base / f"inventory-{n}.yml")
                runs = []
                for index in range(repeats):
                    with control_dir() as control:
                        out = base / f"n{n}-{index}"
                        runs.append(
                            run_fleetprof(
                                campaign, inventory, out, window_s=window_s, control=control
                            )
                        )
                    if not quiet:
                        print(
                            f"{n:>4} hosts #{index + 1}: skew {runs[-1].skew_ms} ms, "
                            f"{runs[-1].late_hosts} late",
                            file=sys.stderr,
                        )
                rows.append(size_row(n, runs))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    data = summarise(rows, window_s)
    return publish(NAME, data, render, results=results, quiet=quiet)


def summarise(rows: list[dict[str, Any]], window_s: float) -> dict[str, Any]:
    measured = [r for r in rows if r["skew_ms_median"] is not None]
    fit = linear_fit([float(r["hosts"]) for r in measured], [r["skew_ms_median"] for r in measured])
    at_goal = next((r for r in rows if r["hosts"] == GOAL_HOSTS), None)
    return {
        "setup": {"window_s": window_s, "py_spy_rate_hz": RATE_HZ, "lead": "0s (fleetprof's)"},
        "goal": {"skew_ms": GOAL_MS, "at_hosts": GOAL_HOSTS},
        "rows": rows,
        "fit": {"skew_ms_fixed": fit[0], "skew_ms_per_host": fit[1], "r2": fit[2]},
        "goal_met": None
        if at_goal is None or at_goal["skew_ms_max"] is None
        else at_goal["skew_ms_max"] <= GOAL_MS,
    }


COLUMNS = (
    ("hosts", "hosts"),
    ("repeats", "runs"),
    ("skew_ms_median", "skew ms, median"),
    ("skew_ms_max", "skew ms, worst"),
    ("offset_ms_median", "start offset ms, median"),
    ("offset_ms_max", "start offset ms, worst"),
    ("late_hosts", "late starts"),
    ("lead_s_median", "lead s"),
)


def render(data: dict[str, Any]) -> str:
    fit = data["fit"]
    verdict = {True: "met", False: "not met", None: "not measured"}[data["goal_met"]]
    return (
        table(data["rows"], COLUMNS)
        + f"\n\nskew {fit['skew_ms_fixed']:.1f} ms + {fit['skew_ms_per_host']:.2f} ms/host"
        f" (r² {fit['r2']:.2f}); goal (<= {GOAL_MS:g} ms at {GOAL_HOSTS} hosts, worst run):"
        f" {verdict}"
    )


def bench(smoke: bool = False) -> dict[str, Any]:
    if smoke:
        return skip_smoke(NAME) or run(SMOKE_SIZES, SMOKE_REPEATS, results=False)
    return run(FULL_SIZES, FULL_REPEATS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.start_skew")
    parser.add_argument("--hosts", default=",".join(map(str, FULL_SIZES)), help="sizes, a,b,c")
    parser.add_argument("--repeats", type=int, default=FULL_REPEATS, help="runs per size")
    parser.add_argument("--window", type=float, default=WINDOW_S, help="seconds")
    add_run_options(parser, "1 and 2 hosts, one run each", "run directories")
    args = parser.parse_args(argv)
    if args.smoke:
        run(SMOKE_SIZES, SMOKE_REPEATS, workdir=args.workdir, keep=args.keep, results=False)
        return 0
    sizes = [int(s) for s in args.hosts.split(",") if s.strip()]
    run(sizes, args.repeats, window_s=args.window, workdir=args.workdir, keep=args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
