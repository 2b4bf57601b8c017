"""Report scale: how long `fleetprof report RUN_DIR` takes, and how much memory it needs,
on a generated run of N hosts x S distinct py-spy stacks per host.

The run directory has the layout of docs/run-directory.md, written with fleetprof's own
models (``HostFacts``, ``make_plan``, ``RunDir``) so it stays what the parsers accept:
``run.json``, ``campaign.yml`` and per host ``facts.json``, ``plan.json``,
``status.json`` and ``session/`` with ``manifest.json``, ``py-spy.folded``,
``system.jsonl`` and the workload's own ``workload.jsonl`` (its rate once a second).

What makes it realistic rather than random:

- Stacks are walks down one application's call graph (most functions call one other,
  some a few, a few dispatch to many, each call from one to three fixed lines), 10 to 40
  frames deep with ``<module>;main;run`` on top, the leaf at one of several lines of its
  function. Frames look like py-spy's (``decode_frame (vision/decode.py:141)``), about 35
  characters each, so a host's file is about 18 MB. Stacks share prefixes as real ones
  do: one host's call tree merged by function has about 8 nodes per distinct stack.
- The fleet runs one software: each hardware model takes three quarters of one pool of
  2 x S distinct stacks and each host S of its model's, so the fleet-wide merge has the
  overlap a real fleet has; 5% of each host's stacks are its own (another leaf line).
- Sample counts are heavy-tailed (Pareto) and the same stacks are hot on every host,
  about ``rate x duration`` samples per host (S = 20,000 is a 10-minute window at 97 Hz).
- A few hosts stand out: every 50th has a hot spot (one function's stacks 8 times as
  heavy), every 60th a slow workload (fps), every 100th was unreachable.

Each size is measured in a fresh child process doing what ``fleetprof report`` does:
load the campaign, :func:`orchestrator.stages.flow.build_outputs` (parse, analyze, report.json,
report.html, summary.md, the per-host exports) and :func:`record_history`.
The child's peak RSS is its own (``wait4``). Inputs are generated once, at the largest
size, and the smaller runs hard-link the first N hosts' files, so every size reads the
same hosts and the page cache is warm for all (the figures leave out cold-disk reads).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    MIB,
    linear_fit,
    peak_rss_kib,
    publish,
    python,
    run_measured,
    table,
)

NAME = "report_scale"
SUMMARY = "fleetprof report on a generated run of 500 hosts x 20,000 stacks: seconds, peak RSS"
CAMPAIGN = "bench-report"
RUN_ID = "20261125-120000-be00"

FULL_SIZES = (50, 100, 250, 500)
FULL_STACKS = 20_000
SMOKE_SIZES = (2, 4)
SMOKE_STACKS = 300
GOAL_S = 10.0
GOAL_MB = 1024.0

MODELS = (
    # (hw_model, arch, cores, memory_mb, workload fps)
    ("jetson-orin-nx", "aarch64", 8, 15_656, 25.0),
    ("raspberry-pi-4", "aarch64", 4, 3_792, 9.0),
    ("intel-nuc-11", "x86_64", 8, 15_843, 41.0),
    ("gpu-server-a2", "x86_64", 32, 128_512, 120.0),
)

# fmt: off
_VERBS = (
    "decode", "encode", "read", "write", "parse", "render", "resize", "convert", "infer",
    "forward", "load", "store", "fetch", "send", "recv", "poll", "wait", "acquire", "hash",
    "sort", "filter", "apply", "reduce", "scan", "match", "split", "join", "pack", "unpack",
    "update", "validate", "normalize", "compute", "schedule", "dispatch", "handle",
    "process", "emit", "flush",
)
_NOUNS = (
    "frame", "tensor", "buffer", "packet", "batch", "image", "block", "header", "record",
    "row", "chunk", "token", "message", "event", "request", "response", "queue", "cache",
    "index", "layer", "kernel", "stream", "socket", "file", "config", "model", "graph",
    "node", "edge", "metric",
)
_PACKAGES = (
    "app", "vision", "pipeline", "net", "storage", "torch/nn/modules", "numpy/core",
    "asyncio", "concurrent/futures", "json", "logging", "threading", "cv2/utils",
    "grpc/_channel", "urllib3",
)
_MODULES = (
    "core", "base", "utils", "io", "ops", "worker", "session", "functional", "decode", "queue",
)
# fmt: on


@dataclass(frozen=True)
class Shape:
    """What to generate: ``hosts`` x ``stacks`` distinct stacks per host."""

    hosts: int
    stacks: int
    seed: int = 8
    duration_s: float = 600.0
    rate_hz: int = 97
    system_interval_s: float = 2.0
    min_depth: int = 10
    max_depth: int = 40


# --------------------------------------------------------------------------- stacks


class _CallGraph:
    """One application: functions in files, each calling a few others from fixed lines.

    Most functions call one other (wrappers, the layers of a framework), some a few, a
    few dispatch to many; a call may come from one to three lines of the caller. So
    stacks share long prefixes, as in a real profile: one host's call tree (merged by
    function) has about 8 nodes per distinct stack, not one per frame.
    """

    FANOUT = (1,) * 55 + (2,) * 25 + (3,) * 12 + (8,) * 8  # callees per function, weighted

    def __init__(self, rng: random.Random) -> None:
        files = [f"{p}/{m}.py" for p in _PACKAGES for m in _MODULES]
        self.frames: list[tuple[str, str, int]] = []  # (function, file, first line)
        for verb in _VERBS:
            for noun in _NOUNS:
                self.frames.append((f"{verb}_{noun}", rng.choice(files), rng.randrange(20, 2000)))
        count = len(self.frames)
        self.calls = [rng.sample(range(count), rng.choice(self.FANOUT)) for _ in range(count)]
        self.call_lines = [
            [[rng.randrange(1, 80) for _ in range(rng.choice((1, 1, 2, 3)))] for _ in callees]
            for callees in self.calls
        ]
        self.entries = rng.sample(range(count), 8)

    def text(self, index: int, offset: int) -> str:
        function, file, first = self.frames[index]
        return f"{function} ({file}:{first + offset})"

    def walk(self, rng: random.Random, depth: int) -> tuple[str, int]:
        """One stack's text (root first) and its leaf function."""
        parts = ["<module> (main.py:12)", "main (main.py:40)", "run (app/loop.py:88)"]
        current = rng.choice(self.entries)
        for _ in range(depth - 4):
            pick = rng.randrange(len(self.calls[current]))
            parts.append(self.text(current, rng.choice(self.call_lines[current][pick])))
            current = self.calls[current][pick]
        parts.append(self.text(current, 80 + rng.randrange(12)))
        return ";".join(parts), current


