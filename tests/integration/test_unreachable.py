"""One host that cannot be reached never sinks the others."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import needs_ptrace
from tests.support.workloads import SPLIT_WORKLOAD

pytestmark = [
    pytest.mark.integration,
    needs_ptrace,
    pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client"),
]


def test_an_unreachable_host_is_reported_and_the_others_run(
    fleetprof: Any, workload: Any, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    workload(SPLIT_WORKLOAD, f"--token={token}")
    time.sleep(0.3)
    inventory = tmp_path / "fleet.yml"
    # Nothing listens on port 9 of this loopback address: the connection is refused.
    inventory.write_text(
        "all:\n  hosts:\n"
        "    localhost:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
        "    ghost:\n      ansible_host: 127.0.0.9\n      ansible_port: 9\n"
        "      fleetprof_hw_model: phantom-board\n"
    )
    campaign = tmp_path / "mixed.yml"
    campaign.write_text(
        f"name: mixed\nduration: 2s\nstart: {{lead: 4s}}\n"
        f"target:\n  attach:\n    process: '--token={token}'\n"
    )
    result = fleetprof("run", str(campaign), "-i", str(inventory))
    assert result.returncode == 3, result.stdout + result.stderr
    hosts = {h["name"]: h for h in result.report("mixed")["hosts"]}
    assert hosts["localhost"]["status"] == "ok", hosts["localhost"]["reason"]
    assert hosts["ghost"]["status"] == "unreachable"
    assert "refused" in hosts["ghost"]["reason"].lower()
    assert hosts["ghost"]["hw_model"] == "phantom-board"
