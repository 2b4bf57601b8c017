"""A controller killed outright (SIGKILL) does not leave its ansible-playbook running: the
watchdog callback fleetprof loads into every play ends the playbook's process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.integration

# A controller like fleetprof's: ansible-runner (pexpect, a session of its own) runs the
# playbook with the environment fleetprof gives every stage.
CONTROLLER = textwrap.dedent(
    """
    import sys
    import ansible_runner
    from orchestrator.stages.ansible import stage_env

    private, playbook, watchdog = sys.argv[1], sys.argv[2], sys.argv[3] == "on"
    env = stage_env()
    if not watchdog:
        del env["ANSIBLE_CALLBACKS_ENABLED"]
    ansible_runner.run(
        private_data_dir=private, playbook=playbook, inventory="localhost,",
        envvars=env, quiet=True, suppress_env_files=True,
    )
    """
)


def pids_of(token: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", "--", token], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def run_and_kill_controller(tmp_path: Path, watchdog: bool) -> tuple[str, list[int]]:
    """Start the playbook, SIGKILL its controller, return what runs 3 s later."""
    token = f"fleetprof-watchdog-{uuid.uuid4().hex}"
    playbook = tmp_path / "wait.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""
            - name: Wait
              hosts: localhost
              connection: local
              gather_facts: false
              tasks:
                - name: A long task
                  ansible.builtin.command:
                    argv: ["{sys.executable}", "-c", "import time; time.sleep(300)", "{token}"]
                  changed_when: false
            """
        )
    )
    (tmp_path / "private").mkdir()
    controller = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, str(tmp_path / "private"), str(playbook),
         "on" if watchdog else "off"],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_PYTHON_INTERPRETER": sys.executable},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not pids_of(token):
        assert controller.poll() is None, "the controller ended before the task started"
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.2)
    playbook_pids = pids_of(str(playbook))
    assert playbook_pids, "no ansible-playbook found"
    controller.kill()
    controller.wait()
    time.sleep(3)
    return token, pids_of(str(playbook)) + pids_of(token)


def test_the_playbook_and_its_tasks_end_when_the_controller_is_killed(tmp_path: Path) -> None:
    _token, left = run_and_kill_controller(tmp_path, watchdog=True)
    assert left == []


def test_without_the_watchdog_the_playbook_outlives_its_controller(tmp_path: Path) -> None:
    """The control: what the watchdog is for (and proof the test above can fail)."""
    token, left = run_and_kill_controller(tmp_path, watchdog=False)
    try:
        assert left, "the playbook ended by itself: the watchdog test proves nothing"
    finally:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        for pid in pids_of(token):
            os.kill(pid, signal.SIGKILL)
