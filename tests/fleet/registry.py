"""Where fleets live and how concurrent fleets stay apart.

Every fleet has a directory with its ``state.json``; the registry (one small JSON file
per fleet pointing at that directory) lets any process find, list and tear down every
fleet on this machine. Loopback addresses are allocated under a lock, so two fleets
brought up at once never share one.

Fleet directories are NOT under /tmp: each emulated host gets private /tmp, /var/tmp,
/opt, /run and home directories, which would hide a fleet directory below them (its
sshd reads its config, host key and authorized keys from there).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FLEETS_DIR_ENV = "FLEETPROF_FLEETS_DIR"
DEFAULT_FLEETS_DIR = Path("/var/lib/fleetprof-fleets")
STATE_FILE = "state.json"
FIRST_ADDRESS = 11


def fleets_dir() -> Path:
    return Path(os.environ.get(FLEETS_DIR_ENV) or DEFAULT_FLEETS_DIR)


def registry_dir() -> Path:
    return fleets_dir() / "registry"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the machine-wide fleet lock (address allocation, cgroup creation and removal)."""
    registry_dir().mkdir(parents=True, exist_ok=True)
    with open(fleets_dir() / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically: a reader sees the old or the new file, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def register(fleet_id: str, directory: Path) -> None:
    write_json(registry_dir() / f"{fleet_id}.json", {"id": fleet_id, "dir": str(directory)})


def unregister(fleet_id: str) -> None:
    (registry_dir() / f"{fleet_id}.json").unlink(missing_ok=True)


def registered() -> dict[str, Path]:
    """Fleet id -> directory of every registered fleet."""
    fleets: dict[str, Path] = {}
    if not registry_dir().is_dir():
        return fleets
    for entry in sorted(registry_dir().glob("*.json")):
        try:
            data = json.loads(entry.read_text())
            fleets[str(data["id"])] = Path(data["dir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return fleets


def read_state(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _addresses_in_use() -> set[str]:
    used: set[str] = set()
    for directory in registered().values():
        state = read_state(directory)
        for host in (state or {}).get("hosts", []):
            used.add(str(host.get("address")))
    return used


def _candidates() -> Iterator[str]:
    # 127.0.0.1 and its neighbours are the machine's own; fleets start at 127.0.0.11.
    for third in range(256):
        for fourth in range(FIRST_ADDRESS if third == 0 else 1, 255):
            yield f"127.0.{third}.{fourth}"


def port_free(address: str, port: int) -> bool:
    """Whether an sshd could listen on ``address:port`` now (sshd sets SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def allocate_addresses(count: int, port: int) -> list[str]:
    """``count`` loopback addresses no registered fleet uses and where ``port`` is free.

    Call with the lock held, and register the fleet's state before releasing it.
    """
    used = _addresses_in_use()
    chosen: list[str] = []
    for address in _candidates():
        if len(chosen) == count:
            break
        if address not in used and port_free(address, port):
            chosen.append(address)
    if len(chosen) < count:
        raise RuntimeError(f"no {count} free loopback addresses for port {port}")
    return chosen


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (tells a reused pid apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields resume after ")".
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner() -> dict[str, int]:
    pid = os.getpid()
    return {"pid": pid, "start": process_start_time(pid) or 0}


def owner_alive(data: Any) -> bool:
    """Whether the process ``owner()`` described still runs (a zombie does not)."""
    if not isinstance(data, dict):
        return False
    pid = data.get("pid")
    if not isinstance(pid, int) or process_start_time(pid) != data.get("start"):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
