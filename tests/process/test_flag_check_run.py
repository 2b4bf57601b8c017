"""The runner's check of a launcher's flag before T0 (nsys's --pytorch), run the way Ansible
runs the runner: a stand-in "nsys" that, like a tool meeting an option it does not know,
stops with an error when given --pytorch but lacks it. Where its help does not list the
flag the runner drops it and the program still runs; where it does, the flag stays.
The stand-in is this test's own script, not Nsight Systems."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.session import make_plan, run_module

FLAG = "--pytorch=autograd-nvtx"
# argv[1]: "new" (knows --pytorch) or "old"; then the nsys-like arguments.
STAND_IN = """\
import subprocess, sys
new, args = sys.argv[1] == "new", sys.argv[2:]
if "--help" in args:
    print("--trace=  cuda, nvtx, osrt" + ("\\n--pytorch=  'autograd-nvtx', 'none'" if new else ""))
    sys.exit(0)
flags = args[: args.index("--")]
if any(f.startswith("--pytorch") for f in flags) and not new:
    sys.stderr.write("unrecognised option: " + flags[-1] + "\\n")
    sys.exit(1)
with open(sys.argv[0] + ".flags", "w") as out:
    out.write(" ".join(flags))
sys.exit(subprocess.call(args[args.index("--") + 1 :]))
"""
PROGRAM = "import sys; open(sys.argv[1], 'w').write('ran')"


def plan(tmp_path: Path, version: str) -> tuple[dict[str, Any], Path, Path]:
    stand_in = tmp_path / "nsys.py"
    stand_in.write_text(STAND_IN)
    ran = tmp_path / "ran.txt"
    command = [sys.executable, "-c", PROGRAM, str(ran)]
    nsys = [sys.executable, str(stand_in), version]
    profiler = {
        "name": "nsys",
        "status": "planned",
        "reason": None,
        "argv": [],
        "launch_argv": [*nsys, "profile", "--trace", "cuda,nvtx", FLAG, "--", *command],
        "outputs": ["nsys.stdout"],
        "max_bytes": 1024 * 1024,
        "options": {
            "flag_check": {
                "flag": FLAG,
                "help_argv": [*nsys, "profile", "--help"],
                "needle": "--pytorch",
            }
        },
    }
    session = make_plan(tmp_path, {"mode": "launch", "command": command}, [profiler], window=4.0)
    session["target"]["via_profiler"] = True
    return session, ran, Path(str(stand_in) + ".flags")


@pytest.mark.parametrize(("version", "kept"), [("old", False), ("new", True)])
def test_the_flag_is_dropped_only_where_the_tools_help_lacks_it(
    tmp_path: Path, version: str, kept: bool
) -> None:
    session, ran, flags = plan(tmp_path, version)

    run = run_module(tmp_path, session)

    assert ran.read_text() == "ran"  # the program ran under the launcher either way
    assert (FLAG in flags.read_text()) is kept
    argv = run.manifest["profilers"]["nsys"]["argv"]
    assert (FLAG in argv) is kept and "--trace" in argv
