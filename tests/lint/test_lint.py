"""Lint and the device tests, as part of `make test`: each step of `make lint` (the
Makefile's LINT_STEPS), then `make device-test` (the device code's unit tests under the
devices' oldest Python). They run here, not before pytest, so that the worker beside the
exclusive chain (tests/conftest.py) does them while the fleet tests run, instead of the
whole suite waiting for them. `make lint` runs the same steps by hand."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.paths import REPO


def lint_steps() -> list[str]:
    """The steps `make lint` runs, from the Makefile (their one home)."""
    found = re.search(r"^LINT_STEPS\s*:=\s*(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert found, "the Makefile names its LINT_STEPS"
    return found.group(1).split()


def make(target: str) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    output = f"{done.stdout[-6000:]}{done.stderr[-6000:]}"
    assert done.returncode == 0, f"make {target} failed:\n{output}"


def test_lint_has_its_four_steps() -> None:
    assert lint_steps() == ["lint-ruff", "lint-types", "lint-device-types", "lint-ansible"]


@pytest.mark.parametrize("step", lint_steps())
def test_lint(step: str) -> None:
    make(step)


def test_the_device_code_passes_its_tests_under_the_devices_python() -> None:
    make("device-test")
