"""Device footprint: what a campaign costs a device besides the profiler's own work, on the
SSH test fleet (tests/fleet). The same campaign runs twice on a fresh fleet: a first run
(py-spy not on the hosts yet) and a repeat.

- **Memory**: while each run goes on, the controller reads the host's processes from its own
  /proc (the host is a PID namespace of this machine) every 50 ms and keeps each role's
  peak resident set: the session runner (``VmHWM``, the kernel's high-water mark, so a peak
  between two samples counts while the process lives), Ansible's async wrapper around it,
  py-spy, Ansible's other modules (the polls of the background job among them), and the
  peak of all of them together at one instant (the sum of their PSS, so the interpreter
  they share counts once). The launched workload is not counted.
- **Bytes pushed and pulled**: every SSH connection of the run goes through
  ``benchmarks/sshcount.py`` (a ProxyCommand added to the inventory's ssh args), which
  counts the bytes on the wire each way: encrypted, with SSH's framing, the key exchange
  and authentication; everything Ansible sends (modules, files) and gets back (results,
  the fetched archive). Each run has its own control directory, so its SSH masters are its
  own, closed at its end. The bytes are split by stage from the time each stage's playbook
  ran (the proxy writes cumulative counts every 0.1 s). Whether py-spy itself was pushed is
  read from the host's copy (replaced or not).
- **Bytes pulled per host-minute**: the fetched ``session.tar.gz`` per host over the window
  in minutes, py-spy at 100 Hz on the demo workload (examples/workloads/video_pipeline.py,
  launched), and the wire bytes received over the same minutes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import ROOT, add_run_options, publish, python, table
from benchmarks.fleetbench import (
    STAGES,
    DeviceMemory,
    FleetprofRun,
    bench_fleet,
    control_dir,
    pyspy_stamp,
    require_fleet,
    run_fleetprof,
    runner_zipapp,
    skip_smoke,
    write_campaign,
    write_inventory,
)

if TYPE_CHECKING:
    from tests.fleet import Fleet

NAME = "footprint"
SUMMARY = (
    "on the device: the runner's peak RSS, bytes pushed on a first and a repeat run, "
    "bytes pulled per host-minute at 100 Hz"
)
CAMPAIGN = "bench-footprint"
SSHCOUNT = ROOT / "benchmarks" / "sshcount.py"
WORKLOAD = ROOT / "examples" / "workloads" / "video_pipeline.py"
DEVICE_WORKLOAD = "/opt/video_pipeline.py"
FULL_HOSTS = 1
FULL_WINDOW_S = 60.0
SMOKE_HOSTS = 1
SMOKE_WINDOW_S = 2.0
RATE_HZ = 100
SCALE = 0.25  # the workload's --scale: a small board's frame
KIB = 1024


# --------------------------------------------------------------------------- wire bytes


def proxy_args(directory: Path) -> str:
    """ssh args that send every connection through the counting proxy."""
    command = shlex.join([python(), str(SSHCOUNT), "%h", "%p", str(directory)])
    return shlex.join(["-o", f"ProxyCommand={command}"])


def _read_series(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a proxy still writing
    return lines


def wait_closed(directory: Path, timeout_s: float = 15.0) -> None:
    """Until every proxy of the run wrote its last line (its connection closed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        series = [_read_series(p) for p in directory.glob("*.jsonl")]
        if all(s and s[-1].get("closed") for s in series):
            return
        time.sleep(0.1)


def wire_bytes(
    directory: Path, addresses: Mapping[str, str], marks: Mapping[str, tuple[float, float]]
) -> dict[str, dict[str, Any]]:
    """host -> {"up", "down", "by_stage": {stage: {"up", "down"}}} over the run's connections.

    A stage's bytes are those counted from its playbook's launch to the next one's (the
    last stage's to the end): the proxy writes at most 0.1 s after the bytes moved."""
    starts = sorted((start, stage) for stage, (start, _) in marks.items())
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        address = path.name.split("-", 1)[0]
        host = addresses.get(address, address)
        entry = found.setdefault(host, {"up": 0, "down": 0, "connections": 0, "by_stage": {}})
        series = _read_series(path)
        if not series:
            continue
        entry["connections"] += 1
        entry["up"] += series[-1]["up"]
        entry["down"] += series[-1]["down"]
        previous = {"up": 0, "down": 0}
        for line in series:
            stage = "before"
            for start, name in starts:
                if line["t"] >= start:
                    stage = name
            bucket = entry["by_stage"].setdefault(stage, {"up": 0, "down": 0})
            for way in ("up", "down"):
                bucket[way] += line[way] - previous[way]
                previous[way] = line[way]
    return found


# --------------------------------------------------------------------------- one run


def measure_run(
    fleet: Fleet,
    hosts: Sequence[str],
    campaign: Path,
    work: Path,
    window_s: float,
) -> dict[str, Any]:
    """One campaign with its bytes counted and its processes' memory sampled."""
    counts = work / "wire"
    counts.mkdir(parents=True)
    inventory = write_inventory(
        fleet.inventory, hosts, work / "inventory.yml", extra_ssh_args=proxy_args(counts)
    )
    before = {h: pyspy_stamp(fleet, h) for h in hosts}
    with control_dir() as control, DeviceMemory(fleet, hosts) as memory:
        done = run_fleetprof(campaign, inventory, work / "out", window_s=window_s, control=control)
    wait_closed(counts)  # control_dir closed the SSH masters: their proxies end
    addresses = {fleet.host(h).address: h for h in hosts}
    wire = wire_bytes(counts, addresses, done.marks)
    rows = []
    for host in hosts:
        rows.append(host_row(host, done, wire.get(host, {}), memory, window_s))
        rows[-1]["pyspy_pushed"] = pyspy_stamp(fleet, host) != before[host]
    return {"fleetprof_wall_s": done.wall_s, "samples": memory.samples, "hosts": rows}


def host_row(
    host: str,
    done: FleetprofRun,
    wire: Mapping[str, Any],
    memory: DeviceMemory,
    window_s: float,
) -> dict[str, Any]:
    status = next((h for h in done.hosts if h["name"] == host), {})
    archive = done.run_dir / "hosts" / host / "session.tar.gz"
    session = done.run_dir / "hosts" / host / "session"
    archive_bytes = archive.stat().st_size if archive.is_file() else 0
    minutes = window_s / 60.0
    peaks = memory.peak_kib.get(host, {})
    return {
        "host": host,
        "status": status.get("status"),
        "pushed_kib": wire.get("up", 0) / KIB,
        "pulled_kib": wire.get("down", 0) / KIB,
        "connections": wire.get("connections", 0),
        "by_stage_kib": {
            stage: {way: n / KIB for way, n in ways.items()}
            for stage, ways in (wire.get("by_stage") or {}).items()
        },
        "archive_kib": archive_bytes / KIB,
        "session_kib": sum(p.stat().st_size for p in session.glob("*") if p.is_file()) / KIB,
        "archive_kib_per_min": archive_bytes / KIB / minutes,
        "pulled_kib_per_min": wire.get("down", 0) / KIB / minutes,
        "runner_peak_mib": peaks.get("runner", 0) / 1024,
        "async_wrapper_peak_mib": peaks.get("async_wrapper", 0) / 1024,
        "pyspy_peak_mib": peaks.get("py-spy", 0) / 1024,
        "ansible_module_peak_mib": peaks.get("ansible_module", 0) / 1024,
        "together_peak_mib": memory.total_kib.get(host, 0) / 1024,
        "pyspy_effective_rate_hz": (status.get("metrics") or {}).get("pyspy.effective_rate_hz"),
    }


# --------------------------------------------------------------------------- the run


def deploy_workload(fleet: Fleet) -> None:
    """The demo workload in every host's /opt, as a deployment would put it."""
    for host in fleet.hosts:
        target = host.private_path(DEVICE_WORKLOAD)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WORKLOAD, target)