@dataclass
class _Pool:
    lines: list[str]
    leaves: list[int]
    weights: list[float]
    hot_leaf: int


def _pool(shape: Shape, rng: random.Random) -> _Pool:
    graph = _CallGraph(rng)
    seen: set[str] = set()
    lines: list[str] = []
    leaves: list[int] = []
    wanted = 2 * shape.stacks
    while len(lines) < wanted:
        text, leaf = graph.walk(rng, rng.randint(shape.min_depth, shape.max_depth))
        if text not in seen:
            seen.add(text)
            lines.append(text)
            leaves.append(leaf)
    weights = [min(rng.paretovariate(1.2), 2000.0) for _ in lines]
    by_leaf: dict[int, int] = {}
    for leaf in leaves:
        by_leaf[leaf] = by_leaf.get(leaf, 0) + 1
    ranked = sorted(by_leaf, key=lambda leaf: -by_leaf[leaf])
    return _Pool(lines, leaves, weights, hot_leaf=ranked[min(5, len(ranked) - 1)])


def _host_folded(shape: Shape, pool: _Pool, members: Sequence[int], index: int) -> str:
    """One host's py-spy.folded: ``shape.stacks`` distinct stacks of its model's pool."""
    rng = random.Random(shape.seed * 1_000_003 + index)
    chosen = rng.sample(members, shape.stacks)
    target = shape.duration_s * shape.rate_hz * 0.97
    hot = index % 50 == 49
    weights = [
        pool.weights[i] * (8.0 if hot and pool.leaves[i] == pool.hot_leaf else 1.0) for i in chosen
    ]
    scale = target / sum(weights)
    out: list[str] = []
    seen: set[str] = set()
    for i, weight in zip(chosen, weights, strict=True):
        line = pool.lines[i]
        if rng.random() < 0.05:
            # The host's own stack: the same path, the leaf at a line no peer sampled.
            head, _, leaf = line.rpartition(":")
            line = f"{head}:{int(leaf[:-1]) + 1000 + index})"
            if line in seen:
                continue
            seen.add(line)
        count = max(1, round(weight * scale * rng.uniform(0.6, 1.4)))
        out.append(f"{line} {count}\n")
    out.append(f" {rng.randrange(1, 40)}\n")  # samples with no Python frame, as py-spy writes
    return "".join(out)


