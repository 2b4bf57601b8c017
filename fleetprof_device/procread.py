"""Cheap /proc and /sys readers for the built-in samplers: files kept open and re-read with
one pread, the target's process tree, thermal zones and cpufreq.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Dict, List, Optional, Set, Tuple

from .procfs import read_cmdline, shorten

#
# "system" and "memory" are sampled by the runner itself, in a thread, instead of by a
# profiler process: a few /proc and /sys files per interval, each kept open and re-read
# with one pread() at offset 0, so a sample costs a handful of syscalls and well under a
# millisecond of CPU. The threads start only after every process of the session was
# spawned (the pdeathsig preexec_fn must not run while another thread may hold a lock).

PROC_ROOT = "/proc"
SYS_ROOT = "/sys"
READ_LIMIT = 1 << 16
MAX_THERMAL_ZONES = 32
MAX_CPUFREQ_CPUS = 256
SAMPLER_JOIN_S = 2.0
ZONE_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_TREE_PROCS = 64  # the target's descendants followed per sample (3 open files each)
CMDLINE_CHARS = 300


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (ValueError, OSError, AttributeError):
        return 100


CLK_TCK = _clock_ticks()


class ProcFile:
    """One /proc or /sys file kept open and re-read from offset 0 on each sample.

    A /proc/PID file opened while the process lived fails once it is gone, even if the pid
    is reused meanwhile: the open descriptor is the guard against pid reuse. A file that
    cannot be opened or read returns None (edge kernels differ; nothing here is required).
    """

    def __init__(self, path: str, keep_open: bool = True) -> None:
        self.path = path
        self.keep_open = keep_open
        self.fd: Optional[int] = None
        self.failed = False

    def read(self) -> Optional[str]:
        if self.failed:
            return None
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            data = os.pread(self.fd, READ_LIMIT, 0)
        except OSError:
            self.close()
            self.failed = True
            return None
        finally:
            if not self.keep_open:
                self.close()
        return data.decode("ascii", "replace")

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def read_once(path: str) -> Optional[str]:
    handle = ProcFile(path)
    try:
        return handle.read()
    finally:
        handle.close()


def int_or_none(text: Any) -> Optional[int]:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def parse_kv_kb(text: Optional[str], keys: Tuple[str, ...]) -> Dict[str, Optional[int]]:
    """'Key:   123 kB' lines (meminfo, status, smaps_rollup) -> {key: 123} for ``keys``."""
    found: Dict[str, Optional[int]] = dict((key, None) for key in keys)
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key in found:
            parts = value.split()
            found[key] = int_or_none(parts[0]) if parts else None
    return found


def parse_cpu_times(text: Optional[str]) -> Dict[str, Tuple[int, int]]:
    """/proc/stat -> {"cpu": (busy, total), "cpu0": ...} in clock ticks."""
    times: Dict[str, Tuple[int, int]] = {}
    for line in (text or "").splitlines():
        if not line.startswith("cpu"):
            break  # the cpu lines come first; the rest (intr, ...) is not needed
        parts = line.split()
        values = [int_or_none(v) for v in parts[1:9]]
        if len(values) < 4 or any(v is None for v in values):
            continue
        nums = [v for v in values if v is not None]
        idle = nums[3] + (nums[4] if len(nums) > 4 else 0)  # idle + iowait
        total = sum(nums)  # guest time is already inside user and nice
        times[parts[0]] = (total - idle, total)
    return times


def cpu_pct(before: Tuple[int, int], after: Tuple[int, int]) -> Optional[float]:
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0 or busy < 0:
        return None
    return round(min(100.0, 100.0 * busy / total), 1)


def kb_to_mb(kb: Optional[int]) -> Optional[float]:
    return None if kb is None else round(kb / 1024.0, 1)


class TargetFiles:
    """The target's /proc files, opened once."""

    def __init__(self, pid: int, with_io: bool) -> None:
        base = "%s/%d/" % (PROC_ROOT, pid)
        self.pid = pid
        self.stat = ProcFile(base + "stat")
        self.status = ProcFile(base + "status")
        # Bound to the memory of the program it was opened on: an exec (a wrapper script
        # that execs Python) would leave it reading nothing, so it is opened per sample.
        self.smaps = ProcFile(base + "smaps_rollup", keep_open=False)
        self.io = ProcFile(base + "io") if with_io else None

    def close(self) -> None:
        for handle in (self.stat, self.status, self.smaps, self.io):
            if handle is not None:
                handle.close()


