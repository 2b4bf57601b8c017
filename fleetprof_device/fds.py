"""The builtin "open-files" sampler's reading of /proc: lsof's view without lsof.

Every sample lists /proc/PID/fd of the target and of each descendant the process tree
finds (procread.ProcessTree, as the memory sampler does), reads each descriptor's link
(``readlink``) and counts it by kind: ``socket:[inode]``, ``pipe:[inode]``,
``anon_inode:...``, a path under /dev (a device; /dev/shm, /dev/mqueue and /dev/hugepages
hold files), any other path (a file or directory), anything else. The paths are counted,
the most-opened kept. The sockets' inodes are looked up in the target's own
/proc/PID/net/{tcp,tcp6,udp,udp6} (its network namespace) for their protocol and state;
an inode in none of them is a socket of another family (unix, netlink, ...).

A descriptor is counted in the process that holds it: a descriptor a child inherited
counts once per process, as ``lsof -p`` lists it under each. Work per sample is bounded
(the caps below); whatever a cap cut is said in the sample's ``cut``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Set, Tuple

from .contract import (
    OPEN_FILES_KINDS,
    OPEN_FILES_MAX_PATH_CHARS,
    OPEN_FILES_MAX_TOP_PATHS,
    OPEN_FILES_PROTOCOLS,
    OPEN_FILES_TOP_PATHS,
)
from .procread import PROC_ROOT, ProcessTree, ProcFile, read_target_stat

MAX_LIST_PER_PROC = 65536  # descriptors counted per process per sample
MAX_READ_PER_PROC = 4096  # of which links read (kind and path)
MAX_READ_PER_SAMPLE = 16384  # links read over the whole tree per sample
MAX_NET_BYTES = 4 << 20  # read of each /proc/PID/net table per sample
NET_CHUNK = 1 << 16
MAX_LISTENING = 20  # listening sockets named per sample
NOT_DEVICES = ("/dev/shm/", "/dev/mqueue/", "/dev/hugepages/")

# include/net/tcp_states.h
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
# A UDP socket is TCP_ESTABLISHED once connect()ed, TCP_CLOSE otherwise.
UDP_STATES = {1: "CONNECTED", 7: "UNCONNECTED"}


def option_errors(options: Dict[str, Any]) -> List[str]:
    """The plan's options of an "open-files" sampler, beyond its interval."""
    top = options.get("top_paths", OPEN_FILES_TOP_PATHS)
    if (
        isinstance(top, bool)
        or not isinstance(top, int)
        or not 1 <= top <= OPEN_FILES_MAX_TOP_PATHS
    ):
        return ["options.top_paths must be an integer from 1 to %d" % OPEN_FILES_MAX_TOP_PATHS]
    return []


def classify(link: str) -> Tuple[str, Optional[str], Optional[int]]:
    """(kind, path or None, socket inode or None) of one /proc/PID/fd/N link."""
    if link.startswith("socket:[") and link.endswith("]"):
        inode = link[len("socket:[") : -1]
        return "socket", None, int(inode) if inode.isdigit() else None
    if link.startswith("pipe:"):
        return "pipe", None, None
    if link.startswith("anon_inode:"):
        return "anon_inode", None, None
    if link.startswith("/"):
        device = link.startswith("/dev/") and not link.startswith(NOT_DEVICES)
        return ("device" if device else "file"), cap_path(link), None
    return "other", None, None


def cap_path(path: str) -> str:
    """A path at most OPEN_FILES_MAX_PATH_CHARS long: a longer one keeps its end."""
    if len(path) <= OPEN_FILES_MAX_PATH_CHARS:
        return path
    return "..." + path[len(path) - OPEN_FILES_MAX_PATH_CHARS + 3 :]


def decode_address(text: str) -> Optional[str]:
    """'0100007F:1F90' (/proc/net/tcp) -> '127.0.0.1:8080'; IPv6 in brackets."""
    address, _, port_hex = text.partition(":")
    try:
        port = int(port_hex, 16)
        raw = bytes.fromhex(address)
    except ValueError:
        return None
    if len(raw) not in (4, 16):
        return None
    # The kernel prints each 32-bit word in host order: little-endian on every edge CPU.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return "%s:%d" % (".".join(str(b) for b in words), port)
    groups = ["%x" % int.from_bytes(words[i : i + 2], "big") for i in range(0, 16, 2)]
    return "[%s]:%d" % (":".join(groups), port)


def parse_net(
    text: str, proto: str, inodes: Set[int]
) -> Tuple[Dict[str, int], List[str], Set[int]]:
    """One /proc/net/{tcp,tcp6,udp,udp6} table -> (count by state of the sockets whose
    inode is in ``inodes``, their listening addresses, the inodes found)."""
    names = UDP_STATES if proto.startswith("udp") else TCP_STATES
    states: Dict[str, int] = {}
    listening: List[str] = []
    found: Set[int] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or not fields[9].isdigit():
            continue
        inode = int(fields[9])
        if inode not in inodes or inode in found:
            continue
        found.add(inode)
        try:
            code = int(fields[3], 16)
        except ValueError:
            continue
        state = names.get(code, "STATE_%02X" % code)
        states[state] = states.get(state, 0) + 1
        if state in ("LISTEN", "UNCONNECTED"):
            address = decode_address(fields[1])
            if address is not None:
                listening.append("%s %s" % (proto, address))
    return states, listening, found


