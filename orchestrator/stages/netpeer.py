"""The network probe's peer: a small, bounded TCP echo and sink the controller runs while
the session play runs (``target.probe: [network]``; fleetprof_device/netprobe.py is the
other end, the protocol is the contract's NET_*).

It listens on the addresses the devices reach the controller on (each device's
``controller_address`` fact: where its SSH connection came from; 127.0.0.1 for a device
reached without SSH), on a port the kernel picks. It accepts a connection only from an
inventory host's address or the loopback, and serves it only when its first line, within
NET_HEADER_WAIT_S, carries a token this session gave a device; every connection is capped
in bytes (NET_SINK_MAX_BYTES, NET_ECHO_MAX messages) and in time (NET_CONN_MAX_S), and at
most MAX_CONNECTIONS are served at once. What it turned away is counted by reason.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from fleetprof_device.contract import (
    NET_CONN_MAX_S,
    NET_ECHO_BYTES,
    NET_ECHO_MAX,
    NET_HEADER_MAX,
    NET_HEADER_WAIT_S,
    NET_PROTOCOL,
    NET_SINK_MAX_BYTES,
    NET_TOKEN_CHARS,
)

MAX_CONNECTIONS = 256
CLOSE_WAIT_S = 2.0
ACCEPT_POLL_S = 0.2
READ_BLOCK = 256 * 1024
LOOPBACK = "127.0.0.1"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_or_none(text: object) -> IpAddress | None:
    """An IP address (device data or an inventory value), IPv4-mapped IPv6 as IPv4."""
    if not isinstance(text, str):
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def resolve(names: Iterable[str]) -> set[IpAddress]:
    """Every address the inventory's host addresses (or names) resolve to."""
    found: set[IpAddress] = set()
    for name in names:
        direct = ip_or_none(name)
        if direct is not None:
            found.add(direct)
            continue
        with contextlib.suppress(OSError, UnicodeError):
            for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP):
                if (address := ip_or_none(str(info[4][0]).split("%")[0])) is not None:
                    found.add(address)
    return found


