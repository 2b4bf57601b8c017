"""The target's process tree as the runner's samplers (memory, system) record it.

Each sample's ``tree`` section (device output: untrusted) holds the totals over the target
and its descendants (``rss_kb``, ``pss_kb``, ``swap_kb``, ``procs``, ``cpu_s``: a counter
of the tree's CPU time, reaped children included), one ``members`` row per process
(``[pid, rss_kb, pss_kb, own cpu_s]``) and, the first time a process is seen, its ``new``
entry (``pid``, ``ppid``, ``start``, ``cmd``). Samples of older runners have no tree: the
callers fall back to the ``target`` section (the target process alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.values import mapping
from orchestrator.values import number as finite

# Rows kept in report.json's per-process table (the largest by peak RSS), and processes
# followed at all: a device cannot make the controller track an unbounded set.
MAX_ROWS = 50
MAX_PROCESSES = 2000
CMDLINE_CHARS = 300


def sub(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return mapping(record.get(key))


def tree_total(record: dict[str, Any], key: str) -> float | None:
    """A tree total of one sample (``rss_kb``, ``pss_kb``, ``procs``, ``cpu_s``), or None."""
    value = finite(sub(record, "tree").get(key))
    return value if value is not None and value >= 0 else None


def has_tree(records: list[dict[str, Any]]) -> bool:
    return any(sub(record, "tree") for record in records)


@dataclass
class _Process:
    pid: int
    ppid: int | None
    cmdline: str
    born_after_first: bool  # first seen after the series' first sample: started in the window
    rss_peak_kb: float | None = None
    pss_peak_kb: float | None = None
    first: tuple[float, float] | None = None  # (t, own cpu_s)
    last: tuple[float, float] | None = None

    def add(self, t: float, member: list[Any]) -> None:
        """One sample's ``[pid, rss_kb, pss_kb, cpu_s]`` of this process."""
        self.rss_peak_kb = _peak(self.rss_peak_kb, member[1])
        self.pss_peak_kb = _peak(self.pss_peak_kb, member[2])
        cpu = finite(member[3])
        if cpu is not None and cpu >= 0:
            self.first = self.first or (t, cpu)
            self.last = (t, cpu)

    def row(self) -> dict[str, Any]:
        cpu_s = cpu_pct = None
        if self.first is not None and self.last is not None:
            base = 0.0 if self.born_after_first else self.first[1]
            cpu_s = round(max(0.0, self.last[1] - base), 2)
            span = self.last[0] - self.first[0]
            if span > 0 and self.last[1] >= self.first[1]:
                cpu_pct = round(100.0 * (self.last[1] - self.first[1]) / span, 1)
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "cmdline": self.cmdline,
            "rss_peak_mb": _mb(self.rss_peak_kb),
            "pss_peak_mb": _mb(self.pss_peak_kb),
            "cpu_s": cpu_s,
            "cpu_pct": cpu_pct,
        }


def _mb(kb: float | None) -> float | None:
    return None if kb is None else round(kb / 1024.0, 2)


def _int(value: Any) -> int | None:
    number = finite(value)
    return int(number) if number is not None and number > 0 and number.is_integer() else None


def _peak(old: float | None, new: Any) -> float | None:
    value = finite(new)
    if value is None or value < 0:
        return old
    return value if old is None else max(old, value)


def process_split(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per process of the tree: pid, ppid, command line, peak RSS and PSS (MB), its
    own CPU in the window (``cpu_s``) and as a share of one core while seen (``cpu_pct``).

    A pid seen again with a new ``new`` entry (pid reuse) is another process. The largest
    MAX_ROWS by peak RSS, largest first.
    """
    current: dict[int, _Process] = {}
    every: list[_Process] = []
    for index, record in enumerate(records):
        tree = sub(record, "tree")
        t = float(record["t"])
        new = tree.get("new")
        for entry in new if isinstance(new, list) else []:
            pid = _int(entry.get("pid")) if isinstance(entry, dict) else None
            if pid is None or len(every) >= MAX_PROCESSES:
                continue
            cmd = entry.get("cmd")
            process = _Process(
                pid,
                _int(entry.get("ppid")),
                cmd[:CMDLINE_CHARS] if isinstance(cmd, str) else "",
                born_after_first=index > 0,
            )
            current[pid] = process
            every.append(process)
        members = tree.get("members")
        for member in members if isinstance(members, list) else []:
            if not isinstance(member, list) or len(member) != 4:
                continue
            pid = _int(member[0])
            seen = current.get(pid) if pid is not None else None
            if seen is not None:
                seen.add(t, member)
    every.sort(key=lambda p: -(p.rss_peak_kb or 0.0))
    return [process.row() for process in every[:MAX_ROWS]]