def read_target_stat(text: Optional[str]) -> Optional[Tuple[str, int, int]]:
    """(state, utime + stime in ticks, num_threads) from /proc/PID/stat text."""
    if not text or ")" not in text:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    if len(rest) < 20:
        return None
    utime, stime, threads = int_or_none(rest[11]), int_or_none(rest[12]), int_or_none(rest[17])
    if utime is None or stime is None or threads is None:
        return None
    return rest[0], utime + stime, threads


def read_member_stat(text: Optional[str]) -> Optional[Tuple[str, int, int, int, int]]:
    """(state, ppid, starttime, own ticks, reaped children's ticks) from /proc/PID/stat."""
    if not text or ")" not in text:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    values = (
        [int_or_none(v) for v in (rest[1:2] + rest[11:15] + rest[19:20])] if len(rest) > 19 else []
    )
    if len(values) != 6 or any(v is None for v in values):
        return None
    ppid, utime, stime, cutime, cstime, start = [int(v or 0) for v in values]
    return rest[0], ppid, start, utime + stime, cutime + cstime


class ProcessTree:
    """The target and its descendants, found again at every sample: each one's RSS, PSS
    and CPU, and their totals. Children come from /proc/PID/task/TID/children where the
    kernel has it (CONFIG_PROC_CHILDREN), else from every process's ppid in /proc/*/stat.

    The CPU total is a counter: each member's own time plus the time of the children it
    reaped (cutime + cstime), so a child that ends and is reaped moves its time into its
    parent's and the total never drops (a zombie still counts its final time).
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.members: Dict[int, Tuple[TargetFiles, int]] = {}  # pid -> (files, start)
        self.children_files = os.path.exists("%s/%d/task/%d/children" % (PROC_ROOT, root, root))
        self.overflow = False  # more descendants than MAX_TREE_PROCS: the rest not counted

    def close(self) -> None:
        for files, _ in self.members.values():
            files.close()
        self.members = {}

    def _kids(self, pid: int, by_parent: Optional[Dict[int, List[int]]]) -> List[int]:
        if by_parent is not None:
            return by_parent.get(pid, [])
        kids: List[int] = []
        try:
            tids = os.listdir("%s/%d/task" % (PROC_ROOT, pid))
        except OSError:
            return kids
        for tid in tids:
            kids.extend(
                int_or_none(v) or 0
                for v in (read_once("%s/%d/task/%s/children" % (PROC_ROOT, pid, tid)) or "").split()
            )
        return [k for k in kids if k > 0]

    def _by_parent(self) -> Dict[int, List[int]]:
        found: Dict[int, List[int]] = {}
        for name in os.listdir(PROC_ROOT):
            if name.isdigit():
                info = read_member_stat(read_once("%s/%s/stat" % (PROC_ROOT, name)))
                if info is not None:
                    found.setdefault(info[1], []).append(int(name))
        return found

    def pids(self) -> List[int]:
        """The root and its descendants now, breadth first, at most MAX_TREE_PROCS."""
        by_parent = None if self.children_files else self._by_parent()
        order: List[int] = []
        queue: List[int] = [self.root]
        while queue and len(order) < MAX_TREE_PROCS:
            pid = queue.pop(0)
            if pid in order:
                continue
            order.append(pid)
            queue.extend(self._kids(pid, by_parent))
        self.overflow = self.overflow or bool(queue)
        return order

    def sample(self, root: Dict[str, Any]) -> Dict[str, Any]:
        """One sample of the whole tree; the root's memory as the target record read it."""
        order = self.pids()
        new: List[Any] = []
        for pid in [p for p in self.members if p not in order]:
            self.members.pop(pid)[0].close()
        totals: Dict[str, Any] = {"rss_kb": 0, "pss_kb": 0, "swap_kb": 0}
        ticks: int = 0
        rows: List[List[Any]] = []
        for pid in order:
            files = self.members[pid][0] if pid in self.members else TargetFiles(pid, False)
            info = read_member_stat(files.stat.read())
            if info is None or (pid in self.members and info[2] != self.members[pid][1]):
                files.close()  # gone (or another process under a reused pid)
                self.members.pop(pid, None)
                continue
            if pid not in self.members:
                self.members[pid] = (files, info[2])
                new.append(
                    {
                        "pid": pid,
                        "ppid": info[1],
                        "start": info[2],
                        "cmd": shorten(" ".join(read_cmdline(pid) or []), CMDLINE_CHARS),
                    }
                )
            ticks += info[3] + info[4]
            if pid == self.root:
                mem, pss = (
                    {"VmRSS": root.get("rss_kb"), "VmSwap": root.get("swap_kb")},
                    root.get("pss_kb"),
                )
            else:
                mem = parse_kv_kb(files.status.read(), ("VmRSS", "VmSwap"))
                pss = (
                    None
                    if info[0] in ("Z", "X")
                    else parse_kv_kb(files.smaps.read(), ("Pss",))["Pss"]
                )
            for key, value in (
                ("rss_kb", mem["VmRSS"]),
                ("swap_kb", mem["VmSwap"]),
                ("pss_kb", pss),
            ):
                if value is not None and totals[key] is not None:
                    totals[key] += value
                elif key == "pss_kb" and info[0] not in ("Z", "X"):
                    totals[key] = None  # a member's PSS is unreadable: no honest total
            rows.append([pid, mem["VmRSS"], pss, round(info[3] / float(CLK_TCK), 2)])
        totals.update(procs=len(rows), cpu_s=round(ticks / float(CLK_TCK), 3), members=rows)
        if new:
            totals["new"] = new
        if self.overflow:
            totals["overflow"] = True
        return totals


