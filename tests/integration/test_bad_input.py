"""Bad input: one clear message naming the file and key, exit 2, no traceback, nothing run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def test_a_bad_campaign_exits_2_with_the_key_and_no_traceback(
    fleetprof: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nduration: soon\ntarget:\n  attach: {pid: -3}\n")
    result = fleetprof("run", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "bad.yml" in result.stderr
    assert "duration" in result.stderr and "target.attach.pid" in result.stderr
    assert not result.out_root.exists()


@pytest.mark.parametrize(
    ("inventory", "expected"),
    [
        ("missing.yml", "inventory not found"),
        ("broken.yml", "YAML syntax error"),
    ],
)
def test_a_bad_inventory_exits_2_naming_it(
    fleetprof: Any, tmp_path: Path, inventory: str, expected: str
) -> None:
    (tmp_path / "broken.yml").write_text("all: [\n")
    campaign = tmp_path / "ok.yml"
    campaign.write_text("name: x\nduration: 1s\ntarget:\n  attach: {pid: 1}\n")
    result = fleetprof("run", str(campaign), "-i", str(tmp_path / inventory))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert inventory in result.stderr and expected in result.stderr


def test_a_pattern_that_selects_no_host_exits_2(fleetprof: Any, tmp_path: Path) -> None:
    campaign = tmp_path / "ok.yml"
    campaign.write_text("name: x\nhosts: cameras\nduration: 1s\ntarget:\n  attach: {pid: 1}\n")
    result = fleetprof("run", str(campaign))
    assert result.returncode == 2
    assert "'cameras' matches no hosts" in result.stderr