def _system_jsonl(shape: Shape, rng: random.Random, start: float, cores: int) -> str:
    records = []
    samples = int(shape.duration_s / shape.system_interval_s)
    cpu_s = 0.0
    for n in range(samples):
        t = start + n * shape.system_interval_s
        busy = 45.0 + 20.0 * math.sin(n / 17.0) + rng.uniform(-5, 5)
        cpu_s += shape.system_interval_s * busy / 100
        record: dict[str, Any] = {"t": round(t, 3)}
        if n:
            record["cpu_pct"] = round(busy, 1)
            record["cpu_core_pct"] = {
                f"cpu{c}": round(min(100.0, max(0.0, busy + rng.uniform(-20, 20))), 1)
                for c in range(cores)
            }
        record["load"] = [round(busy / 25, 2), round(busy / 27, 2), round(busy / 30, 2)]
        record["mem_mb"] = {
            "total": 7_800.0,
            "available": round(4_200.0 - n * 0.2, 1),
            "swap_total": 0.0,
            "swap_free": 0.0,
        }
        record["thermal_c"] = {"cpu-thermal": round(52.0 + busy / 10, 1), "gpu-thermal": 48.5}
        record["cpufreq"] = [
            {"cpu": c, "cur_khz": 1_984_000, "max_khz": 1_984_000, "policy_max_khz": 1_984_000}
            for c in range(min(cores, 8))
        ]
        record["target"] = {
            "pid": 4242,
            "cpu_s": round(cpu_s, 2),
            "rss_kb": 612_000 + n * 8,
            "swap_kb": 0,
            "pss_kb": 598_000 + n * 8,
            "threads": 9,
            "read_bytes": n * 40_960,
            "write_bytes": n * 81_920,
            "rchar": n * 120_000,
            "wchar": n * 90_000,
            "ctx_voluntary": n * 310,
            "ctx_nonvoluntary": n * 12,
        }
        records.append(json.dumps(record, separators=(",", ":")))
    return "\n".join(records) + "\n"


# --------------------------------------------------------------------------- the run


def host_name(index: int) -> str:
    model = MODELS[index % len(MODELS)][0]
    return f"{model}-{index:04d}"


def campaign_yaml(shape: Shape) -> str:
    return (
        f"name: {CAMPAIGN}\n"
        "hosts: all\n"
        f"duration: {shape.duration_s:g}s\n"
        "target:\n"
        "  attach:\n"
        "    process: video_pipeline\n"
        "profilers:\n"
        "  py-spy:\n"
        f"    rate: {shape.rate_hz}\n"
        "  system:\n"
        f"    interval: {shape.system_interval_s * 1000:g}ms\n"
    )


