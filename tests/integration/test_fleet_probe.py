"""A probe campaign over the real SSH test fleet (tests/fleet): fixed micro-benchmarks
rank the devices of one model, and a CPU-throttled one comes out last on probe.cpu.*."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.fixtures import requires_fleet

pytestmark = [pytest.mark.integration, requires_fleet]


def test_a_probe_campaign_ranks_a_cpu_throttled_host_below_its_unthrottled_peers(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path
) -> None:
    # Three boards of one model; one is held to a tenth of a CPU. The hosts share this
    # machine's cores (two, on the CI box) with each other and with the controller's
    # Ansible, and run their benchmarks at the same time: at a quarter of a CPU the
    # throttled host was not always below a peer that the controller's polling had
    # starved for a repetition or two; a tenth leaves a clear margin. The peers get half a
    # core each, with priority (tests/fleet/README.md): unlimited, on a machine loaded by
    # other work, they fell to the throttled host's speed.
    fleet = fleet_factory({"board": {"count": 3, "cpu": 0.5}}, cpu_priority=True)
    throttled = fleet.hosts[-1].name
    fleet.set_cpu(throttled, 0.1)
    campaign = tmp_path / "fleet-probe.yml"
    campaign.write_text(
        "name: fleet-probe\nduration: 6s\nstart: {lead: 4s}\ntarget: {probe: [cpu]}\n"
    )
    result = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("fleet-probe")
    assert report["mode"] == "probe"
    hosts = {h["name"]: h for h in report["hosts"]}
    assert sorted(hosts) == sorted(h.name for h in fleet.hosts)
    for name, host in hosts.items():
        assert host["status"] == "ok", (name, host["reason"])
        manifest = json.loads(
            (result.run_dir("fleet-probe") / f"hosts/{name}/session/manifest.json").read_text()
        )
        assert manifest["target"]["mode"] == "probe"
    for metric in ("probe.cpu.single_ops_per_s", "probe.cpu.all_ops_per_s"):
        values = {name: host["metrics"][metric] for name, host in hosts.items()}
        assert min(values, key=lambda name: values[name]) == throttled, (metric, values)
        peers = [v for name, v in values.items() if name != throttled]
        assert values[throttled] < 0.85 * min(peers), (metric, values)
