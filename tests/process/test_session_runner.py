"""The device-side session runner, run the way Ansible runs it: ``python3 MODULE ARGS_FILE``.

Everything is real: a small Python workload that spends its time in ``spin_a`` and
``spin_b``, real py-spy attaching to it or launching it, real signals, real process
groups. The runner must always answer with one JSON object, always leave a manifest and
an archive behind once the plan was valid, and never leave a process it started running
past deadline + grace.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from fleetprof_device import procread
from tests.support.runner import SESSION_MODULE as MODULE
from tests.support.session import (
    Run,
    args_file,
    builtin_profiler,
    load_runner,
    make_plan,
    pid_alive,
    processes_running,
    pyspy_profiler,
    python_profiler,
    run_module,
    wait_for,
)

# A profiler that ignores SIGINT and SIGTERM and leaves a grandchild behind: only
# SIGKILL to its whole process group stops it.
HUNG_PROFILER = """\
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "1000"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(1000)
"""


# --------------------------------------------------------------------------- helpers


WRITES_OUTPUT = "import sys, time; open('out.txt', 'w').write('data\\n'); time.sleep(0.2)"


def assert_profiled_workload(run: Run) -> None:
    folded = run.read("py-spy.folded")
    assert "spin_a" in folded
    assert "spin_b" in folded


# --------------------------------------------------------------------------- attach


def test_attach_by_regex_profiles_the_one_matching_process(tmp_path, fleet, py_spy):
    workload = fleet.start()
    plan = make_plan(tmp_path, {"process": fleet.regex}, [pyspy_profiler(py_spy, 1.0)], window=1.0)

    run = run_module(tmp_path, plan)

    assert run.returncode == 0
    assert run.result["changed"] is True
    assert run.result["failed"] is False
    assert (run.result["status"], run.result["reason"]) == ("ok", None)
    assert run.result["archive"] == plan["archive"]
    manifest = run.manifest
    assert manifest["schema"] == "fleetprof.manifest/1"
    assert (manifest["campaign"], manifest["run_id"], manifest["host"]) == (
        "unit",
        plan["run_id"],
        "localhost",
    )
    assert manifest["target"]["pid"] == workload.pid
    assert manifest["target"]["cmdline"] == fleet.command
    profiler = manifest["profilers"]["py-spy"]
    assert profiler["status"] == "ok"
    assert profiler["exit_code"] == 0
    assert str(workload.pid) in profiler["argv"]
    assert profiler["outputs"]["py-spy.folded"]["truncated"] is False
    assert profiler["outputs"]["py-spy.folded"]["bytes"] > 0
    # T0 was honoured, and controller times are device times minus the clock offset.
    assert manifest["started_at_device"] >= plan["t0_device"]
    assert manifest["late_by_s"] < 0.5
    assert profiler["started_at_controller"] == pytest.approx(profiler["started_at_device"] - 0.25)
    assert profiler["stopped_at_device"] > profiler["started_at_device"]
    assert profiler["data_quality"]["samples"] > 0
    # The archive is flat, manifest.json first, and its manifest is the returned one.
    members = run.members()
    assert members[0] == "manifest.json"
    assert {"py-spy.folded", "py-spy.stdout", "py-spy.stderr", "runner.log"} <= set(members)
    assert all("/" not in name for name in members)
    assert json.loads(run.read("manifest.json")) == manifest
    assert_profiled_workload(run)
    assert stat.S_IMODE(os.stat(plan["workdir"]).st_mode) == 0o700
    assert workload.poll() is None, "attach mode never touches the target"


@pytest.mark.parametrize("how", ["pid", "pidfile"])
def test_attach_by_pid_or_pidfile(tmp_path, fleet, py_spy, how):
    workload = fleet.start()
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{workload.pid}\n")
    selector = {"pid": workload.pid} if how == "pid" else {"pidfile": str(pidfile)}
    plan = make_plan(tmp_path, selector, [pyspy_profiler(py_spy, 1.0)], window=1.0)

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    assert run.manifest["target"]["pid"] == workload.pid
    assert run.manifest["target"]["cmdline"] == fleet.command
    assert_profiled_workload(run)


def test_no_matching_process_fails_the_session_not_the_module(tmp_path):
    canary = tmp_path / "canary"
    canary.write_text("still here")
    regex = f"foo; rm -rf {canary} $(id) `id` | true"
    plan = make_plan(
        tmp_path, {"process": regex}, [python_profiler("p", WRITES_OUTPUT, outputs=["out.txt"])]
    )

    run = run_module(tmp_path, plan)

    assert run.returncode == 0
    assert run.result["failed"] is False
    assert run.result["status"] == "failed"
    assert run.result["reason"] == f"no process matches '{regex}'"
    assert run.manifest["profilers"]["p"]["status"] == "failed"
    assert canary.read_text() == "still here"
    assert run.members()[0] == "manifest.json"
    assert "runner.log" in run.members()
    assert run.elapsed < 2.0, "a missing target is known before T0 + anything"


def test_the_runner_its_ancestors_and_kernel_threads_are_never_the_target(tmp_path):
    marker = f"marker-{uuid.uuid4().hex}"
    profiler = python_profiler("p", WRITES_OUTPUT, outputs=["out.txt"])
    for regex in (marker, "^$"):
        plan = make_plan(tmp_path, {"process": regex}, [profiler])
        args = args_file(tmp_path, {"plan": plan})
        # A parent whose command line holds the marker, as async_wrapper's holds the module.
        parent = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[2:]))"
        done = subprocess.run(
            [sys.executable, "-c", parent, marker, sys.executable, str(MODULE), str(args)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert json.loads(done.stdout)["reason"] == f"no process matches '{regex}'"


def test_several_matching_processes_are_named_in_the_reason(tmp_path, fleet):
    first, second = fleet.start(), fleet.start()
    plan = make_plan(
        tmp_path,
        {"process": fleet.regex},
        [python_profiler("p", WRITES_OUTPUT, outputs=["out.txt"])],
    )

    run = run_module(tmp_path, plan)

    assert run.result["failed"] is False
    assert run.result["status"] == "failed"
    reason = run.result["reason"]
    assert reason.startswith(f"2 processes match '{fleet.regex}'")
    assert f"pid {first.pid}: " in reason
    assert f"pid {second.pid}: " in reason
    assert fleet.script.name in reason
    assert os.path.exists(plan["archive"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "pidfile {pidfile} does not exist"),
        ("not-a-pid\n", "pidfile {pidfile} does not hold a pid: 'not-a-pid'"),
        ("{dead}\n", "pid {dead} from pidfile {pidfile} is not running"),
    ],
    ids=["missing", "garbage", "dead-pid"],
)
def test_pidfile_problems_are_told_plainly(tmp_path, content, expected):
    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile = tmp_path / "app.pid"
    if content is not None:
        pidfile.write_text(content.format(dead=dead.pid))
    plan = make_plan(
        tmp_path,
        {"pidfile": str(pidfile)},
        [python_profiler("p", WRITES_OUTPUT, outputs=["out.txt"])],
    )

    run = run_module(tmp_path, plan)

    assert run.result["failed"] is False
    assert run.result["status"] == "failed"
    assert run.result["reason"] == expected.format(pidfile=pidfile, dead=dead.pid)


# --------------------------------------------------------------------------- launch


def test_launch_starts_the_command_at_t0_and_stops_it_at_the_deadline(tmp_path, fleet, py_spy):
    target = {"mode": "launch", "command": fleet.command, "env": {"FLEETPROF_TEST_ENV": "yes"}}
    plan = make_plan(tmp_path, target, [pyspy_profiler(py_spy, 1.0)], window=1.0)

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    target_entry = run.manifest["target"]
    assert target_entry["cmdline"] == fleet.command
    assert 0.0 <= target_entry["started_at_device"] - plan["t0_device"] < 0.5
    assert target_entry["stopped_by_runner"] is True
    assert target_entry["exit_code"] == -signal.SIGTERM
    assert target_entry["exited_early"] is False
    # At the deadline, or as soon as py-spy's --duration ran out, a few ms before it.
    assert target_entry["exited_at_device"] == pytest.approx(plan["deadline_device"], abs=0.5)
    assert run.read("target.stdout").strip() == f"cwd={plan['workdir']} env=yes"
    assert_profiled_workload(run)
    assert fleet.running() == [], "the launched command must not outlive the session"


def test_launch_via_profiler_lets_py_spy_start_the_command(tmp_path, fleet, py_spy):
    target = {"mode": "launch", "command": fleet.command, "via_profiler": True}
    plan = make_plan(tmp_path, target, [pyspy_profiler(py_spy, 1.0, fleet.command)], window=1.0)

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    profiler = run.manifest["profilers"]["py-spy"]
    assert profiler["argv"][-2:] == fleet.command
    assert "--pid" not in profiler["argv"]
    assert run.manifest["target"]["pid"] is not None
    assert run.manifest["target"]["cmdline"] == fleet.command
    assert_profiled_workload(run)
    assert fleet.running() == []


@pytest.mark.parametrize("mode", ["attach", "launch"])
def test_target_exiting_mid_window_keeps_the_profile_so_far(tmp_path, fleet, py_spy, mode):
    plan = make_plan(tmp_path, {}, [pyspy_profiler(py_spy, 3.0)], window=3.0)
    exit_at = str(plan["t0_device"] + 1.0)
    if mode == "attach":
        workload = fleet.start(exit_at, "3")
        plan["target"]["pid"] = workload.pid
    else:
        plan["target"].update(mode="launch", command=[*fleet.command, exit_at, "3"])

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "partial"
    target_entry = run.manifest["target"]
    assert target_entry["exited_early"] is True
    assert target_entry["exited_at_device"] == pytest.approx(plan["t0_device"] + 1.0, abs=0.5)
    if mode == "launch":
        assert target_entry["exit_code"] == 3
        assert run.result["reason"].endswith(" with code 3")
    assert run.result["reason"].startswith("target exited at +1.")
    assert run.manifest["profilers"]["py-spy"]["status"] == "ok"
    assert_profiled_workload(run)
    # py-spy stops by itself when its target exits, and the runner with it.
    assert run.finished_at < plan["deadline_device"]


# --------------------------------------------------------------------------- stopping


def test_a_hung_profiler_is_killed_at_deadline_plus_grace(tmp_path, fleet):
    fleet.start()
    grandchild_file = tmp_path / "grandchild.pid"
    profilers = [
        python_profiler("hung", HUNG_PROFILER, str(grandchild_file), outputs=["never.out"]),
        python_profiler("quick", WRITES_OUTPUT, outputs=["out.txt"]),
    ]
    plan = make_plan(tmp_path, {"process": fleet.regex}, profilers, window=1.0, grace=2.0)

    run = run_module(tmp_path, plan)

    hard_deadline = plan["deadline_device"] + plan["grace_s"]
    assert hard_deadline - 0.1 <= run.finished_at < hard_deadline + 2.0
    hung = run.manifest["profilers"]["hung"]
    assert hung["status"] == "failed"
    assert "output 'never.out' was not written" in hung["reason"]
    assert "killed by SIGKILL" in hung["reason"]
    assert hung["signals_sent"][0] == "SIGINT"
    assert hung["signals_sent"][1] in ("SIGKILL(group)", "SIGKILL(watchdog)")
    assert hung["stopped_at_device"] >= hard_deadline - 0.1
    assert not pid_alive(int(grandchild_file.read_text()))
    assert run.manifest["profilers"]["quick"]["status"] == "ok"
    assert run.result["status"] == "partial"
    assert run.result["reason"].startswith("hung failed: ")


def test_sigterm_to_the_runner_stops_everything_and_still_writes_the_archive(
    tmp_path, fleet, py_spy
):
    target = {"mode": "launch", "command": fleet.command}
    plan = make_plan(tmp_path, target, [pyspy_profiler(py_spy, 30)], window=30.0, grace=10.0)
    args = args_file(tmp_path, {"plan": plan})
    runner = subprocess.Popen(
        [sys.executable, str(MODULE), str(args)], stdout=subprocess.PIPE, text=True
    )
    time.sleep(max(0.0, plan["t0_device"] + 1.0 - time.time()))
    runner.send_signal(signal.SIGTERM)
    stdout, _ = runner.communicate(timeout=10)
    result = json.loads(stdout)

    assert result["failed"] is False
    assert result["status"] == "partial"
    assert result["reason"].startswith("runner stopped by SIGTERM at +1.")
    assert time.time() < plan["t0_device"] + 6.0
    profiler = result["manifest"]["profilers"]["py-spy"]
    assert profiler["status"] == "ok", "py-spy writes its output on SIGINT"
    assert profiler["signals_sent"] == ["SIGINT"]
    assert result["manifest"]["runner"]["stopped_by_signal"] == "SIGTERM"
    assert result["manifest"]["target"]["stopped_by_runner"] is True
    with tarfile.open(result["archive"]) as tar:
        assert "py-spy.folded" in tar.getnames()
    assert fleet.running() == []


def test_a_runner_killed_outright_takes_the_processes_it_started_along(tmp_path, fleet):
    sleeper = python_profiler("sleeper", "import time; time.sleep(1000)", outputs=["x"])
    sleeper["argv"].append(f"marker-{uuid.uuid4().hex}")
    plan = make_plan(tmp_path, {"mode": "launch", "command": fleet.command}, [sleeper], window=30.0)
    args = args_file(tmp_path, {"plan": plan})
    runner = subprocess.Popen([sys.executable, str(MODULE), str(args)], stdout=subprocess.DEVNULL)
    assert wait_for(lambda: processes_running(sleeper["argv"][-1]), timeout=5)
    assert fleet.running()

    runner.kill()
    runner.wait()

    assert wait_for(lambda: not processes_running(sleeper["argv"][-1]) and not fleet.running())


# --------------------------------------------------------------------------- outputs


def test_output_over_max_bytes_is_cut_at_a_line_end_and_marked(tmp_path, fleet):
    fleet.start()
    writes_lines = (
        "open('big.txt', 'w').write(''.join('line %04d ....\\n' % i for i in range(200)))"
    )
    profiler = python_profiler("big", writes_lines, outputs=["big.txt"], max_bytes=250)
    plan = make_plan(tmp_path, {"process": fleet.regex}, [profiler], window=1.0)

    run = run_module(tmp_path, plan)

    output = run.manifest["profilers"]["big"]["outputs"]["big.txt"]
    assert output["truncated"] is True
    assert output["original_bytes"] == 200 * 15
    assert output["bytes"] <= 250
    content = run.read("big.txt")
    assert len(content) == output["bytes"]
    assert content.endswith("\n")
    assert run.manifest["profilers"]["big"]["status"] == "partial"
    assert "truncated to" in run.manifest["profilers"]["big"]["reason"]


def test_argv_is_passed_literally_never_through_a_shell(tmp_path, fleet):
    workload = fleet.start()
    canary = tmp_path / "canary"
    records_argv = "import json, sys; open('argv.json', 'w').write(json.dumps(sys.argv[1:]))"
    tricky = ["{pid}", "{pid}x", f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`"]
    profiler = python_profiler("literal", records_argv, *tricky, outputs=["argv.json"])
    plan = make_plan(tmp_path, {"pid": workload.pid}, [profiler], window=1.0)

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    assert json.loads(run.read("argv.json")) == [str(workload.pid), *tricky[1:]]
    assert not canary.exists()


def test_outputs_left_by_an_earlier_run_do_not_count(tmp_path, fleet):
    fleet.start()
    profiler = python_profiler("p", "pass", outputs=["out.txt"])
    plan = make_plan(tmp_path, {"process": fleet.regex}, [profiler], window=1.0)
    os.makedirs(plan["workdir"])
    Path(plan["workdir"], "out.txt").write_text("stale\n")

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "failed"
    assert "output 'out.txt' was not written" in run.result["reason"]


def test_a_plan_may_have_the_runner_remove_its_workdir_once_packed(tmp_path, fleet):
    """The plans fleetprof writes say remove_packed_workdir: the archive is a second copy of
    the workdir, so the runner removes the workdir and collect has one file to remove; the
    result gives the archive's size, so collect need not look at the device again."""
    fleet.start()
    profiler = python_profiler("p", WRITES_OUTPUT, outputs=["out.txt"])
    plan = make_plan(tmp_path, {"process": fleet.regex}, [profiler], window=1.0)
    plan["remove_packed_workdir"] = True

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    assert run.result["workdir_removed"] is True and not os.path.lexists(plan["workdir"])
    assert run.result["archive_bytes"] == os.path.getsize(plan["archive"]) > 0
    with tarfile.open(plan["archive"]) as tar:
        assert {"manifest.json", "out.txt", "runner.log"} <= set(tar.getnames())

    # Without the key (plans written before it, the role used by hand) the workdir stays.
    (tmp_path / "kept").mkdir()
    kept = make_plan(tmp_path / "kept", {"process": fleet.regex}, [profiler], window=1.0)
    again = run_module(tmp_path / "kept", kept)
    assert "workdir_removed" not in again.result and os.path.isdir(kept["workdir"])
    assert again.result["archive_bytes"] == os.path.getsize(kept["archive"])


