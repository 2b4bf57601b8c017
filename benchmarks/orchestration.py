"""Orchestration overhead: a campaign's wall time minus its profiling window, on N hosts of
the SSH test fleet (tests/fleet), against the floor and a naive playbook, in one run.

Every variant runs the same session on every host: fleetprof's own plan (a launched idle
Python loop sampled by py-spy), taken from fleetprof's run at that size.

- **fleetprof**: ``fleetprof run`` (``lead: 0s``, so fleetprof picks the least lead it
  needs), py-spy already on the hosts, its SSH connections cold (a fresh
  ``ANSIBLE_SSH_CONTROL_PATH_DIR``); then once more with the masters the first run left
  (**warm**, a campaign within ControlPersist of the last); and, before both, once with
  py-spy removed from the hosts (**first push**).
- **floor**: plain parallel ``ssh``/``scp``, one subprocess per host and step in a thread
  pool as wide as the fleet, from the fleet's inventory (address, port, key, known_hosts,
  StrictHostKeyChecking=yes), no connection sharing: ``scp`` the runner module; T0 = now +
  1.5 x the slowest copy (at least 0.5 s); ``ssh`` runs it with the plan on stdin; ``scp``
  fetches the archive; ``ssh rm`` removes the session's files (fleetprof's collect does).
- **naive**: ``benchmarks/naive/site.yml``, one task per step with Ansible's defaults
  (linear strategy, facts gathered, no pipelining, 5 forks); its run is synchronous, so it
  plays 5 hosts at a time (``serial: 5``) and each batch has its own window.

Overhead = wall - window; the ratio to the floor is of overheads. Stage seconds come from
ansible-runner's artifacts (benchmarks/fleetbench.py). Order per size: first push,
fleetprof, warm, floor, naive.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import (
    ROOT,
    BenchmarkError,
    add_run_options,
    linear_fit,
    publish,
    table,
)
from benchmarks.fleetbench import (
    SshHost,
    ansible_forks,
    baseline_plan,
    bench_fleet,
    control_dir,
    idle_target,
    manifest_of,
    pyspy_stamp,
    require_fleet,
    run_fleetprof,
    runner_zipapp,
    skip_smoke,
    ssh_hosts,
    start_figures,
    unseed_pyspy,
    write_campaign,
    write_inventory,
)

if TYPE_CHECKING:
    from tests.fleet import Fleet

NAME = "orchestration"
SUMMARY = (
    "campaign wall time - window on 1-32 fleet hosts: fleetprof vs plain ssh/scp vs a naive "
    "playbook"
)
CAMPAIGN = "bench-orchestration"
FULL_SIZES = (1, 4, 16, 32)
SMOKE_SIZES = (1,)
FULL_WINDOW_S = 5.0
SMOKE_WINDOW_S = 2.0
RATE_HZ = 19
NAIVE_DIR = ROOT / "benchmarks" / "naive"
NAIVE_LEAD_S = 1.0
NAIVE_SERIAL = 5  # site.yml's serial: the hosts in one window at a time
FLOOR_MIN_LEAD_S = 0.5
FLOOR_LEAD_FACTOR = 1.5
GOAL_RATIO = 2.0


# --------------------------------------------------------------------------- the floor


def _checked(argv: Sequence[str], stdin: str | None = None, timeout_s: float = 600.0) -> str:
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise BenchmarkError(f"{argv[0]} exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def _phase(
    pool: ThreadPoolExecutor, hosts: Sequence[SshHost], job: Callable[[SshHost], Any]
) -> tuple[float, list[Any]]:
    began = time.monotonic()
    results = list(pool.map(job, hosts))
    return time.monotonic() - began, results


def run_floor(
    hosts: Mapping[str, SshHost],
    plans: Mapping[str, Mapping[str, Any]],
    work: Path,
    window_s: float,
) -> dict[str, Any]:
    """The same sessions with plain parallel ssh/scp; wall time and where it went."""
    archives = work / "archives"
    archives.mkdir(parents=True)
    module = f"/tmp/fleetprof-floor-{secrets.token_hex(4)}.pyz"
    targets = [hosts[name] for name in plans]

    def copy(host: SshHost) -> float:
        began = time.monotonic()
        _checked(host.scp_to(runner_zipapp(), module))
        return time.monotonic() - began

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        copy_s, copies = _phase(pool, targets, copy)
        lead = max(FLOOR_MIN_LEAD_S, FLOOR_LEAD_FACTOR * max(copies))
        t0 = time.time() + lead
        session = {h.name: baseline_plan(plans[h.name], "floor", t0) for h in targets}

        def run(host: SshHost) -> None:
            # The runner reads its arguments file; /dev/stdin is the plan sent with the command.
            argv = host.ssh([host.python, module, "session", "/dev/stdin"])
            _checked(argv, stdin=json.dumps({"plan": session[host.name]}))

        def fetch(host: SshHost) -> None:
            _checked(host.scp_from(session[host.name]["archive"], archives / f"{host.name}.tar.gz"))

        def clean(host: SshHost) -> None:
            plan = session[host.name]
            _checked(host.ssh(["rm", "-rf", "--", plan["workdir"], plan["archive"], module]))

        run_s, _ = _phase(pool, targets, run)
        fetch_s, _ = _phase(pool, targets, fetch)
        clean_s, _ = _phase(pool, targets, clean)
    wall = time.monotonic() - began
    starts = start_figures([manifest_of(archives / f"{h.name}.tar.gz") for h in targets])
    return {
        "floor_wall_s": wall,
        "floor_overhead_s": wall - window_s,
        "floor_skew_ms": starts["skew_ms"],
        "floor_ok": starts["ok"],
        "floor_late": starts["late"],
        "floor_lead_s": lead,
        "floor_copy_s": copy_s,
        "floor_run_s": run_s,
        "floor_fetch_s": fetch_s,
        "floor_cleanup_s": clean_s,
    }


# --------------------------------------------------------------------------- the naive playbook


def run_naive(
    inventory: Path,
    plans: Mapping[str, Mapping[str, Any]],
    work: Path,
    window_s: float,
    lead_s: float = NAIVE_LEAD_S,
) -> dict[str, Any]:
    """The same sessions with benchmarks/naive/site.yml at Ansible's defaults."""
    plans_dir, archives = work / "plans", work / "archives"
    plans_dir.mkdir(parents=True)
    archives.mkdir()
    for name, plan in plans.items():
        (plans_dir / f"{name}.json").write_text(json.dumps(baseline_plan(plan, "naive")))
    extra = work / "vars.json"
    extra.write_text(
        json.dumps(
            {
                "naive_runner": str(runner_zipapp()),
                "naive_plans": str(plans_dir),
                "naive_out": str(archives),
                "naive_lead": lead_s,
            }
        )
    )
    playbook = Path(sys.executable).parent / "ansible-playbook"
    argv = [str(playbook), "-i", str(inventory), str(NAIVE_DIR / "site.yml"), "-e", f"@{extra}"]
    with control_dir() as control:
        # Nothing of the caller's Ansible settings: the naive playbook gets the defaults.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env.update(
            ANSIBLE_CONFIG=str(NAIVE_DIR / "ansible.cfg"),
            ANSIBLE_PIPELINING="False",
            ANSIBLE_HOST_KEY_CHECKING="True",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(control),
        )
        began = time.monotonic()
        done = subprocess.run(
            argv, cwd=work, env=env, capture_output=True, text=True, timeout=3600, check=False
        )
        wall = time.monotonic() - began
    if done.returncode != 0:
        raise BenchmarkError(
            f"the naive playbook exited with {done.returncode}:\n"
            f"{done.stdout[-4000:]}{done.stderr[-2000:]}"
        )
    starts = start_figures([manifest_of(archives / f"{name}.tar.gz") for name in plans])
    return {
        "naive_wall_s": wall,
        "naive_overhead_s": wall - window_s,
        "naive_skew_ms": starts["skew_ms"],
        "naive_ok": starts["ok"],
        "naive_late": starts["late"],
        "naive_batches": -(-len(plans) // NAIVE_SERIAL),
    }


# --------------------------------------------------------------------------- one size


def measure_size(
    fleet: Fleet,
    hosts: Sequence[str],
    campaign: Path,
    work: Path,
    window_s: float,
    *,
    naive_lead_s: float = NAIVE_LEAD_S,
    quiet: bool = False,
) -> dict[str, Any]:
    """Every variant on ``hosts``; one row of the table."""
    work.mkdir(parents=True)
    inventory = write_inventory(fleet.inventory, hosts, work / "inventory.yml")

    def say(text: str) -> None:
        if not quiet:
            print(f"{len(hosts):>4} hosts: {text}", file=sys.stderr)

    unseed_pyspy(fleet, hosts)
    with control_dir() as control:
        first = run_fleetprof(
            campaign, inventory, work / "first", window_s=window_s, control=control
        )
    pushed = sum(1 for h in hosts if pyspy_stamp(fleet, h) is not None)
    say(f"first push {first.wall_s:.1f} s (py-spy pushed to {pushed})")
    with control_dir() as control:
        cold = run_fleetprof(campaign, inventory, work / "cold", window_s=window_s, control=control)
        say(f"fleetprof {cold.wall_s:.1f} s, skew {cold.skew_ms} ms")
        warm = run_fleetprof(campaign, inventory, work / "warm", window_s=window_s, control=control)
        say(f"warm {warm.wall_s:.1f} s")
    floor = run_floor(ssh_hosts(inventory), cold.plans, work / "floor", window_s)
    say(f"floor {floor['floor_wall_s']:.1f} s")
    naive = run_naive(inventory, cold.plans, work / "naive", window_s, naive_lead_s)
    say(f"naive {naive['naive_wall_s']:.1f} s")
    row: dict[str, Any] = {
        "hosts": len(hosts),
        "window_s": window_s,
        **cold.figures("fleetprof"),
        **warm.figures("warm"),
        **first.figures("first"),
        "first_pyspy_pushed": pushed,
        **floor,
        **naive,
    }
    # A variant where some host did not run its whole session measured something else.
    row["problems"] = [
        f"{variant}: {row[f'{variant}_ok']} of {len(hosts)} hosts ok"
        for variant in ("first", "fleetprof", "warm", "floor", "naive")
        if row[f"{variant}_ok"] != len(hosts)
    ]
    for problem in row["problems"]:
        say(problem)
    row["fleetprof_per_host_s"] = row["fleetprof_overhead_s"] / len(hosts)
    row["ratio_floor"] = _ratio(row["fleetprof_overhead_s"], row["floor_overhead_s"])
    row["warm_ratio_floor"] = _ratio(row["warm_overhead_s"], row["floor_overhead_s"])
    row["naive_ratio_floor"] = _ratio(row["naive_overhead_s"], row["floor_overhead_s"])
    return row


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


# --------------------------------------------------------------------------- the run


def run(
    sizes: Sequence[int] = FULL_SIZES,
    window_s: float = FULL_WINDOW_S,
    *,
    rate_hz: int = RATE_HZ,
    naive_lead_s: float = NAIVE_LEAD_S,
    workdir: Path | None = None,
    keep: bool = False,
    results: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """One fleet of the largest size; every size on its first N hosts."""
    require_fleet()
    base = Path(tempfile.mkdtemp(prefix="fpbench-orchestration-", dir=workdir))
    rows: list[dict[str, Any]] = []
    try:
        with bench_fleet(max(sizes), seeded=False) as fleet:
            campaign = write_campaign(
                base / "campaign.yml",
                CAMPAIGN,
                window_s,
                idle_target(fleet.python),
                {"py-spy": {"rate": rate_hz, "idle": True}},
            )
            for n in sorted(sizes):
                names = [h.name for h in fleet.hosts[:n]]
                rows.append(
                    measure_size(
                        fleet,
                        names,
                        campaign,
                        base / f"n{n}",
                        window_s,
                        naive_lead_s=naive_lead_s,
                        quiet=quiet,
                    )
                )
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    data = summarise(rows, window_s, rate_hz, naive_lead_s)
    return publish(NAME, data, render, results=results, quiet=quiet)


def summarise(
    rows: list[dict[str, Any]], window_s: float, rate_hz: int, naive_lead_s: float
) -> dict[str, Any]:
    forks = ansible_forks()
    within = [r for r in rows if r["hosts"] <= forks]
    fit = linear_fit(
        [float(r["hosts"]) for r in within], [r["fleetprof_overhead_s"] for r in within]
    )
    ratios = [r["ratio_floor"] for r in rows if r["ratio_floor"] is not None]
    return {
        "setup": {
            "window_s": window_s,
            "py_spy_rate_hz": rate_hz,
            "fleetprof_forks": forks,
            "naive_forks": ansible_forks(NAIVE_DIR / "ansible.cfg"),
            "naive_lead_s": naive_lead_s,
        },
        "goal": {"ratio_to_floor": GOAL_RATIO, "flat_per_host_up_to_forks": forks},
        "rows": rows,
        "fit_within_forks": {
            "overhead_fixed_s": fit[0],
            "overhead_per_host_s": fit[1],
            "r2": fit[2],
        },
        "goal_met": bool(ratios) and max(ratios) <= GOAL_RATIO,
    }


COLUMNS = (
    ("hosts", "hosts"),
    ("fleetprof_wall_s", "fleetprof wall s"),
    ("fleetprof_overhead_s", "fleetprof overhead s"),
    ("fleetprof_per_host_s", "per host s"),
    ("warm_overhead_s", "warm s"),
    ("first_overhead_s", "first push s"),
    ("floor_overhead_s", "floor s"),
    ("naive_overhead_s", "naive s"),
    ("ratio_floor", "fleetprof / floor"),
    ("naive_ratio_floor", "naive / floor"),
)
STAGE_COLUMNS = (
    ("hosts", "hosts"),
    ("fleetprof_controller_s", "controller s"),
    ("fleetprof_preflight_s", "preflight s"),
    ("fleetprof_provision_s", "provision s"),
    ("fleetprof_lead_s", "lead s"),
    ("fleetprof_session_s", "session s"),
    ("fleetprof_collect_s", "collect s"),
    ("first_provision_s", "provision, first push s"),
    ("floor_copy_s", "floor copy s"),
    ("floor_lead_s", "floor lead s"),
    ("floor_fetch_s", "floor fetch s"),
    ("floor_cleanup_s", "floor cleanup s"),
)


def render(data: dict[str, Any]) -> str:
    setup, fit = data["setup"], data["fit_within_forks"]
    return (
        f"window {setup['window_s']:g} s; overhead = wall - window, seconds\n\n"
        + table(data["rows"], COLUMNS)
        + "\n\nwhere fleetprof's time went (seconds; session = lead + window + stop and pack)\n\n"
        + table(data["rows"], STAGE_COLUMNS)
        + "".join(
            f"\n\n{r['hosts']} hosts: {'; '.join(r['problems'])}"
            for r in data["rows"]
            if r["problems"]
        )
        + f"\n\nwithin {setup['fleetprof_forks']} forks: overhead {fit['overhead_fixed_s']:.2f} s"
        f" + {fit['overhead_per_host_s'] * 1000:.0f} ms/host (r² {fit['r2']:.2f});"
        f" goal (<= {GOAL_RATIO:g}x the floor): {'met' if data['goal_met'] else 'not met'}"
    )


def bench(smoke: bool = False) -> dict[str, Any]:
    """``make bench`` / ``make bench-smoke``."""
    if smoke:
        return skip_smoke(NAME) or run(SMOKE_SIZES, SMOKE_WINDOW_S, results=False)
    return run(FULL_SIZES, FULL_WINDOW_S)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.orchestration")
    parser.add_argument("--hosts", default=",".join(map(str, FULL_SIZES)), help="sizes, a,b,c")
    parser.add_argument("--window", type=float, default=FULL_WINDOW_S, help="seconds")
    parser.add_argument("--rate", type=int, default=RATE_HZ, help="py-spy Hz")
    parser.add_argument("--naive-lead", type=float, default=NAIVE_LEAD_S, help="seconds")
    add_run_options(parser, "1 host, a 2 s window", "run directories")
    args = parser.parse_args(argv)
    if args.smoke:
        run(SMOKE_SIZES, SMOKE_WINDOW_S, workdir=args.workdir, keep=args.keep, results=False)
        return 0
    sizes = [int(s) for s in args.hosts.split(",") if s.strip()]
    run(
        sizes,
        args.window,
        rate_hz=args.rate,
        naive_lead_s=args.naive_lead,
        workdir=args.workdir,
        keep=args.keep,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
