"""The flow's part in the network probe: a peer listens for the session play only, and the
plans the session runs name it (their address, port and own token); without ``network``
in the probe there is no peer and the plans are unchanged."""

from __future__ import annotations

import ipaddress
import socket
import threading
from pathlib import Path

from fleetprof_device.contract import NET_PEER_PORT
from orchestrator.stages.flow import CampaignRun
from orchestrator.stages.inventory import Inventory
from orchestrator.stages.plan import make_plan
from tests.support.factories import campaign, host_facts


class QuietUi:
    def stage(self, name: str, hosts: int) -> None: ...
    def host(self, stage: str, host: str, event: str) -> None: ...
    def window(self, t0: float, deadline: float) -> None: ...
    def note(self, text: str) -> None: ...


def flow(tmp_path: Path, probe: list[str], peer: str | None = None) -> CampaignRun:
    hosts = ["edge-1", "edge-2", "edge-3"]
    source = tmp_path / "hosts.yml"
    source.write_text(
        "all:\n  hosts:\n"
        + "".join(f"    {h}:\n      ansible_host: 127.0.0.{i + 2}\n" for i, h in enumerate(hosts))
    )
    run = CampaignRun(
        campaign(target={"probe": probe, "network_peer": peer}, profilers={}),
        Inventory(source=str(source), hosts=hosts),
        tmp_path / "out",
        forks=None,
        ui=QuietUi(),
        cancel=threading.Event(),
    )
    for host, seen in zip(hosts, ("127.0.0.1", None, None), strict=True):
        run.facts[host] = host_facts(host=host, controller_address=seen)
        run.run.write_plan(make_plan(run.campaign, run.facts[host], run.run.run_id, {}, 0.0))
    return run


def test_the_session_s_plans_name_a_listening_peer(tmp_path: Path) -> None:
    run = flow(tmp_path, ["cpu", "network"])
    peer, peers = run.network_peer()
    assert peer is not None
    try:
        run.schedule(peers)
        plans = {host: run.run.read_plan(host) for host in run.active}
        found = {h: p.target.probe_peer or {} for h, p in plans.items() if p is not None}
        assert found["edge-1"]["host"] == found["edge-2"]["host"] == "127.0.0.1"
        assert found["edge-1"]["port"] == found["edge-2"]["port"]  # one listener per address
        assert found["edge-1"]["token"] != found["edge-2"]["token"]
        assert peer.allowed == {ipaddress.ip_address(f"127.0.0.{i}") for i in (2, 3, 4)}
        socket.create_connection(("127.0.0.1", found["edge-1"]["port"]), timeout=2).close()
    finally:
        peer.close()


def test_no_network_probe_no_peer(tmp_path: Path) -> None:
    run = flow(tmp_path, ["cpu"])
    assert run.network_peer() == (None, {})
    run.schedule({})
    plan = run.run.read_plan("edge-1")
    assert plan is not None and plan.target.probe_peer is None


def test_an_inventory_host_as_the_peer(tmp_path: Path) -> None:
    run = flow(tmp_path, ["network"], peer="edge-2")
    peer, targets = run.network_peer()
    assert peer is not None
    try:
        run.schedule(targets)
    finally:
        peer.close()
    plans = {host: run.run.read_plan(host) for host in run.active}
    target = {h: p.target for h, p in plans.items() if p is not None}
    serve = target["edge-2"].serve_peer or {}
    assert serve["port"] == NET_PEER_PORT
    assert serve["allowed"] == ["127.0.0.2", "127.0.0.4"]  # the others' addresses
    assert (target["edge-2"].probe_peer or {})["host"] == "127.0.0.1"  # itself: the controller
    for host in ("edge-1", "edge-3"):
        probe_peer = target[host].probe_peer or {}
        assert (probe_peer["host"], probe_peer["port"]) == ("127.0.0.3", NET_PEER_PORT)
        assert serve["tokens"][probe_peer["token"]] == host
        assert target[host].serve_peer is None
    assert peer.tokens and set(peer.tokens.values()) == {"edge-2"}


def test_a_peer_host_not_in_the_session_fails_the_others_with_the_reason(tmp_path: Path) -> None:
    run = flow(tmp_path, ["network"], peer="edge-9")
    peer, targets = run.network_peer()
    assert peer is not None
    peer.close()
    assert set(targets) == {"edge-1", "edge-2", "edge-3"}
    assert targets["edge-1"]["probe_peer"] == {
        "error": "the peer host edge-9 is not in this session (not in the inventory, "
        "unreachable or skipped)"
    }
