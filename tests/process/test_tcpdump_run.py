"""tcpdump run by the real device runner on loopback while a launched program sends a known
number of UDP datagrams of a known size to a known port (and receives them itself, so no
ICMP answer adds packets): the top talker's packet count equals what was sent, its bytes
within 5% of the frames' length (Ethernet 14 + IPv4 20 + UDP 8 + payload: each datagram is
seen once on `lo`, measured), the pcap comes back in the archive, and the summary was made
on the device by the post step. tcpdump is stopped with SIGINT at the deadline."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from fleetprof_device.contract import STOP_AT_DEADLINE_OPTION
from orchestrator.profilers import tcpdump
from tests.support.factories import campaign, host_facts
from tests.support.session import make_plan, run_module

WINDOW_S = 3.0
DATAGRAMS = 300
PAYLOAD = 200
FRAME = 14 + 20 + 8 + PAYLOAD
PROGRAM = """\
import socket
import sys
import time

port, count, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
inbox.bind(("127.0.0.1", port))
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
time.sleep(1.0)  # tcpdump starts with the program: let it open the interface first
for _ in range(count):
    out.sendto(b"x" * size, ("127.0.0.1", port))
    inbox.recv(65536)
    time.sleep(0.001)
time.sleep(30)
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_tcpdump_counts_every_datagram_sent_on_loopback(tmp_path: Path) -> None:
    binary = shutil.which("tcpdump")
    if binary is None:
        pytest.skip("tcpdump is not installed (scripts/system-deps.sh installs it as root)")
    port = free_udp_port()
    program = tmp_path / "send.py"
    program.write_text(PROGRAM)
    command = ["python3", str(program), str(port), str(DATAGRAMS), str(PAYLOAD)]
    chosen = campaign(
        target={"launch": {"command": command}},
        profilers={"tcpdump": {"interface": "lo", "filter": f"udp and port {port}"}},
    )
    planned = tcpdump.plan(chosen, host_facts(tools={"tcpdump": binary}, is_root=True), None)
    assert planned.status == "planned" and planned.options[STOP_AT_DEADLINE_OPTION] is True
    plan = make_plan(
        tmp_path,
        {"mode": "launch", "command": command},
        [dataclasses.asdict(planned)],
        window=WINDOW_S,
        lead=0.5,
    )

    run = run_module(tmp_path, plan, timeout=60)

    entry = run.manifest["profilers"]["tcpdump"]
    said = entry.get("stderr_tail", "")
    if "permission" in said.lower() or "not permitted" in said.lower():
        pytest.skip(f"tcpdump may not capture here: {said[-200:]}")
    assert entry["status"] == "ok", (entry["reason"], said)
    assert entry["signals_sent"] == ["SIGINT"]
    assert entry["stopped_at_device"] - run.manifest["deadline_device"] < 1.0
    assert [step["status"] for step in entry["post"]] == ["ok"], entry["post"]
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    pcap = session / tcpdump.PCAP
    assert pcap.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"  # the pcap itself came back
    assert pcap.stat().st_size == 24 + DATAGRAMS * (16 + 96)  # headers only: snaplen 96
    result = tcpdump.parse(session, entry, chosen)

    top = result.tables[tcpdump.TALKERS][0]
    print(
        f"sent {DATAGRAMS} datagrams ({DATAGRAMS * FRAME} frame bytes); tcpdump: "
        f"{top['packets']} packets, {top['bytes']} bytes; stderr counts "
        f"{tcpdump.stderr_counts(said)}; captured {result.metrics['tcpdump.captured_s']} s"
    )
    assert (top["src"], top["dst"], top["proto"], top["dport"]) == (
        "127.0.0.1",
        "127.0.0.1",
        "udp",
        port,
    )
    assert top["packets"] == DATAGRAMS
    assert top["bytes"] == pytest.approx(DATAGRAMS * FRAME, rel=0.05)
    assert result.metrics["tcpdump.packets"] == DATAGRAMS
    assert result.metrics["tcpdump.dropped"] == 0.0
    assert result.data_quality == []


def test_a_filter_tcpdump_cannot_compile_is_partial_with_its_line(tmp_path: Path) -> None:
    binary = shutil.which("tcpdump")
    if binary is None:
        pytest.skip("tcpdump is not installed (scripts/system-deps.sh installs it as root)")
    chosen = campaign(profilers={"tcpdump": {"interface": "lo", "filter": "port port"}})
    planned = tcpdump.plan(chosen, host_facts(tools={"tcpdump": binary}, is_root=True), None)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        plan = make_plan(
            tmp_path, {"mode": "attach", "pid": sleeper.pid}, [dataclasses.asdict(planned)]
        )
        run = run_module(tmp_path, plan, timeout=60)
    finally:
        sleeper.kill()
        sleeper.wait()

    entry = run.manifest["profilers"]["tcpdump"]
    # tcpdump exits 1 at once: no pcap; the summary step says it could not read one.
    assert entry["status"] == "partial" and "exit code 1" in entry["reason"]
    assert "output 'tcpdump.pcap' was not written" in entry["reason"]
    assert "can't parse filter expression" in entry["stderr_tail"]
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    result = tcpdump.parse(session, entry, chosen)
    assert result.metrics == {} and not (session / tcpdump.PCAP).exists()
    assert result.data_quality[0].startswith("the device could not read the capture: ")
    assert result.data_quality[1:] == [
        "tcpdump said: tcpdump: can't parse filter expression: syntax error"
    ]
