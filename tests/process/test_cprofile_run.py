"""cProfile inside a launched target, run by the real device runner: the program still
runs when the window ends, the runner sends it SIGINT first (cProfile writes its profile
on KeyboardInterrupt, not on SIGTERM), and the target's own interpreter converts the
profile to JSON on the device. On the Python 3.8 and 3.11 the devices run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fleetprof_device.pstats_json import post_argv
from tests.support.session import make_plan, pyspy_profiler, run_module

PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
PYTHONS = [
    pytest.param(str(PY38), "3.8", id="py3.8"),
    pytest.param(sys.executable, "{}.{}".format(*sys.version_info[:2]), id="py3.11"),
]

# Calls hot() for argv[1] seconds (until stopped when that is past the window).
FOREVER = """\
import sys, time

def hot():
    return sum(i * i for i in range(3000))

def main(seconds):
    started = time.time()
    while time.time() - started < seconds:
        hot()

main(float(sys.argv[1]))
"""


def cprofile_plan(tmp_path: Path, python: str, seconds: float, window: float) -> dict:
    script = tmp_path / "forever.py"
    script.write_text(FOREVER)
    plan = make_plan(tmp_path, {"mode": "launch"}, [], window=window, lead=1.0)
    prof = f"{plan['workdir']}/cprofile.prof"
    plan["target"].update(
        command=[python, "-m", "cProfile", "-o", prof, str(script), str(seconds)],
        interrupt_s=2.0,
    )
    plan["profilers"] = [
        {
            "name": "cprofile",
            "status": "planned",
            "reason": None,
            "argv": [],
            "launch_argv": [],
            "in_target": True,
            "outputs": ["cprofile.json", "cprofile.prof"],
            "max_bytes": 16 << 20,
            "post_argv": [post_argv(python, "cprofile.prof", "cprofile.json", 20, 5)],
            "options": {},
        }
    ]
    return plan


def needs(python: str) -> None:
    if not Path(python).exists():
        pytest.skip(f"no {python} on this machine")


@pytest.mark.parametrize(("python", "version"), PYTHONS)
def test_a_program_still_running_at_the_deadline_gets_sigint_and_its_profile_is_written(
    tmp_path, python, version
):
    needs(python)
    run = run_module(tmp_path, cprofile_plan(tmp_path, python, 60.0, window=2.5), python=python)

    entry = run.manifest["profilers"]["cprofile"]
    assert entry["status"] == "ok", entry["reason"]
    assert entry["signals_sent"] == ["SIGINT(group)"]
    target = run.manifest["target"]
    assert target["stopped_by_runner"] is True
    assert run.result["status"] == "ok", run.result["reason"]
    assert {"cprofile.prof", "cprofile.json"} <= {Path(m).name for m in run.members()}
    member = next(m for m in run.members() if Path(m).name == "cprofile.json")
    document = json.loads(run.read(member))
    # Converted by the interpreter that wrote it (marshal is version-specific).
    assert document["python"].startswith(version + ".")
    names = {f["function"] for f in document["functions"]}
    assert {"hot", "main"} <= names
    hot = next(f for f in document["functions"] if f["function"] == "hot")
    assert hot["calls"] > 10 and hot["tottime"] > 0
    assert any(e["callee"][2] == "hot" and e["caller"][2] == "main" for e in document["edges"])


@pytest.mark.parametrize(("python", "version"), PYTHONS)
def test_a_program_that_ends_before_the_deadline_leaves_its_profile_too(tmp_path, python, version):
    needs(python)
    run = run_module(tmp_path, cprofile_plan(tmp_path, python, 0.5, window=6.0), python=python)

    entry = run.manifest["profilers"]["cprofile"]
    assert entry["status"] == "ok", entry["reason"]
    assert entry["signals_sent"] == []
    assert run.manifest["window"]["ended_by"] == "target finished"
    assert entry["post"][0]["status"] == "ok"


def test_py_spy_attaching_from_outside_samples_the_program_cprofile_runs_in(tmp_path, py_spy):
    plan = cprofile_plan(tmp_path, sys.executable, 60.0, window=3.0)
    plan["profilers"].append(pyspy_profiler(py_spy, 3.0))

    run = run_module(tmp_path, plan)

    entries = run.manifest["profilers"]
    assert entries["cprofile"]["status"] == "ok", entries["cprofile"]["reason"]
    assert entries["py-spy"]["status"] == "ok", entries["py-spy"]["reason"]
    # py-spy attached to the launched program (the runner's child), and saw hot() in it.
    assert str(run.manifest["target"]["pid"]) in entries["py-spy"]["argv"]
    assert "hot (" in run.read(next(m for m in run.members() if m.endswith("py-spy.folded")))


def test_a_python_without_cprofile_is_a_reason_naming_it_not_a_traceback(tmp_path):
    # A Python built without cProfile: a module of that name that cannot be imported.
    fake = tmp_path / "nocprofile"
    fake.mkdir()
    (fake / "cProfile.py").write_text("raise ImportError(\"No module named 'cProfile'\")\n")
    plan = cprofile_plan(tmp_path, sys.executable, 60.0, window=2.0)
    plan["target"]["env"] = {"PYTHONPATH": str(fake)}

    run = run_module(tmp_path, plan)

    entry = run.manifest["profilers"]["cprofile"]
    assert entry["status"] in ("partial", "failed")
    assert "output 'cprofile.prof' was not written" in entry["reason"]
    assert "No module named 'cProfile'" in entry["reason"]
    assert run.result["status"] == "partial"  # the target failed; the session still reports
    assert "target exited at" in run.result["reason"]
    assert "Traceback" not in run.manifest["profilers"]["cprofile"]["post"][0]["stderr_tail"]