# --------------------------------------------------------------------------- plan edge cases


def test_skipped_profilers_are_reported_and_nothing_runs(tmp_path, fleet):
    fleet.start()
    skipped = python_profiler("p", "pass", outputs=["x"], status="skipped", reason="no ptrace")
    plan = make_plan(tmp_path, {"process": fleet.regex}, [skipped], lead=5.0)

    run = run_module(tmp_path, plan)

    assert run.elapsed < 2.0
    assert run.result["status"] == "failed"
    assert run.result["reason"] == "no profiler was planned (p: no ptrace)"
    entry = run.manifest["profilers"]["p"]
    assert (entry["status"], entry["reason"], entry["exit_code"]) == ("skipped", "no ptrace", None)


def test_a_late_start_runs_at_once_and_says_how_late(tmp_path, fleet):
    fleet.start()
    profiler = python_profiler("p", WRITES_OUTPUT, outputs=["out.txt"])
    plan = make_plan(tmp_path, {"process": fleet.regex}, [profiler], lead=-0.5, window=1.5)

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    assert run.manifest["late_by_s"] >= 0.5


def test_a_window_already_over_runs_nothing(tmp_path, fleet):
    fleet.start()
    profiler = python_profiler("p", WRITES_OUTPUT, outputs=["out.txt"])
    plan = make_plan(tmp_path, {"process": fleet.regex}, [profiler], lead=-3.0, window=1.0)

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "failed"
    assert run.result["reason"].startswith("the session window had closed")
    assert os.path.exists(plan["archive"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "fleetprof.plan/2"}, "plan schema is 'fleetprof.plan/2'"),
        ({"target": {"mode": "attach", "process": "(unclosed"}}, "not a valid regex"),
        ({"target": {"mode": "attach", "pid": 1, "process": "x"}}, "exactly one of"),
        ({"target": {"mode": "launch", "command": "python3 app.py"}}, "non-empty list"),
        ({"deadline_device": 0}, "deadline_device must be after t0_device"),
        ({"workdir": "relative/dir"}, "workdir must be an absolute path"),
    ],
    ids=["schema", "regex", "two-selectors", "shell-string", "deadline", "relative-workdir"],
)
def test_a_broken_plan_fails_the_module_and_runs_nothing(tmp_path, change, message):
    profiler = python_profiler("p", WRITES_OUTPUT, outputs=["out.txt"])
    plan = make_plan(tmp_path, {"process": "x"}, [profiler]) | change

    run = run_module(tmp_path, plan)

    assert run.returncode == 1
    assert run.result["failed"] is True
    assert message in run.result["msg"]
    assert not os.path.exists(plan["archive"])


