"""An SSH ProxyCommand that relays one connection and counts its bytes each way.

    ssh -o 'ProxyCommand=python3 benchmarks/sshcount.py %h %p DIR' host

ssh talks to this process on stdin/stdout; it relays to HOST:PORT over TCP. Every 0.1 s
(when something moved) and when the connection ends it appends one JSON line to
``DIR/<host>-<port>-<pid>.jsonl``: ``{"t": wall clock, "up": bytes ssh sent, "down": bytes
ssh received, "closed": bool}``, cumulative. The counts are what went over the wire:
encrypted, with SSH's own framing, the key exchange and the authentication. Standard
library only, and nothing imported from the repository: it runs under any python3.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import sys
import time

CHUNK = 65536
FLUSH_S = 0.1


class Counts:
    def __init__(self, path: str) -> None:
        self.path = path
        self.up = 0
        self.down = 0
        self.written = (-1, -1)
        self.flushed = 0.0

    def flush(self, closed: bool = False, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if not closed and ((self.up, self.down) == self.written or now - self.flushed < FLUSH_S):
            return
        line = {"t": now, "up": self.up, "down": self.down, "closed": closed}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        self.written = (self.up, self.down)
        self.flushed = now


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(host: str, port: int, counts: Counts) -> None:
    sock = socket.create_connection((host, port))
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, "ssh")
    selector.register(sock, selectors.EVENT_READ, "device")
    try:
        while True:
            for key, _ in selector.select(timeout=FLUSH_S):
                if key.data == "ssh":
                    data = os.read(0, CHUNK)
                    if not data:  # ssh is done sending: pass the end on, keep reading
                        selector.unregister(0)
                        sock.shutdown(socket.SHUT_WR)
                        continue
                    sock.sendall(data)
                    counts.up += len(data)
                else:
                    data = sock.recv(CHUNK)
                    if not data:
                        return
                    _write_all(1, data)
                    counts.down += len(data)
            counts.flush()
    except (BrokenPipeError, ConnectionError):
        return
    finally:
        selector.close()
        sock.close()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: sshcount.py HOST PORT DIR", file=sys.stderr)
        return 2
    host, port, directory = argv[0], int(argv[1]), argv[2]
    counts = Counts(os.path.join(directory, f"{host}-{port}-{os.getpid()}.jsonl"))
    try:
        relay(host, port, counts)
    finally:
        counts.flush(closed=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