def generate(pool_dir: Path, shape: Shape) -> None:
    """Write ``shape.hosts`` hosts into ``pool_dir`` (a run directory)."""
    from orchestrator.campaign.loader import load_campaign
    from orchestrator.models import ClockOffset, HostFacts, HostStatus
    from orchestrator.profilers.base import ToolChoice
    from orchestrator.stages.plan import make_plan
    from orchestrator.stages.rundir import RunDir, write_json, write_text

    run = RunDir(pool_dir)
    (pool_dir / "hosts").mkdir(parents=True, exist_ok=True)
    write_text(pool_dir / "campaign.yml", campaign_yaml(shape))
    campaign = load_campaign(pool_dir / "campaign.yml")
    rng = random.Random(shape.seed)
    pool = _pool(shape, rng)
    everything = list(range(len(pool.lines)))
    per_model = [rng.sample(everything, (len(everything) * 3) // 4) for _ in MODELS]
    tools = {"py-spy": ToolChoice("0.4.3", "/opt/fleetprof/tools/py-spy", "a4" * 32, None)}
    t0 = 1_795_000_000.0
    for index in range(shape.hosts):
        name = host_name(index)
        model, arch, cores, memory_mb, fps = MODELS[index % len(MODELS)]
        facts = HostFacts(
            host=name,
            arch=arch,
            hw_model=model,
            hw_model_source="hostvar",
            os="Debian GNU/Linux 12 (bookworm)",
            kernel="6.1.0-28",
            python="3.11.2",
            cores=cores,
            memory_mb=memory_mb,
            disk_free_mb=40_000,
            home="/home/ops",
            is_root=False,
            ptrace_scope=0,
            can_attach=True,
            attach_reason=None,
            clock=ClockOffset(offset_s=0.002, uncertainty_s=0.004),
            ready_s=0.6,
        )
        run.write_facts(facts)
        host_rng = random.Random(shape.seed * 7919 + index)
        if index % 100 == 99:
            run.write_status(name, "preflight", HostStatus.UNREACHABLE, "ssh: connect timed out")
            continue
        plan = make_plan(campaign, facts, RUN_ID, tools, t0)
        run.write_plan(plan)
        run.write_status(name, "collect", "collected", None)
        session = run.session_dir(name)
        session.mkdir(parents=True, exist_ok=True)
        started = plan.t0_device + host_rng.uniform(0.001, 0.012)
        stopped = plan.deadline_device + 0.05
        folded = _host_folded(shape, pool, per_model[index % len(MODELS)], index)
        (session / "py-spy.folded").write_text(folded, encoding="utf-8")
        system = _system_jsonl(shape, host_rng, started, cores)
        (session / "system.jsonl").write_text(system, encoding="utf-8")
        slow = 0.6 if index % 60 == 59 else 1.0
        fps_value = fps * slow * host_rng.uniform(0.97, 1.03)
        # The workload's own metrics (FLEETPROF_METRICS_FILE): its rate once a second.
        lines = (
            json.dumps({"name": "fps", "value": round(fps_value, 3), "t": started + second})
            for second in range(1, max(2, int(shape.duration_s)) + 1)
        )
        (session / "workload.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        samples = sum(int(line.rsplit(" ", 1)[1]) for line in folded.splitlines())
        write_json(
            session / "manifest.json",
            _manifest(shape, plan, started, stopped, folded, system, samples),
        )
    write_json(
        pool_dir / "run.json",
        _run_meta(shape, [host_name(i) for i in range(shape.hosts)]),
    )


def _manifest(
    shape: Shape,
    plan: Any,
    started: float,
    stopped: float,
    folded: str,
    system: str,
    samples: int,
) -> dict[str, Any]:
    offset = plan.clock_offset_s
    window = {
        "started_at_device": started,
        "stopped_at_device": stopped,
        "started_at_controller": started - offset,
        "stopped_at_controller": stopped - offset,
    }
    return {
        "schema": "fleetprof.manifest/1",
        "campaign": plan.campaign,
        "run_id": plan.run_id,
        "host": plan.host,
        "status": "ok",
        "reason": None,
        "clock_offset_s": offset,
        "t0_device": plan.t0_device,
        "deadline_device": plan.deadline_device,
        "grace_s": plan.grace_s,
        **window,
        "late_by_s": 0.0,
        "target": {"mode": "attach", "pid": 4242, "cmdline": ["python3", "video_pipeline.py"],
                   "exit_code": None, "exited_at_device": None},
        "profilers": {
            "py-spy": {
                "status": "ok", "reason": None, "argv": _argv(plan, "py-spy"), "exit_code": 0,
                **window, "stderr_tail": "",
                "outputs": {"py-spy.folded": {"bytes": len(folded), "truncated": False}},
                "data_quality": {
                    "behind_warnings": 0, "max_lag_s": None, "samples": samples, "errors": 0,
                    "effective_rate_hz": round(samples / shape.duration_s, 2),
                    "requested_rate_hz": float(shape.rate_hz),
                },
            },
            "system": {
                "status": "ok", "reason": None, "argv": [], "exit_code": None, **window,
                "outputs": {"system.jsonl": {"bytes": len(system), "truncated": False}},
                "data_quality": {"samples": system.count("\n"), "sampler_cpu_s": 0.9,
                                 "ran_s": shape.duration_s},
            },
        },
        "runner": {"python": "3.11.2", "pid": 4100, "version": "1"},
    }  # fmt: skip


def _argv(plan: Any, name: str) -> list[str]:
    return next((list(p.argv) for p in plan.profilers if p.name == name), [])


def _run_meta(shape: Shape, hosts: list[str]) -> dict[str, Any]:
    return {
        "campaign": CAMPAIGN,
        "run_id": RUN_ID,
        "kind": "run",
        "started_at": "2026-11-25T12:00:00+00:00",
        "duration_s": shape.duration_s,
        "mode": "attach",
        "inventory": None,
        "hosts": hosts,
        "hw_models": {},
        "group_by": "hw_model",
        "group_values": {},
    }


def link_run(pool_dir: Path, out_root: Path, hosts: int, shape: Shape) -> Path:
    """A run directory of the pool's first ``hosts`` hosts (files hard-linked, so every
    size reads the same bytes), at ``out_root/<campaign>/<run id>`` as a real run is."""
    run_dir = out_root / CAMPAIGN / RUN_ID
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "hosts").mkdir(parents=True)
    shutil.copy2(pool_dir / "campaign.yml", run_dir / "campaign.yml")
    names = [host_name(i) for i in range(hosts)]
    (run_dir / "run.json").write_text(json.dumps(_run_meta(shape, names), indent=2) + "\n")
    for name in names:
        source = pool_dir / "hosts" / name
        for path in sorted(source.rglob("*")):
            if path.name.startswith("profile."):
                continue  # exports of an earlier build are outputs, not inputs
            into = run_dir / "hosts" / name / path.relative_to(source)
            if path.is_dir():
                into.mkdir(parents=True, exist_ok=True)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, into)
    return run_dir


def _dir_bytes(path: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


# --------------------------------------------------------------------------- measuring


# The stages of build_outputs, timed by wrapping what orchestrator.stages.flow calls.
PHASES = {
    "parse_host": "parse_s",
    "build_report": "analyze_s",
    "write_json": "report_json_s",
    "render_html": "render_html_s",
    "render_markdown": "render_md_s",
    "write_text": "write_text_s",
    "write_exports": "exports_s",
}


def _timed_phases(module: Any) -> dict[str, Any]:
    """Wrap ``module``'s references to :data:`PHASES` so each call adds to its total, and
    note the resident high-water mark after each stage (where it jumps, the peak is)."""
    spent: dict[str, Any] = dict.fromkeys(PHASES.values(), 0.0)
    high_water: dict[str, float] = {}
    spent["peak_mb_after"] = high_water

    def wrap(name: str, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[PHASES[name]] += time.perf_counter() - started
                high_water[PHASES[name].removesuffix("_s")] = peak_rss_kib() / 1024

        return timed

    for name in PHASES:
        if hasattr(module, name):
            setattr(module, name, wrap(name, getattr(module, name)))
    return spent


def worker(run_dir: Path) -> dict[str, Any]:
    """In the measured child: what `fleetprof report RUN_DIR` does, phase by phase."""
    started = time.perf_counter()
    from orchestrator.campaign.loader import load_campaign
    from orchestrator.stages import flow
    from orchestrator.stages.rundir import RunDir

    imported = time.perf_counter()
    phases = _timed_phases(flow)
    campaign = load_campaign(run_dir / "campaign.yml")
    loaded = time.perf_counter()
    report = flow.build_outputs(RunDir(run_dir), campaign)
    built = time.perf_counter()
    problem = flow.record_history(RunDir(run_dir), report)
    recorded = time.perf_counter()
    peak = peak_rss_kib()
    # What report.json would cost written compactly by the C encoder (for comparison
    # with the indented form runs.write_json writes).
    compact = json.dumps(report, separators=(",", ":"), default=str)
    compact_s = time.perf_counter() - recorded
    return {
        "import_s": imported - started,
        "load_s": loaded - imported,
        "build_s": built - loaded,
        **phases,
        "history_s": recorded - built,
        "report_s": recorded - started,
        "history_problem": problem,
        "hosts_in_report": len(report["hosts"]),
        "peak_rss_kib": peak,
        "report_json_compact_mb": len(compact) / MIB,
        "report_json_compact_s": compact_s,
    }


def profile(run_dir: Path, hosts: int, top: int = 30) -> None:
    """cProfile the build of ``run_dir`` in this process, then print where its memory
    peaked (tracemalloc, a second build: tracing makes it several times slower)."""
    import cProfile
    import pstats
    import tracemalloc

    from orchestrator.campaign.loader import load_campaign
    from orchestrator.stages.flow import build_outputs
    from orchestrator.stages.rundir import RunDir

    campaign = load_campaign(run_dir / "campaign.yml")
    profiler = cProfile.Profile()
    profiler.runcall(build_outputs, RunDir(run_dir), campaign)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    tracemalloc.start(8)
    build_outputs(RunDir(run_dir), campaign)
    current, peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    print(
        f"traced: {current / MIB:.0f} MiB at the end, {peak / MIB:.0f} MiB at the peak",
        file=sys.stderr,
    )
    for stat in snapshot.statistics("lineno")[:top]:
        print(stat, file=sys.stderr)


def measure(run_dir: Path) -> dict[str, Any]:
    """One build of ``run_dir`` in a fresh child; its figures and the outputs' sizes."""
    child = run_measured([python(), "-m", "benchmarks.report_scale", "--worker", str(run_dir)])
    hosts_dir = run_dir / "hosts"
    return {
        **child.output,
        "wall_s": child.wall_s,
        "peak_rss_mb": child.peak_rss_mb,
        "report_json_mb": (run_dir / "report.json").stat().st_size / MIB,
        "report_html_mb": (run_dir / "report.html").stat().st_size / MIB,
        "summary_md_kb": (run_dir / "summary.md").stat().st_size / 1024,
        "exports_mb": _dir_bytes(hosts_dir, "*/profile.*") / MIB,
        "input_mb": _dir_bytes(hosts_dir, "*/session/*") / MIB,
    }


def run(
    sizes: Sequence[int] = FULL_SIZES,
    stacks: int = FULL_STACKS,
    *,
    workdir: Path | None = None,
    keep: bool = False,
    results: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Generate once at the largest size, measure every size; print and save a table."""
    shape = Shape(hosts=max(sizes), stacks=stacks)
    base = Path(tempfile.mkdtemp(prefix="fleetprof-bench-", dir=workdir))
    rows: list[dict[str, Any]] = []
    try:
        pool_dir = base / "pool"
        began = time.perf_counter()
        generate(pool_dir, shape)
        generated_s = time.perf_counter() - began
        if not quiet:
            print(
                f"generated {shape.hosts} hosts x {stacks:,} stacks in {generated_s:.1f} s "
                f"({_dir_bytes(pool_dir / 'hosts', '*/session/*') / MIB:,.0f} MiB)",
                file=sys.stderr,
            )
        for hosts in sorted(sizes):
            run_dir = link_run(pool_dir, base / f"out-{hosts}", hosts, shape)
            load_before = os.getloadavg()[0]
            figures = measure(run_dir)
            # The machine's load around the measurement: on 2 cores, anything else running
            # shows in the seconds (the figure is 1.0 for this benchmark alone).
            load = (round(load_before, 2), round(os.getloadavg()[0], 2))
            row = {"hosts": hosts, "stacks_per_host": stacks, **figures, "load_1m": load}
            rows.append(row)
            if not quiet:
                print(
                    f"{hosts:>5} hosts: report {row['report_s']:.2f} s "
                    f"(build {row['build_s']:.2f} s), peak {row['peak_rss_mb']:.0f} MiB",
                    file=sys.stderr,
                )
            if not keep:
                shutil.rmtree(run_dir.parent.parent)
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    data = summarise(shape, rows)
    return publish(NAME, data, render, results=results, quiet=quiet)


def summarise(shape: Shape, rows: list[dict[str, Any]]) -> dict[str, Any]:
    xs = [float(r["hosts"]) for r in rows]
    time_fit = linear_fit(xs, [r["report_s"] for r in rows])
    mem_fit = linear_fit(xs, [r["peak_rss_mb"] for r in rows])
    largest = rows[-1] if rows else {}
    return {
        "shape": asdict(shape),
        "goal": {"seconds": GOAL_S, "peak_mb": GOAL_MB, "at_hosts": 500, "stacks": 20_000},
        "rows": rows,
        "fit": {
            "seconds_per_host": time_fit[1],
            "seconds_fixed": time_fit[0],
            "seconds_r2": time_fit[2],
            "mb_per_host": mem_fit[1],
            "mb_fixed": mem_fit[0],
            "mb_r2": mem_fit[2],
        },
        "goal_met": bool(
            largest and largest["report_s"] <= GOAL_S and largest["peak_rss_mb"] <= GOAL_MB
        ),
    }


COLUMNS = (
    ("hosts", "hosts"),
    ("stacks_per_host", "stacks/host"),
    ("input_mb", "input MiB"),
    ("build_s", "build_outputs s"),
    ("history_s", "history s"),
    ("report_s", "fleetprof report s"),
    ("peak_rss_mb", "peak RSS MiB"),
    ("report_json_mb", "report.json MiB"),
    ("report_html_mb", "report.html MiB"),
    ("exports_mb", "exports MiB"),
)


def render(data: dict[str, Any]) -> str:
    fit = data["fit"]
    return (
        table(data["rows"], COLUMNS)
        + f"\n\nper host: {fit['seconds_per_host'] * 1000:.1f} ms (r² {fit['seconds_r2']:.3f}),"
        f" {fit['mb_per_host']:.2f} MiB (r² {fit['mb_r2']:.3f});"
        f" goal ({GOAL_S:g} s, {GOAL_MB:g} MiB at 500 x 20,000):"
        f" {'met' if data['goal_met'] else 'not met'}"
    )


def bench(smoke: bool = False) -> dict[str, Any]:
    """``make bench`` / ``make bench-smoke``: every size, or the smoke size."""
    if smoke:
        return run(SMOKE_SIZES, SMOKE_STACKS, results=False)
    return run(FULL_SIZES, FULL_STACKS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_scale")
    parser.add_argument("--hosts", default=",".join(map(str, FULL_SIZES)), help="sizes, a,b,c")
    parser.add_argument("--stacks", type=int, default=FULL_STACKS, help="per host")
    parser.add_argument("--smoke", action="store_true", help="a tiny size (seconds)")
    parser.add_argument("--workdir", type=Path, help="where to generate (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the generated runs")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile and tracemalloc one build instead"
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker)))
        return 0
    sizes = [int(s) for s in args.hosts.split(",") if s.strip()]
    if args.profile:
        base = Path(tempfile.mkdtemp(prefix="fleetprof-bench-", dir=args.workdir))
        try:
            shape = Shape(hosts=max(sizes), stacks=args.stacks)
            generate(base / "pool", shape)
            profile(link_run(base / "pool", base / "out", max(sizes), shape), max(sizes))
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
        return 0
    if args.smoke:
        run(SMOKE_SIZES, SMOKE_STACKS, workdir=args.workdir, keep=args.keep, results=False)
        return 0
    run(sizes, args.stacks, workdir=args.workdir, keep=args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