def test_a_broken_invocation_fails_the_module(tmp_path):
    profiler = python_profiler("p", "pass", outputs=["a/b.txt"])
    bad_output = run_module(tmp_path, make_plan(tmp_path, {"process": "x"}, [profiler]))
    assert bad_output.result["failed"] is True
    assert "must be a plain file name" in bad_output.result["msg"]

    unknown = run_module(tmp_path, make_plan(tmp_path, {"process": "x"}, []), colour="red")
    assert unknown.result["failed"] is True
    assert "unsupported parameters: colour" in unknown.result["msg"]

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    plan = make_plan(tmp_path, {"process": "x"}, [python_profiler("p", "pass", outputs=["o"])])
    plan["workdir"] = str(blocker / "workdir")
    unwritable = run_module(tmp_path, plan)
    assert unwritable.result["failed"] is True
    assert "cannot prepare workdir" in unwritable.result["msg"]


def test_check_mode_validates_the_plan_and_runs_nothing(tmp_path):
    plan = make_plan(tmp_path, {"process": "x"}, [python_profiler("p", "pass", outputs=["o"])])

    run = run_module(tmp_path, json.dumps(plan), _ansible_check_mode=True)

    assert run.result.get("failed", False) is False
    assert run.result["skipped"] is True
    assert not os.path.exists(plan["workdir"])


