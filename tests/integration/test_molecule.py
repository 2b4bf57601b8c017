"""The roles' molecule scenarios (roles/<role>/molecule/default), run as a user runs them.

``molecule test`` in the role's directory: create brings a two-host test fleet up
(tests/molecule/create.yml), converge applies the role, verify checks what it did on the
hosts, destroy tears the fleet down. Each takes 10-30 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fleet import fleet_unavailable, registry
from tests.support.paths import REPO

pytestmark = pytest.mark.integration

ROLES = ["fleetprof_preflight", "fleetprof_tools", "fleetprof_session"]
SCENARIO = "default"
TIMEOUT_S = 300
TAIL_CHARS = 12_000
# The venv that runs the tests: its molecule, ansible-playbook and python come first.
VENV_BIN = Path(sys.executable).parent


def molecule_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # A scenario works out its own ephemeral directory, inventory and ansible.cfg.
        if not key.startswith("MOLECULE_") and key != "ANSIBLE_CONFIG"
    }
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env.update(NO_COLOR="1", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", COLUMNS="200")
    return env


def fleet_dir(role: str) -> Path:
    """Where the scenario's create puts its fleet (tests/molecule/fleet_vars.yml)."""
    return registry.fleets_dir() / f"molecule-{role}-{SCENARIO}"


def run_molecule(role: str) -> tuple[int, str, float]:
    """``molecule test`` in the role's directory -> (exit code, output, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(VENV_BIN / "molecule"), "test", "--scenario-name", SCENARIO],
        cwd=REPO / "roles" / role,
        env=molecule_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a timeout stops ansible-playbook and its children too
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        output += f"\n[test_molecule] killed after {TIMEOUT_S} s"
    return proc.returncode, output, time.monotonic() - started


@pytest.mark.parametrize("role", ROLES)
def test_molecule_scenario(role: str, record_property: Callable[[str, object], None]) -> None:
    reason = fleet_unavailable()
    if reason:
        pytest.skip(f"the molecule scenarios run on the test fleet: {reason}")
    directory = fleet_dir(role)
    try:
        rc, output, seconds = run_molecule(role)
    finally:
        # Destroy runs even when a step fails; only a killed molecule leaves the fleet.
        leftover = directory.exists()
        if leftover:
            subprocess.run(
                [sys.executable, "-m", "tests.fleet", "down", str(directory)],
                cwd=REPO,
                check=False,
            )
    record_property("duration_s", round(seconds, 1))
    print(f"molecule test in roles/{role}: rc {rc}, {seconds:.1f} s")
    assert rc == 0, f"molecule test in roles/{role} failed (rc {rc}):\n{output[-TAIL_CHARS:]}"
    assert not leftover, f"destroy left the fleet in {directory}:\n{output[-TAIL_CHARS:]}"
    assert str(directory) not in {str(d) for d in registry.registered().values()}
