"""py-spy's parser against real py-spy output of programs whose truth is known.

Each fixture was recorded here with py-spy 0.4.3 on one of the programs in
tests/fixtures/py-spy/programs/ (tests/fixtures/SOURCES.md says how); each program
measured its own truth while it ran (``*.truth.json``): the share of its time in zlib, the
wall time each named thread spent busy, the pids of its processes. The time py-spy ran is
in ``recordings.json``, as the device runner would have measured it.
"""

from __future__ import annotations

import json
import shutil
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device import pyspy_output
from orchestrator.analysis.breakdown import processes_by_command
from orchestrator.analysis.stacks import parse_folded, read_folded
from orchestrator.campaign import Campaign
from orchestrator.profilers import pyspy
from orchestrator.profilers.base import ProfileResult
from orchestrator.report.exports import FOLDED_FILE, SPEEDSCOPE_FILE, write_exports
from orchestrator.runs import RunDir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "py-spy"
RECORDINGS = json.loads((FIXTURES / "recordings.json").read_text())
POINTS = 5.0  # the tolerance, in percentage points


def truth(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.truth.json").read_text()))


def parse(tmp_path: Path, name: str, ran_s: float | None = None, **spec: Any) -> ProfileResult:
    """pyspy.parse on a recording, as the controller parses a host's session directory
    (``ran_s``: another time py-spy ran than the recording's)."""
    recording = dict(RECORDINGS[name])
    if ran_s is not None:
        recording["ran_s"] = ran_s
    flags = recording["flags"]
    settings = {
        "rate": int(flags[flags.index("--rate") + 1]),
        "native": "--native" in flags,
        "idle": "--idle" in flags,
        "subprocesses": "--subprocesses" in flags,
        "nonblocking": "--nonblocking" in flags,
        **spec,
    }
    campaign = Campaign.from_mapping(
        {
            "name": "truth",
            "duration": recording["duration"],
            "target": {"attach": {"pid": 1}},
            "profilers": {"py-spy": settings},
        }
    )
    session = tmp_path / name
    session.mkdir()
    shutil.copy(FIXTURES / f"{name}.folded.txt", session / pyspy.OUTPUT)
    # The manifest entry the device runner writes: its argv, when py-spy ran, and what
    # py-spy said on stdout as the runner reads it.
    argv = ["py-spy", "record", "--pid", "1", "--duration", str(recording["duration"]), *flags]
    stdout = FIXTURES / f"{name}.stdout.txt"
    entry = {
        "status": "ok",
        "argv": argv,
        "started_at_device": 1000.0,
        "stopped_at_device": 1000.0 + recording["ran_s"],
        "data_quality": runner().sampling_quality([str(stdout)], argv, recording["ran_s"]),
    }
    return pyspy.parse(session, entry, campaign)


def runner() -> Any:
    """The device side's reading of py-spy's output (stdlib only)."""
    return pyspy_output


def walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    nodes, pending = [], [node]
    while pending:
        current = pending.pop()
        nodes.append(current)
        pending.extend(current["children"])
    return nodes


# -- native frames ---------------------------------------------------------------------------


def zlib_share(name: str, started: float, stopped: float) -> float:
    """The share of a window the program spent inside zlib.compress, from its own log."""
    lines = [json.loads(line) for line in (FIXTURES / f"{name}.truth.jsonl").open()]
    first = min(lines, key=lambda line: abs(line["t"] - started))
    last = min(lines, key=lambda line: abs(line["t"] - stopped))
    inside = last["in_zlib_s"] - first["in_zlib_s"]
    return 100.0 * float(inside) / float(last["elapsed_s"] - first["elapsed_s"])


def test_a_native_library_is_one_row_with_its_true_share(tmp_path: Path) -> None:
    """zlib compressing for a measured share of the time: libz's self share is within 5
    points of that share, as one row; no address is a function of its own."""
    name = "zlib-native.threads"
    result = parse(tmp_path, name)
    recording = RECORDINGS[name]
    expected = zlib_share(name, recording["started"], recording["stopped"])  # 47.1
    [libz] = [row for row in result.tables["pyspy.native"] if row["library"].startswith("libz")]
    assert abs(libz["self_pct"] - expected) <= POINTS, (libz, expected)
    functions = [row["function"] for row in result.top_functions]
    assert not [f for f in functions if f.startswith("0x")]
    unresolved = [row for row in result.top_functions if row["function"].endswith("(unresolved)")]
    assert [row["function"] for row in unresolved if "libz" in row["function"]] == [
        "libz.so.1 (unresolved)"
    ]
    # The biggest part of libz's cost is that one unresolved row.
    libz_row = next(r for r in unresolved if "libz" in r["function"])
    assert libz_row["self_pct"] >= 0.8 * libz["self_pct"]
    # The share of the host's time py-spy could not name, and what it adds up from.
    metrics = result.metrics
    assert metrics["pyspy.unresolved_pct"] == pytest.approx(
        sum(r["unresolved_pct"] for r in result.tables["pyspy.native"]), abs=0.05
    )
    assert metrics["pyspy.unresolved_pct"] >= libz_row["self_pct"]
    assert metrics["pyspy.native_pct"] >= metrics["pyspy.unresolved_pct"]


def test_flame_graph_nodes_say_python_or_native(tmp_path: Path) -> None:
    result = parse(tmp_path, "zlib-native.threads")
    assert result.flamegraph is not None
    kinds = {(n["name"], n["kind"]) for n in walk(result.flamegraph) if n["name"] != "all"}
    assert ("libz.so.1 (unresolved)", "native") in kinds
    assert ("compress_block", "python") in kinds
    assert ("python_work", "python") in kinds
    # One box per library under compress_block, not one per address.
    compress = [n for n in walk(result.flamegraph) if n["name"] == "compress_block"]
    assert compress
    for node in compress:
        names = [child["name"] for child in node["children"]]
        assert len(names) == len(set(names))


def test_folding_keeps_every_sample(tmp_path: Path) -> None:
    path = FIXTURES / "zlib-native.threads.folded.txt"
    profile = read_folded(path)
    counts = [int(line.rsplit(" ", 1)[1]) for line in path.read_text().splitlines() if line]
    assert profile.total_samples == sum(counts) == sum(profile.stacks.values())
    assert len(profile.stacks) < len(counts)  # addresses of one library merged
    for stack in profile.stacks:
        texts = [frame.function for frame in stack]
        assert not any(t.startswith("0x") for t in texts)
        # A run of one library's unresolved code is one frame.
        assert all(a != b for a, b in pairwise(texts) if "(unresolved)" in a)


# -- threads ---------------------------------------------------------------------------------


def active_shares(name: str, started: float, stopped: float) -> dict[str, float]:
    """Each thread's share of the time the kernel had the program's threads running or
    runnable between two moments (its schedstat, as the program logged it): what py-spy
    calls active."""
    lines = [json.loads(line) for line in (FIXTURES / f"{name}.truth.jsonl").open()]
    first = min(lines, key=lambda line: abs(line["t"] - started))
    last = min(lines, key=lambda line: abs(line["t"] - stopped))
    active = {n: last["active_s"][n] - first["active_s"][n] for n in last["active_s"]}
    return {n: 100.0 * seconds / sum(active.values()) for n, seconds in active.items()}


def test_every_thread_is_named_with_its_true_share(tmp_path: Path) -> None:
    """Three named workers, each busy in its own slot of every 150 ms (25, 50 and 75 ms);
    the main thread only joins them. Sampled at 199 Hz without pausing the program
    (nonblocking): py-spy's pauses wake every thread at every sample, which on a loaded
    machine shows sleeping threads as running (the main thread at 3-5 %)."""
    name = "named-threads.threads"
    result = parse(tmp_path, name)
    known = truth(name)
    recording = RECORDINGS[name]
    expected = active_shares(name, recording["started"], recording["stopped"])
    rows = {row["name"]: row for row in result.tables["pyspy.threads"]}
    assert set(rows) == {"decode", "infer", "upload"}  # the main thread never ran
    assert expected["MainThread"] < 0.5
    for thread in ("decode", "infer", "upload"):
        share = rows[thread]["share_pct"]
        assert abs(share - expected[thread]) <= POINTS, (thread, share, expected)
        assert rows[thread]["tid"] == str(known["native_ids"][thread])
        assert rows[thread]["flamegraph"]["value"] == rows[thread]["samples"]
    # And near the slots' own shares, 1/6, 1/3 and 1/2.
    for thread, share in (("decode", 100 / 6), ("infer", 100 / 3), ("upload", 50.0)):
        assert abs(rows[thread]["share_pct"] - share) <= POINTS, (thread, rows[thread])
    assert sum(row["samples"] for row in rows.values()) == result.metrics["pyspy.samples"]
    # Busiest first.
    assert [row["name"] for row in result.tables["pyspy.threads"]] == ["upload", "infer", "decode"]


def test_a_thread_py_spy_named_once_keeps_its_name() -> None:
    profile = read_folded(FIXTURES / "zlib-native.threads.folded.txt")
    named = parse_folded(
        "thread (77): worker;run (w.py:3) 4\n"
        "thread (77);run (w.py:3) 6\n"
        "thread (78);idle (w.py:9) 1\n"
    )
    assert [(p.tid, p.name, p.samples) for p in named.parts] == [
        ("77", "worker", 10),
        ("78", None, 1),
    ]
    assert named.threads == ["worker", "78"]
    # py-spy --native on Debian's Python never read the name: the id stands in.
    assert [(p.name, p.samples) for p in profile.parts] == [(None, 581)]


def test_the_rate_is_per_tick_and_exact_with_idle_samples(tmp_path: Path) -> None:
    """Four threads at 97 Hz with idle: true make four samples per tick: the rate is the
    ticks', within 5% of the requested, and no note is raised."""
    result = parse(tmp_path, "named-threads.threads-idle")
    assert result.metrics["pyspy.samples"] == 4 * 581
    rate = result.metrics["pyspy.effective_rate_hz"]
    assert abs(rate - 97) <= 0.05 * 97, rate
    assert not [note for note in result.data_quality if "short" in note]


def ticks_in(name: str) -> int:
    """The busiest thread's samples, counted from the file without fleetprof's parser."""
    per_thread: dict[str, int] = {}
    for line in (FIXTURES / f"{name}.folded.txt").read_text().splitlines():
        thread = line.split(";")[0].rsplit(" ", 1)[0] if ";" in line else line.rsplit(" ", 1)[0]
        tid = thread.split(")")[0]
        per_thread[tid] = per_thread.get(tid, 0) + int(line.rsplit(" ", 1)[1])
    return max(per_thread.values())


def test_a_rate_that_cannot_be_met_is_flagged(tmp_path: Path) -> None:
    """1,000 Hz over four threads from a py-spy held to 0.1 of a core (a cgroup quota, as
    on a small board): it managed about 260 ticks a second, and said it was behind."""
    name = "named-threads.behind-0.1core"
    result = parse(tmp_path, name)
    rate = result.metrics["pyspy.effective_rate_hz"]
    ticks = ticks_in(name)
    assert rate == pytest.approx(ticks / RECORDINGS[name]["ran_s"], abs=0.01)
    assert rate < 0.5 * 1000
    assert any("short of the 1000 Hz" in note for note in result.data_quality)
    assert any("fell behind in sampling 10 times (up to 7.84 s)" in n for n in result.data_quality)


def test_the_runner_counts_py_spy_falling_behind_in_its_own_words() -> None:
    """The device runner's reading of py-spy's stdout, on the same recording."""
    stdout = FIXTURES / "named-threads.behind-0.1core.stdout.txt"
    argv = ["py-spy", "record", "--pid", "1", "--rate", "1000", "--duration", "6"]
    quality = runner().sampling_quality([str(stdout)], argv, 11.231)
    assert quality["behind_warnings"] == 10
    assert quality["max_lag_s"] == 7.84
    assert quality["samples"] == 11484  # thread samples: no rate is made of them
    assert "effective_rate_hz" not in quality
    assert quality["target_exited"] is True
    calm = runner().sampling_quality(
        [str(FIXTURES / "named-threads.threads-idle.stdout.txt")], argv, 5.9
    )
    assert calm["behind_warnings"] == 0 and "target_exited" not in calm


def test_the_time_before_the_first_tick_is_not_sampling_time(tmp_path: Path) -> None:
    """py-spy that did all its ticks but ran longer than its --duration (it took a second
    to attach on a loaded board) sampled at the rate: the window is its --duration."""
    result = parse(tmp_path, "named-threads.threads-idle", ran_s=7.2)
    assert result.metrics["pyspy.effective_rate_hz"] == pytest.approx(581 / 6, abs=0.01)
    assert not [n for n in result.data_quality if "short" in n]


def test_dropped_idle_samples_raise_no_false_short_note(tmp_path: Path) -> None:
    """Without idle: true the workers' idle ticks are not in the file: the per-tick count
    is a lower bound (about 100 of 199 Hz here: one worker at a time is busy) and py-spy
    did not fall behind: no note."""
    result = parse(tmp_path, "named-threads.threads")
    assert result.metrics["pyspy.effective_rate_hz"] < 0.8 * 199
    assert result.data_quality == []


# -- processes -------------------------------------------------------------------------------


def test_a_parent_and_two_children_are_three_profiles(tmp_path: Path) -> None:
    result = parse(tmp_path, "process-tree.subprocesses")
    known = truth("process-tree.subprocesses")
    rows = {row["pid"]: row for row in result.tables["pyspy.processes"]}
    assert set(rows) == {known["parent"], *known["children"].values()}
    top = {pid: row["top_functions"][0]["function"] for pid, row in rows.items()}
    assert top[known["parent"]] == "encode_records"
    assert top[known["children"]["hash"]] == "hash_blocks"
    assert top[known["children"]["sort"]] == "sort_numbers"
    for role, pid in known["children"].items():
        assert rows[pid]["parent_pid"] == known["parent"]
        assert rows[pid]["command"].endswith(f"process_tree.py 9.0 {role}")
        assert rows[pid]["flamegraph"]["value"] == rows[pid]["samples"]
    assert sum(row["samples"] for row in rows.values()) == result.metrics["pyspy.samples"]
    # The host's own top functions are still the whole host's.
    assert result.top_functions[0]["function"] == "hash_blocks"


def test_processes_merge_by_command_line_across_hosts() -> None:
    path = FIXTURES / "process-tree.subprocesses.folded.txt"
    a, b = read_folded(path), read_folded(path)
    rows = processes_by_command({"edge-1": a, "edge-2": b})
    assert len(rows) == 3
    for row in rows:
        assert row["hosts"] == ["edge-1", "edge-2"]
        assert row["processes"] == 2
    hashing = next(row for row in rows if row["command"].endswith(" hash"))
    assert hashing["top_functions"][0]["function"] == "hash_blocks"
    assert hashing["samples"] == 2 * 581
    assert sum(row["share_pct"] for row in rows) == pytest.approx(100.0, abs=0.05)
    # Without process frames there is nothing to merge.
    assert processes_by_command({"x": read_folded(FIXTURES / "io-writer.folded.txt")}) == []


def test_each_process_is_exported_on_its_own(tmp_path: Path) -> None:
    """speedscope: the host first, then one profile per process; one folded file each."""
    run = RunDir.create(tmp_path / "reports", "camp", "20260101-000000-abcd")
    session = run.session_dir("edge-1")
    session.mkdir(parents=True)
    shutil.copy(FIXTURES / "process-tree.subprocesses.folded.txt", session / pyspy.OUTPUT)
    known = truth("process-tree.subprocesses")
    pids = sorted([known["parent"], *known["children"].values()])

    written = write_exports(run)

    host_dir = run.host_dir("edge-1")
    assert sorted(p.name for p in written) == sorted(
        [SPEEDSCOPE_FILE, FOLDED_FILE, *(f"profile.pid-{pid}.folded" for pid in pids)]
    )
    document = json.loads((host_dir / SPEEDSCOPE_FILE).read_text())
    host, *processes = document["profiles"]
    assert [p["name"].split(":")[0] for p in processes] == [str(pid) for pid in pids]
    assert sum(host["weights"]) == sum(sum(p["weights"]) for p in processes) == 1256
    frames = document["shared"]["frames"]
    hashing = processes[pids.index(known["children"]["hash"])]
    heaviest = hashing["samples"][hashing["weights"].index(max(hashing["weights"]))]
    assert frames[heaviest[-1]]["name"] == "hash_blocks"
    sort_folded = (host_dir / f"profile.pid-{known['children']['sort']}.folded").read_text()
    assert "sort_numbers" in sort_folded and "hash_blocks" not in sort_folded
    # A rebuild from a profile without processes leaves no stale per-process file.
    shutil.copy(FIXTURES / "io-writer.folded.txt", session / pyspy.OUTPUT)
    write_exports(run)
    assert not list(host_dir.glob("profile.pid-*.folded"))
