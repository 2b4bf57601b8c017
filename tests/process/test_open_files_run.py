"""The open-files sampler run by the real device runner on a real program that leaks
descriptors at a known rate: it listens on a TCP socket, holds a pipe, then opens a file
every 0.1 s (on an absolute schedule, so the rate does not drift) and keeps each one. It
writes what it did (opens, their first and last times) after every open: the truth."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tarfile
from typing import Any

import pytest

from orchestrator.profilers import open_files
from tests.support.factories import campaign, host_facts
from tests.support.session import make_plan, run_module

STEP_S = 0.1
CONFIG_OPENS = 4  # one file held open this many times: the most-opened path
LEAKER = f"""\
import json
import os
import socket
import sys
import time

truth_path, leak_dir = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.bind(("127.0.0.1", 0))
server.listen(5)
reader, writer = os.pipe()
config = [open(truth_path + ".config", "w") for _ in range({CONFIG_OPENS})]
kept = []
times = []
start = time.time()
while True:
    now = time.time()
    kept.append(open(os.path.join(leak_dir, "leak-%d" % len(kept)), "w"))
    times.append(now)
    truth = {{"times": times, "port": server.getsockname()[1]}}
    with open(truth_path + ".tmp", "w") as out:
        json.dump(truth, out)
    os.replace(truth_path + ".tmp", truth_path)
    time.sleep(max(0.0, start + len(kept) * {STEP_S} - time.time()))
"""


@pytest.fixture(scope="module")
def leaked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("open-files")
    (tmp_path / "leaks").mkdir()
    script = tmp_path / "leaker.py"
    script.write_text(LEAKER)
    chosen = campaign(
        target={"attach": {"process": "leaker"}},
        profilers={"open-files": {"interval": "250ms", "top_paths": 5}},
    )
    planned = open_files.plan(chosen, host_facts(), None)
    plan = make_plan(tmp_path, {}, [dataclasses.asdict(planned)], lead=1.0, window=4.0)
    truth_path = tmp_path / "truth.json"
    command = [sys.executable, str(script), str(truth_path), str(tmp_path / "leaks")]
    quiet = subprocess.DEVNULL  # stdin, stdout, stderr: /dev/null three times
    program = subprocess.Popen(command, cwd=tmp_path, stdin=quiet, stdout=quiet, stderr=quiet)
    try:
        plan["target"]["pid"] = program.pid
        run = run_module(tmp_path, plan)
        truth = json.loads(truth_path.read_text())
    finally:
        program.kill()
        program.wait()
    assert run.result["status"] == "ok", run.result["reason"]
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    entry = run.manifest["profilers"]["open-files"]
    samples = [json.loads(line) for line in (session / "open_files.jsonl").read_text().splitlines()]
    return {
        "entry": entry,
        "result": open_files.parse(session, entry, chosen),
        "samples": samples,
        "truth": truth,
        "leaks": str(tmp_path / "leaks"),
        "config": str(truth_path) + ".config",
    }


def test_the_sampler_ran_the_window_at_its_interval(leaked):
    entry = leaked["entry"]
    assert (entry["status"], entry["builtin"]) == ("ok", "open-files")
    quality = entry["data_quality"]
    assert 15 <= quality["samples"] <= 18, quality
    assert quality["open_files"]["cut_samples"] == 0


def test_the_leak_is_flagged_and_its_rate_is_the_programs_own(leaked):
    truth = leaked["truth"]
    times = truth["times"]
    rate = 60.0 * (len(times) - 1) / (times[-1] - times[0])
    assert abs(rate - 60.0 / STEP_S) < 0.05 * rate  # the program kept its schedule
    metrics = leaked["result"].metrics
    growth = metrics["fds.growth_per_min"]
    assert abs(growth - rate) <= 0.10 * rate, (growth, rate)
    assert metrics["fds.leak"] == 1.0 and metrics["fds.growth_r2"] > 0.95
    assert any("likely descriptor leak" in note for note in leaked["result"].data_quality)


def test_kinds_sockets_and_paths_are_what_the_program_holds(leaked):
    last = leaked["samples"][-1]
    kinds = last["kinds"]
    # The listening socket; the pipe's two ends; stdin, stdout and stderr on /dev/null.
    assert (kinds["socket"], kinds["pipe"], kinds["device"]) == (1, 2, 3)
    assert kinds["anon_inode"] == kinds["other"] == 0
    assert last["total"] == sum(kinds.values()) and last["procs"] == 1
    # The config file's handles and the files leaked by the time of the last sample (one
    # more or less where an open and the sample's read met).
    leaked_then = kinds["file"] - CONFIG_OPENS
    opened = sum(1 for t in leaked["truth"]["times"] if t <= last["t"])
    assert abs(leaked_then - opened) <= 1, (leaked_then, opened)
    assert last["paths"][:2] == [[leaked["config"], CONFIG_OPENS], ["/dev/null", 3]]
    # top_paths: 5; then the leaked files, each open once, by name.
    assert all(path.startswith(leaked["leaks"]) and n == 1 for path, n in last["paths"][2:])
    assert len(last["paths"]) == 5 and last["distinct_paths"] == 2 + leaked_then
    assert last["sockets"] == {"tcp": {"LISTEN": 1}} and last["sockets_other"] == 0
    assert last["listening"] == [f"tcp 127.0.0.1:{leaked['truth']['port']}"]
    result = leaked["result"]
    assert result.metrics["fds.tcp.listen"] == 1.0 and result.metrics["fds.socket_peak"] == 1.0
    assert result.metrics["fds.total_peak"] == last["total"]
    assert result.tables["open_files.sockets"] == [
        {"protocol": "tcp", "state": "LISTEN", "peak": 1.0, "last": 1.0}
    ]
    paths = result.tables["open_files.paths"]
    assert len(paths) == 5
    assert paths[0] == {"path": leaked["config"], "peak": 4.0, "last": 4.0}
    assert result.series["fds.total"][-1] == last["total"]


PARENT = """\
import subprocess
import sys
import time

# A child holding three files and a UDP socket; the parent itself holds one more file.
CHILD = (
    "import socket, sys, time\\n"
    "files = [open(sys.argv[1], 'w') for _ in range(3)]\\n"
    "udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\\n"
    "udp.bind(('127.0.0.1', 0))\\n"
    "time.sleep(60)\\n"
)
mine = open(sys.argv[1] + ".parent", "w")
child = subprocess.Popen([sys.executable, "-c", CHILD, sys.argv[1] + ".child"])
try:
    time.sleep(60)
finally:
    child.kill()
"""


def test_a_launched_program_and_its_child_are_both_counted(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    base = tmp_path / "held"
    command = [sys.executable, str(script), str(base)]
    chosen = campaign(
        target={"launch": {"command": command}},
        profilers={"open-files": {"interval": "250ms"}},
    )
    planned = open_files.plan(chosen, host_facts(), None)
    plan = make_plan(
        tmp_path, {"mode": "launch", "command": command}, [dataclasses.asdict(planned)], window=2.0
    )

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    samples = [json.loads(line) for line in run.read("open_files.jsonl").splitlines()]
    last = samples[-1]
    assert last["procs"] == 2 and len(last["members"]) == 2
    paths = dict((path, n) for path, n in last["paths"])
    assert paths[f"{base}.child"] == 3 and paths[f"{base}.parent"] == 1
    assert last["sockets"] == {"udp": {"UNCONNECTED": 1}}
    assert last["listening"][0].startswith("udp 127.0.0.1:")
