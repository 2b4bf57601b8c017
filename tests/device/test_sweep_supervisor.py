"""The sweep supervisor's own rules (Python 3.8 syntax): the value goes into the arguments
and the environment; a run still going at its slot's end is stopped and recorded; told to
stop, it stops the current run at once and records the values it never ran."""

import json
import os
import sys
import threading
import time

from fleetprof_device.sweep import Supervisor, argv_for

SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(os.environ['N']); time.sleep(30)"


def test_the_value_replaces_its_mark_in_every_argument():
    assert argv_for(["prog", "--batch={N}", "{N}", "{M}"], "N", "8") == [
        "prog",
        "--batch=8",
        "8",
        "{M}",
    ]


def config(tmp_path, values, slot):
    return {
        "workdir": str(tmp_path),
        "command": [sys.executable, "-c", SLEEPER, str(tmp_path / "seen.{N}")],
        "cwd": str(tmp_path),
        "variable": "N",
        "values": values,
        "slot_s": slot,
        "t0": time.time(),
        "deadline": time.time() + slot * len(values),
    }


def test_a_run_going_at_its_slot_end_is_stopped_and_the_next_starts(tmp_path):
    supervisor = Supervisor(config(tmp_path, ["1", "2"], 0.6))
    assert supervisor.run() == 0
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["value"] for r in record["runs"]] == ["1", "2"]
    for run in record["runs"]:
        assert run["status"] == "ok" and run["ended_by"] == "slot end"
        assert run["signals_sent"][0] == "SIGINT(group)"
    assert (tmp_path / "seen.1").read_text() == "1" and (tmp_path / "seen.2").read_text() == "2"


def test_told_to_stop_it_ends_the_run_and_records_what_never_ran(tmp_path):
    supervisor = Supervisor(config(tmp_path, ["1", "2", "3"], 5.0))
    timer = threading.Timer(0.5, lambda: supervisor._on_signal(15, None))
    timer.start()
    began = time.time()
    supervisor.run()
    assert time.time() - began < 4.0
    runs = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert runs[0]["ended_by"] == "stopped"
    assert [r["status"] for r in runs[1:]] == ["not-run", "not-run"]
    assert not os.path.exists(str(tmp_path / "seen.2"))
