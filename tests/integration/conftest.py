"""Integration tests run real campaigns: the real CLI, real ansible-runner, real py-spy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import FLEETPROF_ARGV
from tests.support.paths import REPO


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    out_root: Path

    def run_dir(self, campaign: str) -> Path:
        runs = sorted((self.out_root / campaign).iterdir())
        assert len(runs) == 1, runs
        return runs[0]

    def report(self, campaign: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.run_dir(campaign) / "report.json").read_text())
        return data


@pytest.fixture
def fleetprof(tmp_path: Path) -> Any:
    """Run the real command line; every run writes under its own output root."""

    def run(*args: str, timeout: float = 240) -> CliResult:
        out_root = tmp_path / "reports"
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        proc = subprocess.run(
            [*FLEETPROF_ARGV, *args, "-o", str(out_root)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env=env,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr, out_root)

    return run


@pytest.fixture
def workload(tmp_path: Path) -> Iterator[Any]:
    """Start Python processes fleetprof has never seen; stop them afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(script: str, *args: str) -> subprocess.Popen[bytes]:
        path = tmp_path / f"workload_{len(procs)}.py"
        path.write_text(script)
        proc = subprocess.Popen([sys.executable, str(path), *args], cwd=tmp_path)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# The real test fleet (tests/fleet): SSH hosts in their own namespaces and cgroups.
from tests.fleet.fixtures import fleet_factory, module_fleet_factory  # noqa: E402

__all__ = ["fleet_factory", "module_fleet_factory"]