def read_capped(path: str, limit: int) -> Tuple[Optional[str], bool]:
    """A /proc file's text, at most ``limit`` bytes (cut at its last whole line), and
    whether it was cut; None when it cannot be read."""
    chunks: List[bytes] = []
    size = 0
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None, False
    try:
        while size <= limit:
            chunk = os.read(fd, NET_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None, False
    finally:
        os.close(fd)
    data = b"".join(chunks)
    cut = len(data) > limit
    if cut:
        data = data[: data.rfind(b"\n", 0, limit) + 1]
    return data.decode("ascii", "replace"), cut


def list_fds(pid: int) -> Tuple[Optional[List[str]], bool]:
    """The descriptor numbers of ``pid`` (at most MAX_LIST_PER_PROC, and whether there were
    more); None when its fd directory cannot be listed (another user's process)."""
    names: List[str] = []
    try:
        with os.scandir("%s/%d/fd" % (PROC_ROOT, pid)) as entries:
            for entry in entries:
                if len(names) >= MAX_LIST_PER_PROC:
                    return names, True
                names.append(entry.name)
    except FileNotFoundError:
        return [], False  # gone since the tree was walked
    except OSError:
        return None, False
    return names, False


def top_paths(counts: Dict[str, int], limit: int) -> List[List[Any]]:
    """The ``limit`` most-opened paths as [path, count], the most first, then by name."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [[path, count] for path, count in ranked[:limit]]


class FdSampler:
    """One "open-files" sample at a time of the target's process tree."""

    def __init__(self, pid: int, options: Dict[str, Any]) -> None:
        self.pid = pid
        self.top = int(options.get("top_paths", OPEN_FILES_TOP_PATHS))
        self.tree = ProcessTree(pid)
        self.stat = ProcFile("%s/%d/stat" % (PROC_ROOT, pid))  # the guard against pid reuse
        self.cut_samples = 0  # samples in which a cap cut something
        self.unreadable: Set[int] = set()  # processes whose descriptors could not be listed

    def close(self) -> None:
        self.stat.close()
        self.tree.close()

    def sample(self, record: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """``record`` with this sample's descriptors; None when the target is gone."""
        info = read_target_stat(self.stat.read())
        if info is None or info[0] in ("Z", "X"):
            return None
        kinds: Dict[str, int] = dict((kind, 0) for kind in OPEN_FILES_KINDS)
        paths: Dict[str, int] = {}
        inodes: Set[int] = set()
        members: List[List[int]] = []
        cut: Dict[str, Any] = {}
        unread = 0
        budget = MAX_READ_PER_SAMPLE
        for pid in self.tree.pids():
            names, more = list_fds(pid)
            if names is None:
                self.unreadable.add(pid)
                cut.setdefault("unreadable", []).append(pid)
                continue
            if more:
                cut.setdefault("listed", []).append(pid)
            allowed = min(MAX_READ_PER_PROC, budget)
            count = max(0, len(names) - allowed)
            budget -= min(len(names), allowed)
            for name in names[:allowed]:
                try:
                    link = os.readlink("%s/%d/fd/%s" % (PROC_ROOT, pid, name))
                except FileNotFoundError:
                    continue  # closed since the listing: not open any more
                except OSError:
                    count += 1
                    unread += 1
                    continue
                kind, path, inode = classify(link)
                kinds[kind] += 1
                count += 1
                if path is not None:
                    paths[path] = paths.get(path, 0) + 1
                if inode is not None:
                    inodes.add(inode)
            unread += max(0, len(names) - allowed)
            members.append([pid, count])
        record.update(
            pid=self.pid,
            procs=len(members),
            total=sum(kinds.values()) + unread,
            kinds=kinds,
            paths=top_paths(paths, self.top),
            distinct_paths=len(paths),
            members=members,
        )
        record.update(self._sockets(inodes, cut))
        if unread:
            cut["unread"] = unread
        if self.tree.overflow:
            cut["tree"] = True
        if cut:
            record["cut"] = cut
            self.cut_samples += 1
        return record

    def _sockets(self, inodes: Set[int], cut: Dict[str, Any]) -> Dict[str, Any]:
        """The tree's sockets by protocol and state, from the target's /proc/PID/net."""
        sockets: Dict[str, Dict[str, int]] = {}
        listening: List[str] = []
        found: Set[int] = set()
        for proto in OPEN_FILES_PROTOCOLS:
            # Once every socket is placed the other tables are not read: each is a walk of
            # the kernel's socket hash (a millisecond for tcp and tcp6 on a big host).
            if not inodes - found:
                break
            text, was_cut = read_capped(
                "%s/%d/net/%s" % (PROC_ROOT, self.pid, proto), MAX_NET_BYTES
            )
            if was_cut:
                cut.setdefault("net", []).append(proto)
            if text is None:
                continue
            states, named, matched = parse_net(text, proto, inodes - found)
            if states:
                sockets[proto] = states
            listening.extend(named)
            found |= matched
        return {
            "sockets": sockets,
            "sockets_other": len(inodes - found),
            "listening": sorted(listening)[:MAX_LISTENING],
        }

    def quality(self) -> Dict[str, Any]:
        return {
            "cut_samples": self.cut_samples,
            "unreadable_pids": sorted(self.unreadable)[:20],
            "max_read_per_sample": MAX_READ_PER_SAMPLE,
            "max_read_per_proc": MAX_READ_PER_PROC,
        }