def find_python38() -> str | None:
    candidates = [shutil.which("python3.8"), "/usr/bin/python3.8"]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
            )
            if probe.stdout.strip() == "(3, 8)":
                return candidate
    return None


def test_the_runner_works_on_python_3_8(tmp_path, fleet):
    python38 = find_python38()
    if python38 is None:
        pytest.skip("no Python 3.8 interpreter here")
    profiler = python_profiler("p", WRITES_OUTPUT, "{pid}", outputs=["out.txt"])
    plan = make_plan(tmp_path, {"mode": "launch", "command": fleet.command}, [profiler], window=1.0)

    run = run_module(tmp_path, plan, python=python38)

    assert run.result["status"] == "ok", run.result["reason"]
    assert run.manifest["runner"]["python"].startswith("3.8.")
    assert run.members()[0] == "manifest.json"
    assert fleet.running() == []


def test_py_spy_sampling_trouble_is_counted_from_its_own_words(tmp_path):
    """py-spy reports falling behind on stdout; the manifest counts it for every host."""
    runner = load_runner()
    stdout = tmp_path / "py-spy.stdout"
    stdout.write_text(
        "py-spy> Sampling process 97 times a second for 30 seconds. Press Control-C to exit.\n"
        "py-spy> 1.22s behind in sampling, results may be inaccurate. Try reducing the rate\n"
        "py-spy> 5.21s behind in sampling, results may be inaccurate. Try reducing the rate\n"
        "py-spy> Wrote raw flamegraph data to 'py-spy.folded'. Samples: 1455 Errors: 3\n"
    )
    argv = ["py-spy", "record", "--pid", "1", "--rate", "97", "--duration", "30"]

    quality = runner.sampling_quality([str(stdout), str(tmp_path / "absent")], argv, 30.0)

    assert quality == {
        "behind_warnings": 2,
        "max_lag_s": 5.21,
        "samples": 1455,
        "errors": 3,
        "ran_s": 30.0,
        "requested_rate_hz": 97.0,
    }