def run(
    hosts: int = FULL_HOSTS,
    window_s: float = FULL_WINDOW_S,
    *,
    cpu: float | None = None,
    workdir: Path | None = None,
    keep: bool = False,
    results: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    require_fleet()
    base = Path(tempfile.mkdtemp(prefix="fpbench-footprint-", dir=workdir))
    runs: dict[str, dict[str, Any]] = {}
    try:
        with bench_fleet(hosts, seeded=False, cpu=cpu) as fleet:
            deploy_workload(fleet)
            command = [fleet.python, DEVICE_WORKLOAD, "--fps-file", "fps.json"]
            campaign = write_campaign(
                base / "campaign.yml",
                CAMPAIGN,
                window_s,
                [*command, "--scale", f"{SCALE:g}"],
                {"py-spy": {"rate": RATE_HZ}},
            )
            names = [h.name for h in fleet.hosts]
            for which in ("first", "repeat"):
                runs[which] = measure_run(fleet, names, campaign, base / which, window_s)
                if not quiet:
                    for row in runs[which]["hosts"]:
                        print(
                            f"{which} {row['host']}: pushed {row['pushed_kib']:.0f} KiB, "
                            f"pulled {row['pulled_kib']:.0f} KiB, runner "
                            f"{row['runner_peak_mib']:.1f} MiB",
                            file=sys.stderr,
                        )
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    data = summarise(runs, hosts, window_s, cpu)
    return publish(NAME, data, render, results=results, quiet=quiet)


def _median(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def summarise(
    runs: dict[str, dict[str, Any]], hosts: int, window_s: float, cpu: float | None
) -> dict[str, Any]:
    every = [row for run in runs.values() for row in run["hosts"]]
    first, repeat = runs["first"]["hosts"], runs["repeat"]["hosts"]
    rows = [{"run": which, **row} for which, run in runs.items() for row in run["hosts"]]
    stages: dict[str, dict[str, float]] = {}
    for which, run in runs.items():
        for stage in ("before", *STAGES):
            ups = [r["by_stage_kib"].get(stage, {}).get("up", 0.0) for r in run["hosts"]]
            downs = [r["by_stage_kib"].get(stage, {}).get("down", 0.0) for r in run["hosts"]]
            stages.setdefault(stage, {})[f"{which}_up_kib"] = statistics.median(ups)
            stages[stage][f"{which}_down_kib"] = statistics.median(downs)
    return {
        "setup": {
            "hosts": hosts,
            "cpu_per_host": cpu,
            "window_s": window_s,
            "py_spy_rate_hz": RATE_HZ,
            "workload": f"{DEVICE_WORKLOAD} (examples/workloads/video_pipeline.py)"
            f" --scale {SCALE:g}",
            "runner_module_kib": runner_zipapp().stat().st_size / KIB,
            "pyspy_kib": _pyspy_size() / KIB,
        },
        "goal": {"pushed_on_repeat": "nothing (no tool pushed again)"},
        "rows": rows,
        "by_stage": [
            {"stage": stage, **figures}
            for stage, figures in stages.items()
            if stage != "before" or any(figures.values())  # nothing moves before preflight
        ],
        "summary": {
            "runner_peak_mib": max(r["runner_peak_mib"] for r in every),
            "together_peak_mib": max(r["together_peak_mib"] for r in every),
            "first_pushed_kib": _median(first, "pushed_kib"),
            "repeat_pushed_kib": _median(repeat, "pushed_kib"),
            "archive_kib_per_host_min": _median(every, "archive_kib_per_min"),
            "pulled_kib_per_host_min": _median(every, "pulled_kib_per_min"),
        },
        "goal_met": not any(r["pyspy_pushed"] for r in repeat),
    }


def _pyspy_size() -> int:
    import platform

    from orchestrator import toolcache

    return int(toolcache.ensure_pyspy(platform.machine()).path.stat().st_size)


COLUMNS = (
    ("run", "run"),
    ("host", "host"),
    ("pyspy_pushed", "py-spy pushed"),
    ("pushed_kib", "pushed KiB"),
    ("pulled_kib", "pulled KiB"),
    ("archive_kib", "archive KiB"),
    ("archive_kib_per_min", "archive KiB/min"),
    ("pulled_kib_per_min", "pulled KiB/min"),
    ("runner_peak_mib", "runner MiB"),
    ("async_wrapper_peak_mib", "async wrapper MiB"),
    ("pyspy_peak_mib", "py-spy MiB"),
    ("ansible_module_peak_mib", "other modules MiB"),
    ("together_peak_mib", "together MiB (PSS)"),
)
STAGE_COLUMNS = (
    ("stage", "stage"),
    ("first_up_kib", "first: pushed KiB"),
    ("first_down_kib", "first: pulled KiB"),
    ("repeat_up_kib", "repeat: pushed KiB"),
    ("repeat_down_kib", "repeat: pulled KiB"),
)


def render(data: dict[str, Any]) -> str:
    setup, summary = data["setup"], data["summary"]
    return (
        f"window {setup['window_s']:g} s, py-spy {setup['py_spy_rate_hz']} Hz; bytes on the"
        f" wire (device zipapp {setup['runner_module_kib']:.0f} KiB, py-spy"
        f" {setup['pyspy_kib']:.0f} KiB); peak resident MiB\n\n"
        + table(data["rows"], COLUMNS)
        + "\n\nbytes per stage (median host)\n\n"
        + table(data["by_stage"], STAGE_COLUMNS)
        + f"\n\nrunner peak {summary['runner_peak_mib']:.1f} MiB; pushed"
        f" {summary['first_pushed_kib']:.0f} KiB first, {summary['repeat_pushed_kib']:.0f} KiB"
        f" on a repeat; archive {summary['archive_kib_per_host_min']:.0f} KiB per host-minute;"
        f" goal (no tool pushed on a repeat): {'met' if data['goal_met'] else 'not met'}"
    )


def bench(smoke: bool = False) -> dict[str, Any]:
    if smoke:
        return skip_smoke(NAME) or run(SMOKE_HOSTS, SMOKE_WINDOW_S, results=False)
    return run(FULL_HOSTS, FULL_WINDOW_S)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.footprint")
    parser.add_argument("--hosts", type=int, default=FULL_HOSTS, help="fleet hosts")
    parser.add_argument("--window", type=float, default=FULL_WINDOW_S, help="seconds")
    parser.add_argument("--cpu", type=float, help="each host's CPU quota, cores (default: none)")
    add_run_options(parser, "1 host, a 2 s window", "run directories")
    args = parser.parse_args(argv)
    if args.smoke:
        run(SMOKE_HOSTS, SMOKE_WINDOW_S, workdir=args.workdir, keep=args.keep, results=False)
        return 0
    run(args.hosts, args.window, cpu=args.cpu, workdir=args.workdir, keep=args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
