"""The network probe's peer server on the device's oldest Python (3.8 syntax): it keeps
accepting after idle polls (socket.timeout is not TimeoutError before 3.10), echoes,
counts, and turns an unknown token away."""

import socket
import time

from fleetprof_device.contract import NET_ECHO_BYTES, NET_PROTOCOL
from fleetprof_device.netserve import ACCEPT_POLL_S, PeerServer


def test_it_serves_after_idle_polls_and_refuses_unknown_tokens() -> None:
    server = PeerServer(set())
    try:
        port = server.listen("127.0.0.1")
        token = server.token_for("dev")
        time.sleep(3 * ACCEPT_POLL_S)  # a few accept timeouts first
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(f"{NET_PROTOCOL} echo {token}\n".encode())
            conn.sendall(b"e" * NET_ECHO_BYTES)
            got = b""
            while len(got) < NET_ECHO_BYTES:
                got += conn.recv(NET_ECHO_BYTES)
            assert got == b"e" * NET_ECHO_BYTES
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(f"{NET_PROTOCOL} sink {token}\n".encode() + b"s" * 1000)
            conn.shutdown(socket.SHUT_WR)
            assert conn.recv(100) == b"received 1000\n"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(f"{NET_PROTOCOL} sink {'f' * 32}\n".encode())
            assert conn.recv(100) == b""
        assert server.served["dev"] == 2 and server.received["dev"] == 1000
        assert server.turned_away["an unknown token or protocol"] == 1
    finally:
        server.close()