# --------------------------------------------------------------------------- built-in samplers


def jsonl(run: Run, name: str) -> list[dict]:
    return [json.loads(line) for line in run.read(name).splitlines()]


def test_system_sampler_attached_to_a_process_samples_it_until_the_deadline(tmp_path, fleet):
    pid = fleet.start().pid
    plan = make_plan(tmp_path, {"pid": pid}, [builtin_profiler("system", 0.2)], window=1.0)

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    entry = run.manifest["profilers"]["system"]
    assert entry["status"] == "ok"
    assert entry["argv"] == []
    samples = jsonl(run, "system.jsonl")
    assert len(samples) == entry["data_quality"]["samples"] >= 5
    assert all(s["target"]["pid"] == pid for s in samples)
    assert samples[0]["t"] >= plan["t0_device"] - 0.05
    assert samples[-1]["t"] <= plan["deadline_device"] + 0.2
    last = samples[-1]
    assert 0 <= last["cpu_pct"] <= 100
    assert set(last["mem_mb"]) == {"total", "available", "swap_total", "swap_free"}
    assert last["target"]["cpu_pct"] > 50  # the workload spins
    assert fleet.running() == [pid]  # an attached target is never signalled


def test_samplers_stop_when_the_target_exits_and_the_session_says_so(tmp_path, fleet):
    command = [*fleet.command, str(time.time() + 1.2)]
    plan = make_plan(
        tmp_path,
        {"mode": "launch", "command": command},
        [builtin_profiler("system", 0.1), builtin_profiler("memory", 0.1)],
        window=4.0,
    )

    run = run_module(tmp_path, plan)

    assert run.elapsed < 4.0  # nothing left to sample: no waiting for the deadline
    # A launched program that ends by itself with code 0 is a complete measurement.
    assert run.result["status"] == "ok", run.result["reason"]
    assert run.manifest["window"]["ended_by"] == "target finished"
    for name in ("system", "memory"):
        entry = run.manifest["profilers"][name]
        assert entry["status"] == "ok", entry["reason"]
        assert entry["data_quality"]["ended"] == "target exited"


def test_samplers_alone_need_no_profiler_to_launch_the_target(tmp_path, fleet):
    """via_profiler is for ptrace profilers; built-in samplers need no ptrace."""
    plan = make_plan(
        tmp_path,
        {"mode": "launch", "command": fleet.command, "via_profiler": True},
        [builtin_profiler("memory", 0.2)],
        window=1.0,
    )

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    assert jsonl(run, "memory.jsonl")[-1]["target"]["rss_kb"] > 0
    assert fleet.running() == []


