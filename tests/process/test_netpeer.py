"""The controller's network probe peer (orchestrator/stages/netpeer.py) on real sockets:
what it serves, and everything it turns away or cuts short."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from fleetprof_device import netserve
from fleetprof_device.contract import NET_ECHO_BYTES, NET_PROTOCOL
from orchestrator.stages.netpeer import NetPeer, start_peer


@pytest.fixture
def peer() -> Iterator[tuple[NetPeer, int, str]]:
    served, plans = start_peer({"dev1": "127.0.0.1"}, [])
    try:
        yield served, int(plans["dev1"]["port"]), str(plans["dev1"]["token"])
    finally:
        served.close()


def connect(port: int, first: bytes, host: str = "127.0.0.1") -> socket.socket:
    conn = socket.create_connection((host, port), timeout=5)
    conn.sendall(first)
    return conn


def closed_without_answer(conn: socket.socket) -> bool:
    try:
        return conn.recv(100) == b""
    except ConnectionResetError:
        return True
    finally:
        conn.close()


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_echo_returns_each_message_and_sink_counts_every_byte(
    peer: tuple[NetPeer, int, str],
) -> None:
    served, port, token = peer
    with connect(port, f"{NET_PROTOCOL} echo {token}\n".encode()) as echo:
        for index in range(5):
            message = bytes([index]) * NET_ECHO_BYTES
            echo.sendall(message)
            got = b""
            while len(got) < NET_ECHO_BYTES:
                got += echo.recv(NET_ECHO_BYTES)
            assert got == message
    with connect(port, f"{NET_PROTOCOL} sink {token}\n".encode()) as sink:
        sink.sendall(b"z" * 3_000_001)
        sink.shutdown(socket.SHUT_WR)
        assert sink.recv(100) == b"received 3000001\n"
    assert served.received["dev1"] == 3_000_001 and served.served["dev1"] == 2
    assert not served.turned_away


def test_unknown_tokens_garbage_and_overlong_first_lines_are_turned_away(
    peer: tuple[NetPeer, int, str],
) -> None:
    served, port, token = peer
    assert closed_without_answer(connect(port, f"{NET_PROTOCOL} sink {'0' * 32}\n".encode()))
    assert closed_without_answer(connect(port, f"{NET_PROTOCOL} shell {token}\n".encode()))
    assert closed_without_answer(connect(port, b"GET / HTTP/1.0\r\n\r\n"))
    assert closed_without_answer(connect(port, b"x" * 4096))
    assert wait_until(lambda: sum(served.turned_away.values()) == 4)
    assert served.turned_away["an unknown token or protocol"] == 3
    assert served.turned_away["no or an overlong first line"] == 1
    assert served.received["dev1"] == 0


def test_caps_on_bytes_silence_time_and_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netserve, "NET_SINK_MAX_BYTES", 1 << 20)
    monkeypatch.setattr(netserve, "NET_HEADER_WAIT_S", 0.3)
    monkeypatch.setattr(netserve, "NET_CONN_MAX_S", 0.6)
    monkeypatch.setattr(netserve, "MAX_CONNECTIONS", 2)
    served, plans = start_peer({"dev1": None}, [])
    port, token = int(plans["dev1"]["port"]), str(plans["dev1"]["token"])
    try:
        flood = connect(port, f"{NET_PROTOCOL} sink {token}\n".encode())
        with flood, pytest.raises(OSError):  # cut off past the cap: never an answer
            for _ in range(64):
                flood.sendall(b"f" * (1 << 16))
            flood.shutdown(socket.SHUT_WR)
            if flood.recv(100) == b"":
                raise ConnectionResetError("closed")
        began = time.monotonic()
        assert closed_without_answer(connect(port, b""))  # silent: dropped after 0.3 s
        assert time.monotonic() - began < 2.0
        began = time.monotonic()
        with connect(port, f"{NET_PROTOCOL} echo {token}\n".encode()) as idle:
            assert idle.recv(10) == b""  # the connection's 0.6 s are up
        assert 0.4 < time.monotonic() - began < 2.0
        held = [connect(port, f"{NET_PROTOCOL} echo {token}\n".encode()) for _ in range(2)]
        assert wait_until(lambda: served.served["dev1"] == 4)  # flood, idle and these two
        assert closed_without_answer(connect(port, b""))  # a third at once: turned away
        for conn in held:
            conn.close()
        assert served.turned_away["more than 2 connections at once"] == 1
        assert served.turned_away[f"more than {1 << 20} bytes"] == 1
    finally:
        served.close()


def local_non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: only a route is looked up
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_only_inventory_addresses_and_loopback_may_connect() -> None:
    address = local_non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    strangers, plans = start_peer({"dev1": address}, ["192.0.2.50"])
    friends, friendly = start_peer({"dev1": address}, [address])
    try:
        port = int(plans["dev1"]["port"])
        token = str(plans["dev1"]["token"])
        # From this machine's own non-loopback address, which is not in that inventory.
        assert closed_without_answer(
            connect(port, f"{NET_PROTOCOL} echo {token}\n".encode(), address)
        )
        assert wait_until(lambda: strangers.turned_away["not an inventory address"] == 1)
        port = int(friendly["dev1"]["port"])
        token = str(friendly["dev1"]["token"])
        with connect(port, f"{NET_PROTOCOL} sink {token}\n".encode(), address) as sink:
            sink.shutdown(socket.SHUT_WR)
            assert sink.recv(100) == b"received 0\n"
    finally:
        strangers.close()
        friends.close()


def test_an_address_the_controller_does_not_have_gives_the_host_a_reason() -> None:
    served, plans = start_peer({"far": "192.0.2.7", "near": None, "junk": "<b>"}, [])
    try:
        assert "the controller cannot listen on 192.0.2.7" in str(plans["far"]["error"])
        assert plans["near"]["host"] == "127.0.0.1"
        assert plans["junk"]["host"] == "127.0.0.1"  # not an address: treated as no SSH
        assert plans["near"]["token"] != plans["junk"]["token"]
    finally:
        served.close()


def test_close_ends_open_connections_at_once() -> None:
    served, plans = start_peer({"dev1": None}, [])
    port, token = int(plans["dev1"]["port"]), str(plans["dev1"]["token"])
    conn = connect(port, f"{NET_PROTOCOL} echo {token}\n".encode())
    assert wait_until(lambda: served.served["dev1"] == 1)
    began = time.monotonic()
    served.close()
    assert time.monotonic() - began < 1.0
    assert closed_without_answer(conn)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
