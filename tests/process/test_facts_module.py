"""The preflight module: what it says about a device, and when py-spy may attach."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from fleetprof_device import facts as facts_module
from tests.support.runner import FACTS_MODULE as MODULE


def load() -> ModuleType:
    return facts_module


@pytest.mark.parametrize(
    ("scope", "root", "cap", "allowed"),
    [
        (None, False, False, True),  # no Yama: classic same-uid rules
        (0, False, False, True),
        (1, False, False, False),  # descendants only
        (1, True, False, True),
        (1, False, True, True),  # CAP_SYS_PTRACE
        (2, False, False, False),
        (2, True, False, True),
        (3, True, True, False),  # nobody, not even root
    ],
)
def test_attach_permission_follows_yama_and_capabilities(
    scope: int | None, root: bool, cap: bool, allowed: bool
) -> None:
    can, reason = load().attach_permission(scope, root, cap)
    assert can is allowed
    assert (reason is None) is allowed
    if not allowed:
        assert "ptrace_scope" in reason


def test_the_module_describes_this_machine_as_json(tmp_path: Path) -> None:
    args = tmp_path / "args"
    args.write_text(json.dumps({"hw_model": "", "tools": {"python": sys.executable}}))
    before = time.time()
    out = subprocess.run(
        [sys.executable, str(MODULE), str(args)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    facts = result["facts"]
    assert facts["arch"] == platform.machine()
    assert facts["cores"] >= 1 and facts["memory_mb"] > 0
    assert facts["hw_model"] and facts["hw_model_source"] in ("device-tree", "dmi", "cpu")
    assert facts["tools"] == {"python": sys.executable}
    assert before <= result["device_time"] <= time.time()


def test_the_inventory_hardware_model_wins(tmp_path: Path) -> None:
    args = tmp_path / "args"
    args.write_text(json.dumps({"hw_model": "jetson-orin-nx"}))
    out = subprocess.run(
        [sys.executable, str(MODULE), str(args)], capture_output=True, text=True, check=True
    )
    facts = json.loads(out.stdout)["facts"]
    assert (facts["hw_model"], facts["hw_model_source"]) == ("jetson-orin-nx", "hostvar")


def test_cpu_quota_is_the_tightest_limit_from_the_cgroup_up_on_cgroup_v2(tmp_path: Path) -> None:
    facts = load()
    root = tmp_path / "cgroup"
    (root / "fleet/host-3").mkdir(parents=True)
    (root / "cpu.max").write_text("max 100000\n")
    (root / "fleet/cpu.max").write_text("150000 100000\n")
    (root / "fleet/host-3/cpu.max").write_text("30000 100000\n")
    cgroup = tmp_path / "self-cgroup"
    cgroup.write_text("0::/fleet/host-3\n")
    assert facts.cpu_quota_cores(str(cgroup), str(root)) == 0.3
    (root / "fleet/host-3/cpu.max").write_text("max 100000\n")
    assert facts.cpu_quota_cores(str(cgroup), str(root)) == 1.5
    (root / "fleet/cpu.max").write_text("max 100000\n")
    assert facts.cpu_quota_cores(str(cgroup), str(root)) is None


def test_cpu_quota_on_cgroup_v1_reads_the_cpu_controller(tmp_path: Path) -> None:
    facts = load()
    root = tmp_path / "cgroup"
    leaf = root / "cpu,cpuacct/fleet/host-1"
    leaf.mkdir(parents=True)
    (root / "cpu,cpuacct/cpu.cfs_quota_us").write_text("-1\n")
    (root / "cpu,cpuacct/cpu.cfs_period_us").write_text("100000\n")
    (leaf / "cpu.cfs_quota_us").write_text("6000\n")
    (leaf / "cpu.cfs_period_us").write_text("20000\n")
    cgroup = tmp_path / "self-cgroup"
    cgroup.write_text("12:memory:/fleet/host-1\n4:cpu,cpuacct:/fleet/host-1\n")
    assert facts.cpu_quota_cores(str(cgroup), str(root)) == 0.3


def test_the_fingerprint_names_what_it_could_not_read_as_none() -> None:
    fingerprint = load().fingerprint()
    assert set(fingerprint) == {
        "firmware",
        "cpu_governor",
        "cpu_max_mhz",
        "cpu_scaling_max_mhz",
        "cpu_quota_cores",
    }
    assert all(v is None or isinstance(v, str | float) for v in fingerprint.values())


def test_files_are_hashed_where_asked_and_anything_but_a_regular_file_is_left_out(
    tmp_path: Path,
) -> None:
    facts = load()
    home = tmp_path / "home"
    (home / "tools").mkdir(parents=True)
    (home / "tools/py-spy").write_bytes(b"binary")
    (home / "tools/link").symlink_to(home / "tools/py-spy")
    asked = ["~/tools/py-spy", "~/tools/link", "~/tools/missing", str(home / "tools"), 7]
    found = facts.file_sha256(asked, str(home))
    assert found == {
        str(
            home / "tools/py-spy"
        ): "9a3a45d01531a20e89ac6ae10b0b0beb0492acd7216a368aa062d1a5fecaf9cd"
    }
    assert facts.file_sha256(None, str(home)) == {}