def test_a_sampler_output_at_max_bytes_stops_growing_and_is_marked(tmp_path, fleet):
    pid = fleet.start().pid
    plan = make_plan(tmp_path, {"pid": pid}, [builtin_profiler("system", 0.1, 800)], window=1.0)

    run = run_module(tmp_path, plan)

    entry = run.manifest["profilers"]["system"]
    assert entry["status"] == "partial"
    assert "max_bytes" in entry["reason"]
    assert entry["outputs"]["system.jsonl"]["truncated"] is True
    assert entry["outputs"]["system.jsonl"]["bytes"] <= 800
    assert entry["data_quality"]["dropped"] > 0
    assert all(line for line in run.read("system.jsonl").splitlines())  # whole lines only


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"builtin": "gpu"}, "builtin must be one of system, memory"),
        ({"options": {"interval_s": 0}}, "options.interval_s must be a number"),
        ({"options": {"interval_s": "1s"}}, "options.interval_s must be a number"),
        ({"argv": ["/bin/true"]}, "a builtin sampler takes no argv"),
        ({"outputs": ["a.jsonl", "b.jsonl"]}, "exactly one output"),
    ],
    ids=["unknown", "zero-interval", "text-interval", "argv", "two-outputs"],
)
def test_a_broken_builtin_entry_fails_the_module(tmp_path, change, message):
    plan = make_plan(tmp_path, {"process": "x"}, [builtin_profiler("system") | change])

    run = run_module(tmp_path, plan)

    assert run.returncode == 1
    assert message in run.result["msg"]


def test_thermal_and_cpufreq_are_read_where_the_device_has_them(tmp_path, monkeypatch):
    """This machine has neither: a sysfs tree shaped like a Jetson's stands in."""
    runner = load_runner()
    sys_root = tmp_path / "sys"
    zones = {"thermal_zone0": ("CPU-therm\n", "45500\n"), "thermal_zone1": ("CPU-therm\n", "x")}
    zones["thermal_zone2"] = ("GPU therm/../x\n", "-12000\n")
    for zone, (kind, temp) in zones.items():
        directory = sys_root / "class" / "thermal" / zone
        directory.mkdir(parents=True)
        (directory / "type").write_text(kind)
        (directory / "temp").write_text(temp)
    for cpu, cur in ((0, "1200000"), (1, "2000000")):
        directory = sys_root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        directory.mkdir(parents=True)
        (directory / "scaling_cur_freq").write_text(cur + "\n")
        (directory / "cpuinfo_max_freq").write_text("2000000\n")
        (directory / "scaling_max_freq").write_text("1500000\n" if cpu == 0 else "2000000\n")
    (sys_root / "devices" / "system" / "cpu" / "cpu2").mkdir()  # offline, no cpufreq
    monkeypatch.setattr(procread, "SYS_ROOT", str(sys_root))

    log = runner.RunnerLog(str(tmp_path / "runner.log"), time.time())
    sampler = runner.Sampler("system", str(tmp_path / "s.jsonl"), 1.0, 1 << 20, 0.0, log)
    sampler._open_sources()
    record = sampler._system()

    assert record["thermal_c"] == {"CPU-therm": 45.5, "CPU-therm-1": None, "GPU_therm_.._x": -12.0}
    assert record["cpufreq"] == [
        {"cpu": 0, "cur_khz": 1200000, "max_khz": 2000000, "policy_max_khz": 1500000},
        {"cpu": 1, "cur_khz": 2000000, "max_khz": 2000000, "policy_max_khz": 2000000},
    ]


def test_a_device_without_the_optional_files_still_samples(tmp_path, monkeypatch):
    """Edge kernels differ: whatever is missing is left out, nothing crashes."""
    runner = load_runner()
    monkeypatch.setattr(procread, "SYS_ROOT", str(tmp_path / "no-sys"))
    monkeypatch.setattr(procread, "PROC_ROOT", str(tmp_path / "no-proc"))
    log = runner.RunnerLog(str(tmp_path / "runner.log"), time.time())
    sampler = runner.Sampler("system", str(tmp_path / "s.jsonl"), 1.0, 1 << 20, 0.0, log)
    sampler.pid = 12345
    sampler._open_sources()

    assert sampler._system()["mem_mb"]["available"] is None
    assert sampler._sample(time.time()) is None  # the target's files are gone: it ended
    assert "/proc/stat" in sampler.unreadable


def test_the_samplers_work_on_python_3_8(tmp_path, fleet):
    python38 = find_python38()
    if python38 is None:
        pytest.skip("no Python 3.8 interpreter here")
    profilers = [builtin_profiler("system", 0.2), builtin_profiler("memory", 0.2)]
    plan = make_plan(tmp_path, {"mode": "launch", "command": fleet.command}, profilers, window=1.0)

    run = run_module(tmp_path, plan, python=python38)

    assert run.result["status"] == "ok", run.result["reason"]
    assert run.manifest["runner"]["python"].startswith("3.8.")
    assert jsonl(run, "system.jsonl")[-1]["target"]["cpu_s"] > 0


