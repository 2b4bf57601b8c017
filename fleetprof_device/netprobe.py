"""The network probe: round-trip time and send throughput from this device to its peer
(the controller, which listens during the session: orchestrator/stages/netpeer.py).

The plan's ``target.probe_peer`` is {"host", "port", "token"}; the protocol is the
contract's (NET_*). First a share of the budget goes to round trips: one connection,
NET_ECHO_BYTES messages sent and read back, in each repetition at most ECHO_PER_REP of
them. Then each repetition opens a connection to the peer's sink, sends for its share of
the time (at most NET_SINK_MAX_BYTES), shuts its side and waits for the peer's count of
the bytes it received: throughput is that count over the time from connecting to the
answer, so nothing still in a socket buffer counts as sent. Every wait is bounded by the
``latest`` time the runner gives; a peer that refuses, hangs or closes fails the benchmark
with the reason, and what was measured before stays.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Dict, List, Optional, Tuple

from .contract import (
    NET_ECHO_BYTES,
    NET_ECHO_MAX,
    NET_PROTOCOL,
    NET_SINK_MAX_BYTES,
    NET_TOKEN_CHARS,
)

RTT_SHARE = 0.25  # of the budget: the round trips; the rest is throughput
ECHO_PER_REP = 20  # round trips in a repetition at most (its median is the repetition's)
CONNECT_MAX_S = 3.0  # a connection the peer has not accepted by then: it hangs
ANSWER_MAX_S = 3.0  # the sink's count after the device's last byte
SEND_BLOCK = 256 * 1024
REPLY_MAX = 64


class PeerError(Exception):
    """The peer cannot be reached or broke the protocol; the message is the reason."""


def peer_of(spec: Any) -> Tuple[str, int, str]:
    """(host, port, token) from the plan's probe_peer, or PeerError with why not."""
    if not isinstance(spec, dict):
        raise PeerError("the plan names no peer (run the campaign with `fleetprof run`)")
    if spec.get("error"):
        raise PeerError("no peer: %s" % str(spec["error"])[:300])
    host, port, token = spec.get("host"), spec.get("port"), spec.get("token")
    if not (
        isinstance(host, str)
        and host
        and isinstance(port, int)
        and 0 < port < 65536
        and isinstance(token, str)
        and len(token) == NET_TOKEN_CHARS
        and token.isalnum()
    ):
        raise PeerError("the plan's probe_peer is malformed")
    return host, port, token


def _left(latest: float, cap: float) -> float:
    left = min(cap, latest - time.time())
    if left <= 0:
        raise socket.timeout("no time left before the deadline")
    return left


def _open(peer: Tuple[str, int, str], mode: str, latest: float) -> socket.socket:
    host, port, token = peer
    conn = socket.create_connection((host, port), timeout=_left(latest, CONNECT_MAX_S))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(("%s %s %s\n" % (NET_PROTOCOL, mode, token)).encode("ascii"))
    return conn


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise PeerError("the peer closed the connection (a token it does not know?)")
        data += chunk
    return data


def _round_trips(
    peer: Tuple[str, int, str], reps: int, end: float, latest: float
) -> List[Dict[str, Any]]:
    done: List[Dict[str, Any]] = []
    message = b"r" * NET_ECHO_BYTES
    total = 0
    conn = _open(peer, "echo", latest)
    try:
        for index in range(reps):
            stop = time.time() + max(0.0, end - time.time()) / (reps - index)
            times: List[float] = []
            while len(times) < ECHO_PER_REP and total < NET_ECHO_MAX:
                conn.settimeout(_left(latest, ANSWER_MAX_S))
                began = time.perf_counter()
                conn.sendall(message)
                if _read_exactly(conn, NET_ECHO_BYTES) != message:
                    raise PeerError("the peer's echo differs from what was sent")
                times.append(round(time.perf_counter() - began, 7))
                total += 1
                if time.time() >= stop:
                    break
            done.append({"rtt_s": times})
    finally:
        conn.close()
    return done


def _send_once(peer: Tuple[str, int, str], stop: float, latest: float) -> Dict[str, Any]:
    block = memoryview(b"\0" * SEND_BLOCK)  # slices of a view are not copies
    began = time.time()
    conn = _open(peer, "sink", latest)
    try:
        sent = 0
        while sent < NET_SINK_MAX_BYTES:
            left = stop - time.time()
            if left <= 0:
                break
            conn.settimeout(min(left, _left(latest, left)))
            try:
                sent += conn.send(block[: min(SEND_BLOCK, NET_SINK_MAX_BYTES - sent)])
            except socket.timeout:
                break  # the buffers are full and the time is up
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(_left(latest, ANSWER_MAX_S))
        reply = b""
        while not reply.endswith(b"\n") and len(reply) < REPLY_MAX:
            chunk = conn.recv(REPLY_MAX - len(reply))
            if not chunk:
                break
            reply += chunk
    finally:
        conn.close()
    seconds = time.time() - began
    words = reply.decode("ascii", "replace").split()
    if len(words) != 2 or words[0] != "received" or not words[1].isdigit():
        raise PeerError("the peer did not count the bytes it received (%r)" % reply[:40])
    return {"bytes": int(words[1]), "sent": sent, "seconds": round(seconds, 6)}


def measure(
    result: Dict[str, Any], spec: Any, reps: int, end: float, latest: Optional[float] = None
) -> None:
    """Fill ``result`` with "peer", "rtt" and "send" repetitions; PeerError (or an OSError)
    when the peer is missing, refuses, hangs or breaks the protocol."""
    latest = end if latest is None else max(end, latest)
    peer = peer_of(spec)
    result["peer"] = "%s:%d" % (peer[0], peer[1])
    rtt: List[Dict[str, Any]] = []
    send: List[Dict[str, Any]] = []
    result["rtt"] = {"echo_bytes": NET_ECHO_BYTES, "reps": rtt}
    result["send"] = {"max_bytes": NET_SINK_MAX_BYTES, "reps": send}
    start = time.time()
    try:
        rtt.extend(_round_trips(peer, reps, start + (end - start) * RTT_SHARE, latest))
        for index in range(reps):
            stop = time.time() + max(0.0, end - time.time()) / (reps - index)
            send.append(_send_once(peer, stop, latest))
    except ConnectionRefusedError:
        raise PeerError("the peer %s refused the connection" % result["peer"]) from None
    except socket.timeout:
        raise PeerError("the peer %s did not answer in time" % result["peer"]) from None
