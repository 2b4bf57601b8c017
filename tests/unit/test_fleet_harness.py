"""The test fleet's pure parts: model specs, CPU quotas, cgroup discovery, inventory, registry.

The fleet itself (real sshd hosts) is tested in tests/fleet/test_harness.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.fleet import Fleet, FleetError, FleetHost, ModelSpec, registry
from tests.fleet.cgroups import Cgroup, CgroupV1, cpu_quota_us, v1_mounts
from tests.fleet.harness import check_directory

MOUNTINFO = """\
25 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
29 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_model_specs_come_as_counts_mappings_or_command_line_text() -> None:
    assert ModelSpec.of(3) == ModelSpec(count=3, cpu=None)
    assert ModelSpec.of({"count": 2, "cpu": 0.5}) == ModelSpec(2, 0.5)
    assert ModelSpec.parse("model-b=3:0.3") == ("model-b", ModelSpec(3, 0.3))
    assert ModelSpec.parse("model-a=3") == ("model-a", ModelSpec(3, None))
    for bad in ("model-a", "=3", "model-a=x", "model-a=0", "model-a=1:-1"):
        with pytest.raises(ValueError):
            ModelSpec.parse(bad)
    with pytest.raises(ValueError, match="unknown model spec keys"):
        ModelSpec.of({"count": 1, "cores": 2})


def test_a_cpu_fraction_becomes_a_cfs_quota() -> None:
    assert cpu_quota_us(None) is None
    assert cpu_quota_us(0.2) == 4_000  # of a 20 ms period
    assert cpu_quota_us(1.5) == 30_000
    assert cpu_quota_us(0.001) == 1000  # the kernel's minimum
    with pytest.raises(ValueError):
        cpu_quota_us(0)


def test_v1_hierarchies_are_found_in_mountinfo() -> None:
    assert v1_mounts(MOUNTINFO) == {
        "cpu": Path("/sys/fs/cgroup/cpu"),
        "cpuacct": Path("/sys/fs/cgroup/cpuacct"),
        "freezer": Path("/sys/fs/cgroup/freezer"),
    }
    comounted = "26 25 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    mounts = v1_mounts(comounted)
    assert mounts["cpu"] == mounts["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    cgroup = Cgroup(1, {"cpu": mounts["cpu"] / "x", "cpuacct": mounts["cpuacct"] / "x"})
    assert cgroup.procs_files() == ["/sys/fs/cgroup/cpu,cpuacct/x/cgroup.procs"]


def test_quotas_are_written_in_each_versions_files(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    Cgroup(2, {"unified": v2}).set_cpu(0.3)
    assert (v2 / "cpu.max").read_text() == "6000 20000"
    Cgroup(2, {"unified": v2}).set_cpu(None)
    assert (v2 / "cpu.max").read_text() == "max 20000"

    v1 = tmp_path / "v1"
    v1.mkdir()
    Cgroup(1, {"cpu": v1, "freezer": v1}).set_cpu(0.5)
    assert (v1 / "cpu.cfs_quota_us").read_text() == "10000"
    assert (v1 / "cpu.cfs_period_us").read_text() == "20000"


def _fleet(directory: Path) -> Fleet:
    def host(name: str, model: str, address: str) -> FleetHost:
        return FleetHost(
            name=name,
            model=model,
            address=address,
            port=2222,
            cpu=None,
            directory=directory / "hosts" / name,
            cgroup=Cgroup(1, {"freezer": Path("/nonexistent")}),
            private_dirs={"/tmp": directory / "hosts" / name / "fs" / "tmp"},
        )

    hosts = [host("jetson-1", "jetson", "127.0.0.11"), host("rpi4-1", "rpi4", "127.0.0.12")]
    return Fleet("f1", directory, hosts, CgroupV1({}))


def test_the_inventory_groups_hosts_by_model_with_strict_host_key_checking(
    tmp_path: Path,
) -> None:
    fleet = _fleet(tmp_path)
    inventory = yaml.safe_load(fleet.inventory_yaml())
    groups = inventory["all"]["children"]
    assert sorted(groups) == ["jetson", "rpi4"]
    assert groups["rpi4"]["hosts"]["rpi4-1"] == {
        "ansible_host": "127.0.0.12",
        "ansible_port": 2222,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(tmp_path / "client_key"),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={tmp_path / 'known_hosts'} -o StrictHostKeyChecking=yes"
        ),
        "ansible_python_interpreter": "/usr/bin/python3",
        "fleetprof_hw_model": "rpi4",
    }


def test_a_hosts_private_paths_map_to_the_controller(tmp_path: Path) -> None:
    host = _fleet(tmp_path).host("jetson-1")
    assert host.private_path("/tmp/a/b") == tmp_path / "hosts/jetson-1/fs/tmp/a/b"
    with pytest.raises(ValueError):
        host.private_path("/etc/passwd")


def test_a_fleet_directory_below_a_private_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="must not be under /tmp"):
        check_directory(Path("/tmp/fleet-x"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("")
    if not str(tmp_path).startswith("/tmp"):
        with pytest.raises(FleetError, match="not empty"):
            check_directory(tmp_path / "full")


def test_addresses_skip_those_of_registered_fleets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(registry.FLEETS_DIR_ENV, str(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    registry.write_json(
        other / registry.STATE_FILE,
        {"hosts": [{"address": "127.0.0.11"}, {"address": "127.0.0.12"}]},
    )
    with registry.locked():
        registry.register("other", other)
        addresses = registry.allocate_addresses(2, port=2222)
    assert "127.0.0.11" not in addresses and "127.0.0.12" not in addresses
    assert all(a.startswith("127.") for a in addresses)
    assert registry.registered() == {"other": other}
    registry.unregister("other")
    assert registry.registered() == {}


def test_a_fleet_owner_is_alive_only_while_its_process_runs() -> None:
    assert registry.owner_alive(registry.owner())
    assert not registry.owner_alive({"pid": os.getpid(), "start": -1})
    assert not registry.owner_alive(None)
