"""The network probe end to end on this machine: the controller's real peer
(orchestrator/stages/netpeer.py) listening, the real device runner measuring against it
over loopback; and a peer that refuses or hangs failing only the network benchmark."""

from __future__ import annotations

import json
import socket
import tarfile
import threading
from pathlib import Path
from typing import Any

from fleetprof_device.contract import NET_TOKEN_CHARS
from orchestrator.stages.netpeer import start_peer
from orchestrator.stages.probe import parse_probe
from tests.support.session import make_plan, run_module


def probe_plan(tmp_path: Path, kinds: list[str], peer: Any, window: float = 2.0) -> dict:
    target = {
        "mode": "probe",
        "probe": kinds,
        "probe_seconds": 0.8,
        "probe_repeats": 3,
        "probe_peer": peer,
    }
    return make_plan(tmp_path, target, [], window=window)


def unpack(run: Any, tmp_path: Path) -> Path:
    out = tmp_path / "unpacked"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(out, filter="data")
    return out


def test_the_device_measures_throughput_and_round_trips_against_the_controller_s_peer(
    tmp_path: Path,
) -> None:
    peer, peers = start_peer({"dev1": None}, ["127.0.0.1"])
    try:
        assert peers["dev1"]["host"] == "127.0.0.1"
        plan = probe_plan(tmp_path, ["network"], peers["dev1"])
        run = run_module(tmp_path, plan)
    finally:
        peer.close()
    assert run.result["status"] == "ok", run.result["reason"]
    assert run.finished_at < plan["deadline_device"] + 1.0
    result = json.loads(run.read("probe.json"))["results"]["network"]
    assert result["error"] is None and result["peer"] == f"127.0.0.1:{peers['dev1']['port']}"
    sends = result["send"]["reps"]
    assert len(sends) == 3 and len(result["rtt"]["reps"]) == 3
    # What the device reports is what the peer itself counted, byte for byte; every byte
    # it handed to the kernel arrived.
    assert sum(rep["bytes"] for rep in sends) == peer.received["dev1"] > 0
    assert all(rep["bytes"] == rep["sent"] for rep in sends)
    assert peer.served["dev1"] == 4 and not peer.turned_away  # one echo, three sinks
    parsed = parse_probe(unpack(run, tmp_path), ["network"])
    metrics = parsed.metrics
    # Loopback on a 2-core machine: well over 10 MB/s, a round trip well under 50 ms.
    assert metrics["probe.network.send_mb_per_s"] > 10.0
    assert 0.0 < metrics["probe.network.rtt_ms"] < 50.0
    mb = [rep["bytes"] / rep["seconds"] / 2**20 for rep in sends]
    assert min(mb) <= metrics["probe.network.send_mb_per_s"] <= max(mb)
    # The receiver's own view: each repetition's bytes over the time from the peer reading
    # its first line to its last byte. The device's time adds the connection's set-up and
    # the count's way back: a little slower, never faster.
    seen = [size / seconds / 2**20 for _, size, seconds in peer.sinks]
    for device, receiver in zip(mb, seen, strict=True):
        assert 0.85 * receiver <= device <= 1.01 * receiver, (mb, seen)


def test_a_peer_that_refuses_fails_the_network_benchmark_only(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there
    token = "a" * NET_TOKEN_CHARS
    plan = probe_plan(
        tmp_path, ["memory", "network"], {"host": "127.0.0.1", "port": port, "token": token}
    )
    run = run_module(tmp_path, plan)
    assert run.result["status"] == "partial"
    assert (
        f"probe network: the peer 127.0.0.1:{port} refused the connection" in run.result["reason"]
    )
    parsed = parse_probe(unpack(run, tmp_path), ["memory", "network"])
    assert parsed.metrics["probe.memory.copy_mb_per_s"] > 0
    assert "probe.network.send_mb_per_s" not in parsed.metrics
    assert f"probe network: the peer 127.0.0.1:{port} refused the connection" in parsed.data_quality


def test_a_peer_that_hangs_is_given_up_on_by_the_deadline(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        port = silent.getsockname()[1]
        token = "b" * NET_TOKEN_CHARS
        plan = probe_plan(
            tmp_path, ["network"], {"host": "127.0.0.1", "port": port, "token": token}, 1.5
        )
        run = run_module(tmp_path, plan)
    assert run.finished_at < plan["deadline_device"] + 1.0
    assert run.result["status"] == "failed"
    assert f"the peer 127.0.0.1:{port} did not answer in time" in run.result["reason"]


def test_a_plan_without_a_peer_says_so(tmp_path: Path) -> None:
    plan = probe_plan(tmp_path, ["network"], {"error": "the controller cannot listen on 10.9.9.9"})
    run = run_module(tmp_path, plan)
    assert (
        "probe network: no peer: the controller cannot listen on 10.9.9.9" in run.result["reason"]
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_inventory_host_as_the_peer_serves_the_others_until_its_deadline(
    tmp_path: Path,
) -> None:
    """Two runners at once: ``peer`` serves (target.serve_peer) and measures itself against
    the controller; ``device`` measures against ``peer``."""
    controller, peers = start_peer({"peer": None}, [])
    port, token = free_port(), "c" * NET_TOKEN_CHARS
    serve = {"port": port, "tokens": {token: "device"}, "allowed": ["127.0.0.1"]}
    (tmp_path / "peer").mkdir()
    (tmp_path / "device").mkdir()
    peer_plan = probe_plan(tmp_path / "peer", ["network"], peers["peer"], window=3.0)
    peer_plan["target"]["serve_peer"] = serve
    device_plan = probe_plan(
        tmp_path / "device", ["network"], {"host": "127.0.0.1", "port": port, "token": token}
    )
    # The device's window opens after the peer's (a device late by half a second).
    device_plan["t0_device"] = peer_plan["t0_device"] + 0.5
    device_plan["deadline_device"] = device_plan["t0_device"] + 2.0
    runs: dict[str, Any] = {}

    def run(name: str, plan: dict) -> None:
        runs[name] = run_module(tmp_path / name, plan)

    threads = [
        threading.Thread(target=run, args=("peer", peer_plan)),
        threading.Thread(target=run, args=("device", device_plan)),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        controller.close()
    assert runs["device"].result["status"] == "ok", runs["device"].result["reason"]
    assert runs["peer"].result["status"] == "ok", runs["peer"].result["reason"]
    # The peer served until its deadline, past the device's whole probe.
    assert runs["peer"].finished_at >= runs["device"].finished_at - 0.5
    device = json.loads(runs["device"].read("probe.json"))["results"]["network"]
    assert device["peer"] == f"127.0.0.1:{port}" and device["error"] is None
    served = json.loads(runs["peer"].read("probe.json"))["serving"]
    assert served["error"] is None and served["served"] == {"device": 4}
    assert served["received"]["device"] == sum(rep["bytes"] for rep in device["send"]["reps"])
    assert controller.served["peer"] == 4  # the peer's own probe: against the controller
    parsed = parse_probe(unpack(runs["device"], tmp_path / "device"), ["network"])
    assert parsed.metrics["probe.network.send_mb_per_s"] > 10.0
    assert parsed.metrics["probe.network.rtt_ms"] > 0
