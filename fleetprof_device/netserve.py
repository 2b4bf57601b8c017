"""The network probe's peer: a small, bounded TCP echo and sink (the contract's NET_*
protocol; fleetprof_device/netprobe.py is the other end). The controller runs it during
the session play (orchestrator/stages/netpeer.py says where it listens and for whom).

A connection is accepted only from an allowed address or the loopback, and served only
when its first line, within NET_HEADER_WAIT_S, carries a token it was given; every
connection is capped in bytes (NET_SINK_MAX_BYTES, NET_ECHO_MAX messages) and in time
(NET_CONN_MAX_S), and at most MAX_CONNECTIONS are served at once. What it turned away is
counted by reason. Standard library only: it opens no connection, runs nothing and keeps
nothing of what it reads.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import secrets
import socket
import threading
import time
import typing
from collections import Counter
from typing import Dict, List, Optional, Set, Tuple, Union

from .contract import (
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

IpAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def ip_or_none(text: object) -> Optional[IpAddress]:
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


class PeerServer:
    """The listeners and the tokens of one session; ``close()`` ends every connection."""

    def __init__(self, allowed: Set[IpAddress]) -> None:
        self.allowed = allowed
        self.tokens: Dict[str, str] = {}  # token -> host
        self.turned_away: typing.Counter[str] = Counter()
        self.served: typing.Counter[str] = Counter()  # host -> connections served
        self.received: typing.Counter[str] = Counter()  # host -> bytes its sinks counted
        # Per sink connection: (host, bytes, seconds from its first line to its last byte).
        self.sinks: List[Tuple[str, int, float]] = []
        self._listeners: Dict[str, socket.socket] = {}
        self._threads: List[threading.Thread] = []
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: Set[socket.socket] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ set-up

    def listen(self, address: str, port: int = 0) -> int:
        """Listen on ``address`` (once per address) and ``port`` (0: the kernel picks);
        the port. OSError when this machine has no such address (a device behind NAT sees
        another one) or the port is taken."""
        if address in self._listeners:
            return int(self._listeners[address].getsockname()[1])
        ip = ip_or_none(address)
        if ip is None:
            raise OSError("%r is not an IP address" % (address,))
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        listener = socket.create_server((str(ip), port), family=family, backlog=64)
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
            except socket.timeout:  # TimeoutError from 3.10 on, an OSError of its own before
                continue
            except OSError:
                return  # closed
            ip = ip_or_none(str(source[0]).split("%")[0])
            if ip is None or not (ip.is_loopback or ip in self.allowed):
                self._refuse(conn, "not an inventory address")
                continue
            if not self._slots.acquire(blocking=False):
                self._refuse(conn, "more than %d connections at once" % MAX_CONNECTIONS)
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

    def _host_of(self, token: str) -> Optional[str]:
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
                self._refuse(conn, "more than %d bytes" % NET_SINK_MAX_BYTES)
                return
        with self._lock:
            self.received[host] += received
            if len(self.sinks) < MAX_CONNECTIONS:
                self.sinks.append((host, received, time.monotonic() - began))
        self._wait(conn, ends)
        conn.sendall(b"received %d\n" % received)
