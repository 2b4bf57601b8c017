"""py-spy profiles that tell the truth, end to end: `fleetprof run` on the test fleet against
programs that measure their own truth, and against py-spy run directly on the same process.

The programs (tests/fixtures/py-spy/programs/) are the ones the unit tests' recordings
came from: zlib compressing for a measured share of the time, three named threads busy in
known time slots, a parent with two children doing different work. Each writes its truth
to /tmp/truth.json on its host while it runs.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from orchestrator.toolcache import PYSPY_VERSION
from tests.fleet import Fleet
from tests.fleet.fixtures import requires_fleet
from tests.support.cli import needs_ptrace
from tests.support.fleet import PYTHON, deploy
from tests.support.paths import FIXTURES

pytestmark = [pytest.mark.integration, requires_fleet, needs_ptrace]

PROGRAMS = FIXTURES / "py-spy" / "programs"
POINTS = 5.0
WINDOW_S = 10  # about 970 ticks at 97 Hz: a share's sampling error is under 2 points
TRUTH = "/tmp/truth.json"
PYSPY = f"/root/.fleetprof/tools/py-spy/{PYSPY_VERSION}/py-spy"
THREAD = re.compile(r"thread \((?P<tid>[0-9A-Fa-fx]+)\)(?:: (?P<name>.*))?")
PROCESS = re.compile(r'process (?P<pid>[0-9]+):"(?P<cmd>.*)"')
Rows = list[tuple[list[str], int]]  # py-spy's raw lines: frames (root first), count
WHEN: dict[tuple[str, int], tuple[float, float]] = {}  # direct runs: (start, stop)


@pytest.fixture(scope="module")
def fleet(module_fleet_factory: Any) -> Fleet:
    # Quotas keep the workloads from starving the controller on a two-core machine;
    # "tiny" is a board with a fifth of a core (shared with its workload), where
    # 1,000 Hz cannot be met.
    fleet: Fleet = module_fleet_factory(
        {
            "zlib": {"count": 1, "cpu": 1.0},
            "threads": {"count": 1, "cpu": 1.0},
            "tree": {"count": 1, "cpu": 1.0},
            "tiny": {"count": 1, "cpu": 0.2},
        }
    )
    for program in ("native_zlib.py", "named_threads.py", "process_tree.py"):
        deploy(fleet, PROGRAMS / program, f"truth/{program}")
    return fleet


def start(fleet: Fleet, host: str, program: str, seconds: int = 600) -> int:
    """The program on the host, for longer than any campaign here takes (each test stops
    it when done)."""
    return fleet.start_background(host, [PYTHON, f"/opt/truth/{program}", str(seconds), TRUTH])


def stop(fleet: Fleet, host: str, pid: int) -> None:
    fleet.run(host, ["sh", "-c", f"pkill -P {pid}; kill {pid}"])


def truth(fleet: Fleet, host: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(fleet.host(host).private_path(TRUTH)).read_text())
    return data


def campaign(tmp_path: Path, name: str, pattern: str, py_spy: str) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(
        f"name: {name}\nduration: {WINDOW_S}s\nstart: {{lead: 3s}}\n"
        f"target:\n  attach:\n    process: '{pattern}'\n"
        f"profilers:\n  py-spy: {py_spy}\n"
    )
    return path


def host_of(report: dict[str, Any], name: str) -> dict[str, Any]:
    hosts: list[dict[str, Any]] = [h for h in report["hosts"] if h["name"] == name]
    [host] = hosts
    assert host["status"] == "ok", host["reason"]
    return host


# -- py-spy run directly, read without fleetprof's parser -----------------------------------


def direct(fleet: Fleet, host: str, pid: int, *flags: str, rate: int = 97) -> Rows:
    """py-spy itself on the host for as long a window: its raw lines as (frames, count).
    When it ran (the host's clock is the controller's) is in ``WHEN[(host, pid)]``."""
    out = f"/tmp/direct-{pid}.folded"
    argv = [PYSPY, "record", "--pid", str(pid), "--duration", str(WINDOW_S), "--rate", str(rate)]
    started = time.time()
    result = fleet.run(host, [*argv, "--format", "raw", "--output", out, *flags], timeout=60)
    WHEN[(host, pid)] = (started, time.time())
    assert result.rc == 0, result.stdout + result.stderr
    return rows_of(Path(fleet.host(host).private_path(out)).read_text())


def rows_of(text: str) -> Rows:
    rows = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        rows.append((stack.split(";"), int(count)))
    return rows


def active_shares(fleet: Fleet, host: str, started: float, stopped: float) -> dict[str, float]:
    """Each thread's share of the time the kernel had the program's threads running or
    runnable in a window (their schedstat, which the program logs): what py-spy samples
    as active."""
    path = Path(fleet.host(host).private_path(TRUTH + ".jsonl"))
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    first = min(lines, key=lambda line: abs(line["t"] - started))
    last = min(lines, key=lambda line: abs(line["t"] - stopped))
    active = {n: last["active_s"][n] - first["active_s"][n] for n in last["active_s"]}
    return {n: 100.0 * seconds / sum(active.values()) for n, seconds in active.items()}


def pyspy_window(run_dir: Path, host: str) -> tuple[float, float]:
    manifest = json.loads((run_dir / f"hosts/{host}/session/manifest.json").read_text())
    entry = manifest["profilers"]["py-spy"]
    return float(entry["started_at_device"]), float(entry["stopped_at_device"])


def both_directly(*runs: Callable[[], Rows]) -> list[Rows]:
    """Run py-spy directly on two hosts at once (one window for both); its rows each."""
    found: list[Any] = [None] * len(runs)

    def run(at: int) -> None:
        try:
            found[at] = runs[at]()
        except BaseException as error:  # re-raised below, in the test's thread
            found[at] = error

    threads = [threading.Thread(target=run, args=(at,)) for at in range(len(runs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for item in found:
        if isinstance(item, BaseException):
            raise item
    return found


def direct_thread_shares(rows: Rows) -> dict[str, float]:
    by_name: Counter[str] = Counter()
    for frames, count in rows:
        [match] = [m for f in frames if f.startswith("thread (") and (m := THREAD.fullmatch(f))]
        by_name[match["name"] or match["tid"]] += count
    total = sum(by_name.values())
    return {name: 100.0 * n / total for name, n in by_name.items()}


def direct_library_share(rows: Rows, library: str) -> float:
    """The share of samples whose leaf is in ``library`` (``libz.so.1``: any libz.so.1.*)."""
    total = sum(count for _, count in rows)
    leaf = re.compile(rf".* \({re.escape(library)}(\.[0-9]+)*\)")
    inside = sum(count for frames, count in rows if leaf.fullmatch(frames[-1]))
    return 100.0 * inside / total


def direct_process_tops(rows: Rows) -> dict[int, str]:
    """Per pid (the innermost process frame), the function most often at the leaf."""
    leaves: dict[int, Counter[str]] = {}
    for frames, count in rows:
        pids = [int(m["pid"]) for f in frames if (m := PROCESS.fullmatch(f))]
        leaf = frames[-1].split(" (")[0]
        leaves.setdefault(pids[-1], Counter())[leaf] += count
    return {pid: counts.most_common(1)[0][0] for pid, counts in leaves.items()}


# -- the tests ---------------------------------------------------------------------------------


def zlib_share(fleet: Fleet, host: str, started: float, stopped: float) -> float:
    """The share of a window the program spent inside zlib.compress, from its own log."""
    path = Path(fleet.host(host).private_path(TRUTH + ".jsonl"))
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    first = min(lines, key=lambda line: abs(line["t"] - started))
    last = min(lines, key=lambda line: abs(line["t"] - stopped))
    inside = last["in_zlib_s"] - first["in_zlib_s"]
    return 100.0 * float(inside) / float(last["elapsed_s"] - first["elapsed_s"])


def test_native_zlib_is_one_row_with_its_true_share(
    fleet: Fleet, fleetprof: Any, tmp_path: Path
) -> None:
    pid = start(fleet, "zlib-1", "native_zlib.py")
    try:
        path = campaign(tmp_path, "native", "native_zlib\\.py", "{rate: 97, native: true}")
        result = fleetprof("run", str(path), "-i", str(fleet.inventory), "-l", "zlib-1")
        assert result.returncode == 0, result.stdout + result.stderr
        host = host_of(result.report("native"), "zlib-1")
        rows = direct(fleet, "zlib-1", pid, "--native", "--threads")
        expected = zlib_share(fleet, "zlib-1", *pyspy_window(result.run_dir("native"), "zlib-1"))
        expected_direct = zlib_share(fleet, "zlib-1", *WHEN[("zlib-1", pid)])
    finally:
        stop(fleet, "zlib-1", pid)
    [libz] = [r for r in host["tables"]["pyspy.native"] if r["library"].startswith("libz")]
    by_py_spy = direct_library_share(rows, libz["library"])
    print(
        f"zlib: truth {expected:.1f} %, fleetprof libz {libz['self_pct']:.1f} %; "
        f"direct: truth {expected_direct:.1f} %, py-spy {by_py_spy:.1f} %"
    )
    # py-spy itself finds somewhat less time in libz than the program measures (its native
    # unwinder loses some samples there: 44.6 % for a true 47.8 % in one CI run), and
    # fleetprof can be no truer than py-spy: its share is held to the truth of its own
    # window less the bias py-spy showed when run directly on the same process, and to
    # the truth itself within twice that tolerance.
    bias = expected_direct - by_py_spy
    context = (libz, expected, expected_direct, by_py_spy)
    assert abs(libz["self_pct"] - (expected - bias)) <= POINTS, context
    assert abs(libz["self_pct"] - expected) <= 2 * POINTS, context
    unresolved = [t for t in host["top_functions"] if t["function"].startswith("libz")]
    assert [t["function"] for t in unresolved] == [f"{libz['library']} (unresolved)"]
    assert not any(t["function"].startswith("0x") for t in host["top_functions"])
    assert host["metrics"]["pyspy.unresolved_pct"] >= unresolved[0]["self_pct"]


def test_named_threads_and_child_processes(fleet: Fleet, fleetprof: Any, tmp_path: Path) -> None:
    """Threads sampled at 199 Hz (about 2,000 samples: a share's sampling error under
    1.5 points) without pausing the program (nonblocking): py-spy's pauses wake every
    thread at every sample, which on a loaded machine shows sleeping threads as running
    (tests/fixtures/py-spy: the main thread, idle in join, at 3-5 %)."""
    threads_pid = start(fleet, "threads-1", "named_threads.py")
    tree_pid = start(fleet, "tree-1", "process_tree.py")
    try:
        path = campaign(
            tmp_path,
            "parts",
            "/opt/truth/[a-z_]+\\.py [0-9]+ /tmp/truth",  # parents only: children say 600.0
            "{rate: 199, subprocesses: true, nonblocking: true}",
        )
        limit = "threads-1,tree-1"
        result = fleetprof("run", str(path), "-i", str(fleet.inventory), "-l", limit)
        assert result.returncode == 0, result.stdout + result.stderr
        report = result.report("parts")
        found = both_directly(
            lambda: direct(fleet, "threads-1", threads_pid, "--threads", "--nonblocking", rate=199),
            lambda: direct(
                fleet, "tree-1", tree_pid, "--threads", "--subprocesses", "--nonblocking", rate=199
            ),
        )
        busy = truth(fleet, "threads-1")
        tree = truth(fleet, "tree-1")
        run_dir = result.run_dir("parts")
        expected = active_shares(fleet, "threads-1", *pyspy_window(run_dir, "threads-1"))
        expected_direct = active_shares(fleet, "threads-1", *WHEN[("threads-1", threads_pid)])
    finally:
        stop(fleet, "threads-1", threads_pid)
        stop(fleet, "tree-1", tree_pid)

    # Every thread named, each share within 5 points of the truth of its window and the
    # same as in py-spy's own file; py-spy run directly (its own window) for comparison.
    threads = {r["name"]: r for r in host_of(report, "threads-1")["tables"]["pyspy.threads"]}
    assert {"decode", "infer", "upload"} <= set(threads)
    assert all(name is not None for name in threads)
    by_py_spy = direct_thread_shares(found[0])
    collected = direct_thread_shares(
        rows_of((run_dir / "hosts/threads-1/session/py-spy.folded").read_text())
    )
    for name in ("decode", "infer", "upload"):
        share = threads[name]["share_pct"]
        direct_share = by_py_spy.get(name, 0.0)
        print(
            f"thread {name}: truth {expected[name]:.1f}, fleetprof {share:.1f}; "
            f"direct: truth {expected_direct[name]:.1f}, py-spy {direct_share:.1f}"
        )
        # Within 5 points of the truth; where py-spy run directly on the same program
        # misses its own window's truth by more (sampling bias of py-spy on a loaded
        # 2-core machine, seen up to 6.6 points), fleetprof may miss by as much, no more.
        allowed = max(POINTS, abs(direct_share - expected_direct[name]) + 1.0)
        assert abs(share - expected[name]) <= allowed, (name, share, expected, direct_share)
        assert share == pytest.approx(collected[name], abs=0.01)  # py-spy's own file
        assert threads[name]["tid"] == str(busy["native_ids"][name])
    # Idle samples dropped: no false "short of the rate" note.
    assert not [n for n in host_of(report, "threads-1")["data_quality"] if "short" in n]

    # Three processes, each child's top function right, as py-spy itself says.
    processes = {r["pid"]: r for r in host_of(report, "tree-1")["tables"]["pyspy.processes"]}
    assert set(processes) == {tree["parent"], *tree["children"].values()}
    tops = {pid: row["top_functions"][0]["function"] for pid, row in processes.items()}
    assert tops[tree["children"]["hash"]] == "hash_blocks"
    assert tops[tree["children"]["sort"]] == "sort_numbers"
    assert tops[tree["parent"]] == "encode_records"
    direct_tops = direct_process_tops(found[1])
    print(f"processes: fleetprof {tops}, py-spy {direct_tops}")
    assert direct_tops == tops
    # By command line: the tree's three processes, and the threaded program's one.
    commands = report["processes"]
    assert len(commands) == 4
    ends = sorted(c["command"].rsplit(" ", 1)[-1] for c in commands if c["hosts"] == ["tree-1"])
    assert ends == ["/tmp/truth.json", "hash", "sort"]
    [hashing] = [c for c in commands if c["command"].endswith(" hash")]
    assert hashing["top_functions"][0]["function"] == "hash_blocks"
    assert [c["hosts"] for c in commands if "named_threads" in c["command"]] == [["threads-1"]]
    # The per-process exports.
    host_dir = result.run_dir("parts") / "hosts" / "tree-1"
    for pid in processes:
        assert (host_dir / f"profile.pid-{pid}.folded").stat().st_size > 0
    speedscope = json.loads((host_dir / "profile.speedscope.json").read_text())
    assert len(speedscope["profiles"]) == 4


def test_the_rate_is_per_tick_and_flagged_when_it_cannot_be_met(
    fleet: Fleet, fleetprof: Any, tmp_path: Path
) -> None:
    pids = {host: start(fleet, host, "named_threads.py") for host in ("threads-1", "tiny-1")}
    try:
        steady = campaign(tmp_path, "steady", "named_threads\\.py", "{rate: 97, idle: true}")
        fast = campaign(tmp_path, "fast", "named_threads\\.py", "{rate: 1000, idle: true}")
        # The two campaigns on their two hosts at once (CI time): each host is its own.
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = [
                pool.submit(fleetprof, "run", str(path), "-i", str(fleet.inventory), "-l", host)
                for path, host in ((steady, "threads-1"), (fast, "tiny-1"))
            ]
            result, flagged = (run.result() for run in runs)
        assert result.returncode == 0, result.stdout + result.stderr
        host = host_of(result.report("steady"), "threads-1")
    finally:
        for name, pid in pids.items():
            stop(fleet, name, pid)
    # A fifth of a core at 1,000 Hz: short, and said so.
    tiny = next(h for h in flagged.report("fast")["hosts"] if h["name"] == "tiny-1")
    print(f"tiny: effective {tiny['metrics'].get('pyspy.effective_rate_hz')} Hz of 1000")
    assert tiny["metrics"]["pyspy.effective_rate_hz"] < 800
    assert any("short of the 1000 Hz" in note for note in tiny["data_quality"]), tiny
    # Four threads at 97 Hz: four samples per tick, the rate the ticks'.
    rate = host["metrics"]["pyspy.effective_rate_hz"]
    samples = host["metrics"]["pyspy.samples"]
    print(f"steady: {samples:.0f} samples, effective {rate} Hz of 97, {host['data_quality']}")
    if abs(rate - 97) > 0.05 * 97 and host["metrics"]["pyspy.behind_warnings"]:
        # The machine (shared, two cores) left py-spy too little CPU even for 97 Hz: it
        # said so, and so must the report.
        assert any("fell behind in sampling" in note for note in host["data_quality"]), host
        pytest.skip(f"py-spy fell behind at 97 Hz on this loaded machine ({rate} Hz)")
    assert abs(rate - 97) <= 0.05 * 97, rate
    assert samples >= 3.5 * rate * (WINDOW_S - 1)  # about four threads' worth
    assert not [n for n in host["data_quality"] if "short" in n]
