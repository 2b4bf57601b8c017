"""The system sampler's interface counters against bytes the test itself sends.

The real runner (``python3 MODULE ARGS_FILE``) samples the system; inside its window the
test sends a known number of bytes over TCP on 127.0.0.1. Loopback counts each byte once
as received and once as sent by ``lo``, plus the TCP/IP headers (a few hundred bytes per
64 KiB segment and the acknowledgements): both of ``lo``'s byte counters must grow by the
bytes sent within 5%.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tarfile
import threading
import time
from typing import Any

import pytest

from orchestrator.profilers import system
from tests.process.test_system_sampler import campaign
from tests.support.session import builtin_profiler, make_plan, run_module

# Large enough that other loopback traffic on this machine during the 2 s window (an SSH
# session, another test's server) stays far below the 5% tolerance (10 MiB).
SENT = 200 * 1024 * 1024
CHUNK = 1024 * 1024
TOLERANCE = 0.05
WINDOW = 2.0


def send_over_loopback(at: float, done: dict[str, Any]) -> None:
    """At ``at`` (epoch seconds), send SENT bytes to a local sink and wait until it has
    read them all."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        received = 0

        def sink() -> None:
            nonlocal received
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(1 << 20):
                    received += len(chunk)

        reader = threading.Thread(target=sink)
        reader.start()
        time.sleep(max(0.0, at - time.time()))
        done["start"] = time.time()
        with socket.create_connection(("127.0.0.1", port)) as client:
            chunk = b"x" * CHUNK
            for _ in range(SENT // CHUNK):
                client.sendall(chunk)
        reader.join(10)
        done["end"] = time.time()
        done["received"] = received


@pytest.fixture(scope="module")
def sampled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("netdev")
    plan = make_plan(
        tmp_path, {}, [builtin_profiler("system", 0.25)], lead=1.0, window=WINDOW, offset=0.0
    )
    idle = subprocess.Popen(["sleep", "30"])
    done: dict[str, Any] = {}
    sender = threading.Thread(target=send_over_loopback, args=(plan["t0_device"] + 0.4, done))
    try:
        plan["target"]["pid"] = idle.pid
        sender.start()
        run = run_module(tmp_path, plan)
        sender.join(10)
    finally:
        idle.kill()
        idle.wait()
    assert run.result["status"] == "ok", run.result["reason"]
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    samples = [json.loads(line) for line in (session / "system.jsonl").read_text().splitlines()]
    return {
        "done": done,
        "samples": samples,
        "result": system.parse(session, run.manifest["profilers"]["system"], campaign()),
    }


def close(measured: float, truth: float, what: str) -> None:
    assert abs(measured - truth) <= TOLERANCE * truth, f"{what}: {measured} vs {truth} sent"


def test_the_bytes_were_sent_inside_the_window(sampled):
    done, samples = sampled["done"], sampled["samples"]
    assert done["received"] == SENT
    assert samples[0]["t"] < done["start"] and done["end"] < samples[-1]["t"]


def test_loopback_counted_each_byte_once_received_and_once_sent(sampled):
    first, last = sampled["samples"][0]["net"]["lo"], sampled["samples"][-1]["net"]["lo"]
    close(last[0] - first[0], SENT, "lo rx_bytes")
    close(last[4] - first[4], SENT, "lo tx_bytes")


def test_the_report_s_rates_give_back_the_bytes_sent(sampled):
    metrics = sampled["result"].metrics
    covered = sampled["samples"][-1]["t"] - sampled["samples"][0]["t"]
    close(metrics["net.lo.rx_bytes_per_s"] * covered, SENT, "net.lo.rx_bytes_per_s x window")
    close(metrics["net.lo.tx_bytes_per_s"] * covered, SENT, "net.lo.tx_bytes_per_s x window")
    assert metrics["net.lo.rx_packets_per_s"] > 0
    assert metrics["net.lo.rx_errors"] == 0 and metrics["net.lo.rx_drops"] == 0