def test_a_plan_that_already_ran_is_answered_from_its_archive_not_run_again(
    tmp_path: Path,
) -> None:
    """Re-applying the same plan (a retried play) must not clobber a packed session."""
    writer = python_profiler("writer", WRITES_OUTPUT, outputs=["out.txt"])
    plan = make_plan(tmp_path, {"mode": "attach", "pid": os.getpid()}, [writer], window=0.5)
    first = run_module(tmp_path, plan)
    assert first.result["changed"] is True
    archive = Path(first.result["archive"])
    packed = archive.read_bytes()
    again = run_module(tmp_path, plan)
    assert again.result["changed"] is False
    assert again.manifest["run_id"] == first.manifest["run_id"]
    assert again.manifest["status"] == first.manifest["status"]
    assert archive.read_bytes() == packed


# --------------------------------------------------------------------------- post_argv
#
# Real processes stand in for `nsys stats`: Python one-liners that read what the profiler
# left and write a CSV, fail, or hang.

# The profiler writes its "report" only as it ends, so a post step that reads it proves it
# ran after the profiler stopped.
WRITES_REPORT = "import time; time.sleep(0.2); open('report.bin', 'w').write('REPORT\\n')"


def post(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


TO_CSV = "import sys; open(sys.argv[1], 'w').write('Name,Total\\n' + open('report.bin').read())"
FAILS = (
    "import sys; sys.stderr.write('ERROR: Report (cuda_gpu_kern_sum) not found.\\n'); sys.exit(1)"
)


def test_post_steps_run_after_the_profiler_stopped_and_before_packing(tmp_path, fleet):
    fleet.start()
    profiler = python_profiler(
        "gpu",
        WRITES_REPORT,
        outputs=["gpu-stats_a.csv", "gpu-stats_b.csv"],
        post_argv=[post(TO_CSV, "gpu-stats_a.csv"), post(TO_CSV, "gpu-stats_b.csv")],
        options={"discard": ["report.bin"]},
    )
    plan = make_plan(tmp_path, {"process": fleet.regex}, [profiler], window=1.0)

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    entry = run.manifest["profilers"]["gpu"]
    assert entry["status"] == "ok"
    assert [step["status"] for step in entry["post"]] == ["ok", "ok"]
    assert [step["exit_code"] for step in entry["post"]] == [0, 0]
    assert entry["post"][0]["started_at_device"] >= entry["stopped_at_device"]
    assert run.read("gpu-stats_a.csv") == "Name,Total\nREPORT\n"
    assert entry["outputs"]["gpu-stats_b.csv"]["bytes"] == len("Name,Total\nREPORT\n")
    members = run.members()
    assert "gpu.post0.stdout" in members and "gpu.post1.stderr" in members
    assert "report.bin" not in members and entry["discarded"] == ["report.bin"]


def test_a_failing_post_step_makes_the_profiler_partial_not_the_session_failed(tmp_path, fleet):
    fleet.start()
    profilers = [
        python_profiler(
            "gpu",
            WRITES_REPORT,
            outputs=["report.bin"],
            post_argv=[post(FAILS)],
        ),
        python_profiler("other", WRITES_OUTPUT, outputs=["out.txt"]),
    ]
    plan = make_plan(tmp_path, {"process": fleet.regex}, profilers, window=1.0)

    run = run_module(tmp_path, plan)

    entry = run.manifest["profilers"]["gpu"]
    assert entry["status"] == "partial"
    assert "post step 0" in entry["reason"] and "exit code 1" in entry["reason"]
    assert "Report (cuda_gpu_kern_sum) not found" in entry["post"][0]["stderr_tail"]
    assert entry["post"][0]["exit_code"] == 1
    assert run.manifest["profilers"]["other"]["status"] == "ok"
    assert run.result["status"] == "partial"
    assert run.read("gpu.post0.stderr").startswith("ERROR: Report")


def test_a_fallback_step_runs_only_when_the_step_before_failed(tmp_path, fleet):
    """Two generations of a tool: the new report name, else the old one. The name the tool
    does not know failing is expected, and its missing output is no problem."""
    fleet.start()
    outputs = ["s_new1.csv", "s_old1.csv", "s_new2.csv", "s_old2.csv"]
    profiler = python_profiler(
        "gpu",
        WRITES_REPORT,
        outputs=outputs,
        post_argv=[
            post(FAILS),
            post(TO_CSV, "s_old1.csv"),
            post(TO_CSV, "s_new2.csv"),
            post(TO_CSV, "s_old2.csv"),
        ],
        options={"post_fallback": [1, 3], "optional_outputs": outputs},
    )
    plan = make_plan(tmp_path, {"process": fleet.regex}, [profiler], window=1.0)

    run = run_module(tmp_path, plan)

    entry = run.manifest["profilers"]["gpu"]
    assert entry["status"] == "ok", entry["reason"]
    assert [step["status"] for step in entry["post"]] == ["failed", "ok", "ok", "not-needed"]
    assert [step["fallback"] for step in entry["post"]] == [False, True, False, True]
    assert sorted(entry["outputs"]) == ["s_new2.csv", "s_old1.csv"]
    assert "gpu.post3.stdout" not in run.members()


def test_a_whole_fallback_chain_failing_is_a_problem(tmp_path, fleet):
    fleet.start()
    profiler = python_profiler(
        "gpu",
        WRITES_REPORT,
        outputs=["report.bin", "s.csv"],
        post_argv=[post(FAILS), post(FAILS)],
        options={"post_fallback": [1], "optional_outputs": ["s.csv"]},
    )
    plan = make_plan(tmp_path, {"process": fleet.regex}, [profiler], window=1.0)

    run = run_module(tmp_path, plan)

    entry = run.manifest["profilers"]["gpu"]
    assert entry["status"] == "partial"
    assert "post step 1" in entry["reason"] and "post step 0" not in entry["reason"]
    assert "'s.csv' was not written" not in entry["reason"]


def test_a_hung_post_step_is_killed_at_deadline_plus_grace(tmp_path, fleet):
    fleet.start()
    profiler = python_profiler(
        "gpu",
        WRITES_REPORT,
        outputs=["report.bin"],
        post_argv=[post("import time; time.sleep(60)"), post(TO_CSV, "never.csv")],
    )
    plan = make_plan(tmp_path, {"process": fleet.regex}, [profiler], window=1.0, grace=2.0)

    run = run_module(tmp_path, plan)

    hard_deadline = plan["deadline_device"] + plan["grace_s"]
    assert hard_deadline - 0.1 <= run.finished_at < hard_deadline + 2.0
    steps = run.manifest["profilers"]["gpu"]["post"]
    assert steps[0]["status"] == "failed"
    assert steps[0]["reason"] == "killed by signal 9 at deadline + grace"
    assert steps[0]["exit_code"] == -signal.SIGKILL
    assert steps[1]["status"] == "failed" and "past deadline + grace" in steps[1]["reason"]
    assert run.manifest["profilers"]["gpu"]["status"] == "partial"
    assert processes_running("time.sleep(60)") == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"post_argv": "nsys stats"}, "post_argv must be a list of non-empty lists"),
        ({"post_argv": [[]]}, "post_argv must be a list of non-empty lists"),
        ({"options": {"post_fallback": [0]}}, "options.post_fallback must list"),
        ({"options": {"optional_outputs": ["x.csv"]}}, "options.optional_outputs must list"),
        ({"options": {"discard": ["../etc/passwd"]}}, "options.discard must list plain"),
        ({"options": {"discard": ["out.txt"]}}, "options.discard must list plain"),
    ],
)
def test_broken_post_processing_entries_fail_the_module(tmp_path, change, message):
    profiler = (
        python_profiler("p", WRITES_OUTPUT, outputs=["out.txt"], post_argv=[post("pass")]) | change
    )
    plan = make_plan(tmp_path, {"process": "x"}, [profiler])

    run = run_module(tmp_path, plan)

    assert run.result["failed"] is True
    assert message in run.result["msg"]