class NetPeer:
    """The listeners and the tokens of one session; ``close()`` ends every connection."""

    def __init__(self, allowed: set[IpAddress]) -> None:
        self.allowed = allowed
        self.tokens: dict[str, str] = {}  # token -> host
        self.turned_away: Counter[str] = Counter()
        self.served: Counter[str] = Counter()  # host -> connections served
        self.received: Counter[str] = Counter()  # host -> bytes its sinks counted
        # Per sink connection: (host, bytes, seconds from its first line to its last byte).
        self.sinks: list[tuple[str, int, float]] = []
        self._listeners: dict[str, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ set-up

    def listen(self, address: str) -> int:
        """Listen on ``address`` (once per address); its port. OSError when the controller
        has no such address (a device behind NAT sees another one)."""
        if address in self._listeners:
            return int(self._listeners[address].getsockname()[1])
        ip = ip_or_none(address)
        if ip is None:
            raise OSError(f"{address!r} is not an IP address")
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        listener = socket.create_server((str(ip), 0), family=family, backlog=64)
        listener.settimeout(ACCEPT_POLL_S)
        self._listeners[address] = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return int(listener.getsockname()[1])

    def token_for(self, host: str) -> str:
        token = secrets.token_hex(NET_TOKEN_CHARS // 2)
        with self._lock:
            self.tokens[token] = host
        return token

    def close(self) -> None:
        """Stop listening and end the connections still open (the session is over)."""
        self._stop.set()
        for listener in self._listeners.values():
            with contextlib.suppress(OSError):
                listener.close()
        with self._lock:
            still_open = list(self._open)
        for conn in still_open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        ends = time.monotonic() + CLOSE_WAIT_S
        for thread in list(self._threads):
            thread.join(max(0.0, ends - time.monotonic()))

    # ------------------------------------------------------------------ serving

    def _refuse(self, conn: socket.socket, reason: str) -> None:
        with self._lock:
            self.turned_away[reason] += 1
        with contextlib.suppress(OSError):
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, source = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            ip = ip_or_none(str(source[0]).split("%")[0])
            if ip is None or not (ip.is_loopback or ip in self.allowed):
                self._refuse(conn, "not an inventory address")
                continue
            if not self._slots.acquire(blocking=False):
                self._refuse(conn, f"more than {MAX_CONNECTIONS} connections at once")
                continue
            thread = threading.Thread(target=self._serve_guarded, args=(conn,), daemon=True)
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _serve_guarded(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve(conn, time.monotonic() + NET_CONN_MAX_S)
        except (OSError, ValueError):
            pass  # a connection that breaks or runs out of time ends; nothing else does
        finally:
            with self._lock:
                self._open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()
            self._slots.release()

    def _wait(self, conn: socket.socket, ends: float, cap: float = NET_CONN_MAX_S) -> None:
        left = min(cap, ends - time.monotonic())
        if left <= 0 or self._stop.is_set():
            raise TimeoutError("the connection's time is up")
        conn.settimeout(left)

    def _serve(self, conn: socket.socket, ends: float) -> None:
        header = b""
        header_ends = time.monotonic() + NET_HEADER_WAIT_S
        while not header.endswith(b"\n"):
            self._wait(conn, min(ends, header_ends))
            chunk = conn.recv(1)  # one byte at a time: nothing past the line is consumed
            if not chunk or len(header) >= NET_HEADER_MAX:
                self._refuse(conn, "no or an overlong first line")
                return
            header += chunk
        words = header.decode("ascii", "replace").split()
        host = self._host_of(words[2]) if len(words) == 3 and words[0] == NET_PROTOCOL else None
        if host is None or words[1] not in ("echo", "sink"):
            self._refuse(conn, "an unknown token or protocol")
            return
        with self._lock:
            self.served[host] += 1
        if words[1] == "echo":
            self._echo(conn, ends)
        else:
            self._sink(conn, ends, host)

    def _host_of(self, token: str) -> str | None:
        with self._lock:
            known = list(self.tokens.items())
        found = None
        for issued, host in known:  # compare_digest with each: no early exit on a match
            if hmac.compare_digest(issued.encode(), token.encode("ascii", "replace")):
                found = host
        return found

    def _echo(self, conn: socket.socket, ends: float) -> None:
        for _ in range(NET_ECHO_MAX):
            message = b""
            while len(message) < NET_ECHO_BYTES:
                self._wait(conn, ends)
                chunk = conn.recv(NET_ECHO_BYTES - len(message))
                if not chunk:
                    return
                message += chunk
            conn.sendall(message)

    def _sink(self, conn: socket.socket, ends: float, host: str) -> None:
        buffer = bytearray(READ_BLOCK)
        received = 0
        began = time.monotonic()
        while True:
            self._wait(conn, ends)
            count = conn.recv_into(buffer)
            if not count:
                break
            received += count
            if received > NET_SINK_MAX_BYTES:
                self._refuse(conn, f"more than {NET_SINK_MAX_BYTES} bytes")
                return
        with self._lock:
            self.received[host] += received
            if len(self.sinks) < MAX_CONNECTIONS:
                self.sinks.append((host, received, time.monotonic() - began))
        self._wait(conn, ends)
        conn.sendall(b"received %d\n" % received)


def start_peer(
    controller_addresses: dict[str, str | None], inventory_addresses: Iterable[str]
) -> tuple[NetPeer, dict[str, dict[str, Any]]]:
    """A listening peer and each host's ``target.probe_peer``: {"host", "port", "token"},
    or {"error": why not} where the controller cannot listen on the host's address.
    ``controller_addresses``: per host, where its SSH connection came from (None: the
    device was reached without SSH, on this machine)."""
    peer = NetPeer(resolve(inventory_addresses))
    plans: dict[str, dict[str, Any]] = {}
    for host, seen in controller_addresses.items():
        address = str(ip_or_none(seen) or LOOPBACK)
        try:
            port = peer.listen(address)
        except OSError as exc:
            plans[host] = {
                "error": f"the controller cannot listen on {address}, the address this device "
                f"reaches it on: {exc.strerror or exc}"
            }
            continue
        plans[host] = {"host": address, "port": port, "token": peer.token_for(host)}
    return peer, plans
