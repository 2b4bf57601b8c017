"""The tracemalloc startup hook (fleetprof_device/tracemalloc_hook.py, installed by
inprogram.py) on real small programs run by this Python (3.8 syntax: these run on the
device's oldest Python)."""

import json
import os
import subprocess
import sys
import textwrap

from fleetprof_device import arguments, contract
from fleetprof_device.inprogram import HookWatch, launch_env, option_errors

LEAKER = textwrap.dedent(
    """\
    import os, sys, time
    keep = []
    t0 = time.time()
    while time.time() - t0 < float(sys.argv[1]):
        keep.append(bytearray(20000))  # the leak
        time.sleep(0.005)
    print(os.environ.get("PYTHONTRACEMALLOC"), os.environ.get("PYTHONPATH"))
    print(os.environ.get("SHADOWED_RAN"))
    if len(sys.argv) > 2:
        os._exit(0)
    """
)


def spec(interval=0.3, frames=5, top=10, max_bytes=contract.TRACEMALLOC_MAX_BYTES):
    options = {"interval_s": interval, "frames": frames, "top": top}
    return {
        "status": "planned",
        "builtin": "tracemalloc",
        "max_bytes": max_bytes,
        "options": options,
    }


def run(tmp_path, seconds, env=None, prof=None, extra=()):
    program = tmp_path / "leaker.py"
    program.write_text(LEAKER)
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    base = dict(os.environ, **(env or {}))
    base.pop("PYTHONTRACEMALLOC", None)
    launched = launch_env(base, [prof or spec()], str(workdir), lambda line: None)
    done = subprocess.run(
        [sys.executable, str(program), str(seconds), *extra],
        env=launched,
        capture_output=True,
        check=True,
    )
    path = workdir / contract.TRACEMALLOC_FILE
    summary = json.loads(path.read_text()) if path.exists() else None
    return summary, done.stdout.decode().splitlines(), done.stderr.decode(), launched, workdir


def test_a_leaking_program_names_its_line_first_by_growth(tmp_path):
    # 3 s at a 0.3 s interval: ten snapshots on a quiet machine; at least three (two at
    # the interval and the exit's) even when a loaded machine makes each one slow (1.5 s
    # gave two at a load average of 7).
    summary, out, err, env, _ = run(tmp_path, 3.0)
    assert err == ""
    assert env["PYTHONTRACEMALLOC"] == "5"
    assert summary["schema"] == contract.TRACEMALLOC_SCHEMA
    assert summary["snapshots"] >= 3 and summary["final"] is True
    assert summary["started_by"] == "environment" and summary["errors"] == []
    first = summary["growth"][0]
    assert (os.path.basename(first["file"]), first["line"]) == ("leaker.py", 5)
    assert first["size_diff"] > 20000 * 50 and first["count_diff"] > 50
    top = summary["top_by_size"][0]
    assert (os.path.basename(top["file"]), top["line"]) == ("leaker.py", 5)
    assert top["traceback"][0]["line"] == 5  # most recent frame first
    assert summary["traced_peak_bytes"] >= summary["traced_current_bytes"] > top["size"] // 2
    assert len(summary["series"]) == summary["snapshots"]
    # The program sees its environment as without the hook; the hook left no pickle.
    assert out[0] == "None None"
    assert sorted(os.listdir(tmp_path / "work")) == sorted(
        [contract.TRACEMALLOC_FILE, contract.TRACEMALLOC_HOOK_DIR]
    )


def test_the_programs_own_pythonpath_and_sitecustomize_are_kept(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import os\nos.environ['SHADOWED_RAN'] = 'yes'\n")
    summary, out, err, env, _ = run(tmp_path, 0.2, env={"PYTHONPATH": str(theirs)})
    assert env["PYTHONPATH"].endswith(os.pathsep + str(theirs))
    assert out == ["None " + str(theirs), "yes"]
    assert err == "" and summary["errors"] == []


def test_a_failing_shadowed_sitecustomize_is_reported_as_python_would(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("raise RuntimeError('broken site')\n")
    summary, out, err, _, _ = run(tmp_path, 0.2, env={"PYTHONPATH": str(theirs)})
    assert "Error in sitecustomize" in err and "RuntimeError: broken site" in err
    assert out[1] == "None"  # the program ran on
    assert any("broken site" in e for e in summary["errors"])


def test_a_program_ending_before_the_first_interval_leaves_its_exit_snapshot(tmp_path):
    summary, _, _, _, _ = run(tmp_path, 0.05, prof=spec(interval=5.0))
    assert summary["snapshots"] == 1 and summary["final"] is True
    assert summary["growth"] == []


def test_a_program_killed_before_its_first_snapshot_leaves_nothing_and_the_runner_says_so(
    tmp_path,
):
    summary, _, _, _, workdir = run(tmp_path, 0.05, prof=spec(interval=5.0), extra=["exit"])
    assert summary is None
    watch = HookWatch(str(workdir), 5.0, contract.TRACEMALLOC_MAX_BYTES)
    watch.start(123)
    watch.stop()
    assert watch.samples == 0
    assert "wrote no snapshot" in watch.error and not watch.alive()


class _Ended:
    """Stands in for the launched program's Child: only its exit code is read."""

    def __init__(self, code):
        self.exit_code = code


def test_with_no_snapshot_the_reason_says_how_the_program_ended(tmp_path):
    launch_env({}, [spec(interval=5.0)], str(tmp_path), lambda line: None)  # the hook is there

    def why(code):
        watch = HookWatch(str(tmp_path), 5.0, contract.TRACEMALLOC_MAX_BYTES)
        watch.start(123, _Ended(code))
        watch.stop()
        return watch.error

    assert "killed by SIGKILL before its first (5 s after it started)" in why(-9)
    assert "no exit handler" in why(-9)
    assert "ended with code 0 before its first" in why(0) and "os._exit" in why(0)
    assert "ended with code 3" in why(3)
    assert "killed by signal 99" in why(-99)
    assert "ended, or was killed" in why(None)


def test_the_summary_is_cut_to_its_cap(tmp_path):
    summary, _, _, _, workdir = run(tmp_path, 0.5, prof=spec(top=100, max_bytes=3000))
    assert summary["cut"] is True
    assert (workdir / contract.TRACEMALLOC_FILE).stat().st_size <= 3000


def test_without_its_settings_the_hook_does_nothing_and_the_program_runs(tmp_path):
    _, _, _, env, workdir = run(tmp_path, 0.1)
    os.unlink(os.path.join(env["PYTHONPATH"].split(os.pathsep)[0], "fleetprof-tracemalloc.json"))
    os.unlink(str(workdir / contract.TRACEMALLOC_FILE))
    done = subprocess.run(
        [sys.executable, "-c", "print('ran')"], env=env, stdout=subprocess.PIPE, check=True
    )
    assert done.stdout == b"ran\n" and not (workdir / contract.TRACEMALLOC_FILE).exists()


def test_a_plan_with_the_builtin_is_checked():
    assert option_errors({"frames": 25, "top": 100}) == []
    assert option_errors({"frames": 26, "top": 0}) == [
        "options.frames must be an integer from 1 to 25",
        "options.top must be an integer from 1 to 100",
    ]
    prof = dict(spec(), name="tracemalloc", outputs=[contract.TRACEMALLOC_FILE])
    assert arguments._profiler_errors(prof) == []
    prof["options"]["frames"] = True
    assert arguments._profiler_errors(prof) == ["options.frames must be an integer from 1 to 25"]