def test_a_sampler_whose_output_is_its_own_stdout_is_captured(tmp_path: Path) -> None:
    """iotop, nvidia-smi and tegrastats print their samples: their stdout is their output."""
    printer = python_profiler(
        "printer", "print('sample 1'); print('sample 2')", outputs=["printer.stdout"]
    )
    plan = make_plan(tmp_path, {"mode": "attach", "pid": os.getpid()}, [printer], window=0.5)
    run = run_module(tmp_path, plan)
    entry = run.manifest["profilers"]["printer"]
    assert entry["status"] == "ok", entry
    assert entry["outputs"]["printer.stdout"]["bytes"] > 0
    assert run.read("printer.stdout") == "sample 1\nsample 2\n"


def test_each_profiler_reports_its_own_cpu_time(tmp_path, fleet):
    """The manifest's ``cpu_s`` is the profiler process's own CPU time: a busy one shows
    what it burned, an idle one next to nothing (the report's overhead.<name>.cpu_pct)."""
    from orchestrator.stages.parse import profiler_cost

    fleet.start()
    burns = "import time\nwhile time.process_time() < 0.8: pass\nopen('b.txt', 'w').write('x')"
    idles = "import time; time.sleep(0.5); open('i.txt', 'w').write('x')"
    plan = make_plan(
        tmp_path,
        {"process": fleet.regex},
        [
            python_profiler("burner", burns, outputs=["b.txt"]),
            python_profiler("idler", idles, outputs=["i.txt"]),
        ],
        window=3.0,
    )

    run = run_module(tmp_path, plan)

    burner, idler = (run.manifest["profilers"][name] for name in ("burner", "idler"))
    assert burner["status"] == "ok", burner
    # As the runner last read it before the process was reaped: up to one poll interval
    # (0.1 s) of a busy process's last CPU can be missing.
    assert 0.6 <= burner["cpu_s"] < 2.5
    assert idler["cpu_s"] < 0.3
    cost = profiler_cost("burner", burner)
    ran = burner["stopped_at_device"] - burner["started_at_device"]
    assert cost == {"overhead.burner.cpu_pct": round(100.0 * burner["cpu_s"] / ran, 2)}