def status_gone(status: Optional[str]) -> bool:
    for line in (status or "").splitlines():
        if line.startswith("State:"):
            return line.split()[1:2] in (["Z"], ["X"])
    return status is None


def thermal_zones() -> List[Tuple[str, ProcFile]]:
    """(name, temp file) per thermal zone; names sanitized and made unique."""
    base = SYS_ROOT + "/class/thermal"
    try:
        entries = [n for n in os.listdir(base) if n.startswith("thermal_zone")]
    except OSError:
        return []
    entries.sort(key=lambda n: int_or_none(n[len("thermal_zone") :]) or 0)
    zones: List[Tuple[str, ProcFile]] = []
    seen: Set[str] = set()
    for entry in entries[:MAX_THERMAL_ZONES]:
        kind = (read_once("%s/%s/type" % (base, entry)) or "").strip()
        name = ZONE_NAME_RE.sub("_", kind)[:40].strip("_.") or entry
        if name in seen:
            name = "%s-%s" % (name, entry[len("thermal_zone") :])
        seen.add(name)
        zones.append((name, ProcFile("%s/%s/temp" % (base, entry))))
    return zones


def cpufreq_cores() -> List[Tuple[int, ProcFile, ProcFile, Optional[int]]]:
    """(cpu, scaling_cur_freq, scaling_max_freq, cpuinfo_max_freq kHz) per core with cpufreq."""
    base = SYS_ROOT + "/devices/system/cpu"
    try:
        names = [n for n in os.listdir(base) if n.startswith("cpu") and n[3:].isdigit()]
    except OSError:
        return []
    cores: List[Tuple[int, ProcFile, ProcFile, Optional[int]]] = []
    for name in sorted(names, key=lambda n: int(n[3:]))[:MAX_CPUFREQ_CPUS]:
        directory = "%s/%s/cpufreq/" % (base, name)
        if not os.path.exists(directory + "scaling_cur_freq"):
            continue
        hw_max = int_or_none((read_once(directory + "cpuinfo_max_freq") or "").strip())
        cores.append(
            (
                int(name[3:]),
                ProcFile(directory + "scaling_cur_freq"),
                ProcFile(directory + "scaling_max_freq"),
                hw_max,
            )
        )
    return cores
