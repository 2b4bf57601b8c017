"""The built-in samplers ("system", "memory", "open-files": fds.py): a thread per sampler
in the runner itself, a handful of syscalls per sample, one JSON line per sample.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

from . import procread
from .contract import OPEN_FILES
from .fds import FdSampler
from .netdev import parse_net_dev
from .procread import (
    CLK_TCK,
    MAX_TREE_PROCS,
    SAMPLER_JOIN_S,
    ProcessTree,
    ProcFile,
    TargetFiles,
    cpu_pct,
    cpufreq_cores,
    int_or_none,
    kb_to_mb,
    parse_cpu_times,
    parse_kv_kb,
    read_target_stat,
    status_gone,
    thermal_zones,
)
from .runlog import RunnerLog


class Sampler:
    """A built-in profiler: samples every interval from its start until the deadline.

    It stops early when the target it watches is gone; a target that was never known is
    no reason to stop the system-wide series. Each sample is one JSON object on one line,
    flushed at once, so whatever happens to the runner the file holds whole samples.
    """

    def __init__(
        self,
        kind: str,
        path: str,
        interval: float,
        max_bytes: int,
        deadline: float,
        log: RunnerLog,
        options: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.kind = kind
        self.path = path
        self.interval = interval
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.log = log
        self.samples = 0
        self.dropped = 0  # samples not written: the output reached max_bytes
        self.missed = 0  # intervals skipped because a sample came late
        self.written = 0
        self.cpu_s = 0.0  # the sampler thread's own CPU time
        self.error: Optional[str] = None
        self.ended: Optional[str] = None  # why it stopped
        self.started_at: Optional[float] = None
        self.stopped_at: Optional[float] = None
        self.unreadable: List[str] = []
        self.pid: Optional[int] = None
        self.stop_event = threading.Event()
        self.final_sample = True  # stop() takes one last sample, unless told not to write
        self.stop_reason = "stopped"
        self.thread: Optional[threading.Thread] = None
        self.target: Optional[TargetFiles] = None
        self.tree: Optional[ProcessTree] = None
        self.prev_cpu: Dict[str, Tuple[int, int]] = {}
        self.prev_target: Optional[Tuple[float, int]] = None
        self.proc_stat = ProcFile(procread.PROC_ROOT + "/stat")
        self.loadavg = ProcFile(procread.PROC_ROOT + "/loadavg")
        self.meminfo = ProcFile(procread.PROC_ROOT + "/meminfo")
        self.net_dev = ProcFile(procread.PROC_ROOT + "/net/dev")
        self.zones: List[Tuple[str, ProcFile]] = []
        self.cores: List[Tuple[int, ProcFile, ProcFile, Optional[int]]] = []
        self.options = options or {}
        self.fds: Optional[FdSampler] = None  # "open-files"

    # ------------------------------------------------------------------ control

    def start(self, pid: Optional[int]) -> None:
        self.pid = pid
        self.started_at = time.time()
        self.thread = threading.Thread(target=self._run, name="fleetprof-" + self.kind)
        self.thread.daemon = True  # never keeps the runner alive past its own end
        self.thread.start()

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self, final_sample: bool = True, reason: str = "stopped") -> None:
        """Take one last sample now (unless one was just taken, or ``final_sample`` is
        false: the disk is past its floor) and end the thread; ``reason``: why it ended
        when that last sample is not taken."""
        self.stop_reason = reason
        if not final_sample:
            self.final_sample = False
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(SAMPLER_JOIN_S)

    # ------------------------------------------------------------------ loop

    def _run(self) -> None:
        started_cpu = time.thread_time() if hasattr(time, "thread_time") else None
        handle = None
        try:
            handle = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
            self._open_sources()
            self._loop(handle)
        except Exception as exc:  # a sampler bug must not take the session down
            self.error = "sampler error: %s: %s" % (type(exc).__name__, exc)
            self.log("%s: %s\n%s" % (self.kind, self.error, traceback.format_exc()))
        finally:
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
            for source in self._sources():
                source.close()
            if self.target is not None:
                self.target.close()
            if self.tree is not None:
                self.tree.close()
            if self.fds is not None:
                self.fds.close()
            if started_cpu is not None:
                self.cpu_s = round(time.thread_time() - started_cpu, 4)
            self.stopped_at = time.time()

    def _open_sources(self) -> None:
        if self.kind == OPEN_FILES:
            self.fds = None if self.pid is None else FdSampler(self.pid, self.options)
            return
        if self.pid is not None:
            self.target = TargetFiles(self.pid, with_io=self.kind == "system")
            self.tree = ProcessTree(self.pid)
        if self.kind == "system":
            self.zones = thermal_zones()
            self.cores = cpufreq_cores()

    def _sources(self) -> List[ProcFile]:
        files = [self.proc_stat, self.loadavg, self.meminfo, self.net_dev]
        files += [f for _, f in self.zones]
        for _, cur, cap, _ in self.cores:
            files += [cur, cap]
        return files

    def _loop(self, handle: Any) -> None:
        next_at = time.time()
        last: Optional[float] = None
        while True:
            now = time.time()
            final = self.stop_event.is_set() or now >= self.deadline
            if (
                final
                and last is not None
                and (now - last < min(0.05, self.interval / 4.0) or not self.final_sample)
            ):
                self.ended = "deadline" if now >= self.deadline else self.stop_reason
                return
            record = self._sample(now)
            last = now
            if record is None:
                self.ended = "target exited"
                self.log("%s: the target is gone: sampling stopped" % self.kind)
                return
            self._write(handle, record)
            if final:
                self.ended = "deadline" if now >= self.deadline else self.stop_reason
                return
            next_at += self.interval
            now = time.time()
            if next_at <= now:  # a slow sample (or a clock step): skip what was missed
                skipped = int((now - next_at) // self.interval) + 1
                self.missed += skipped
                next_at += skipped * self.interval
            self.stop_event.wait(max(0.0, min(next_at, self.deadline) - time.time()))

    def _write(self, handle: Any, record: Dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        if self.written + len(line) > self.max_bytes:
            self.dropped += 1
            return
        handle.write(line)
        handle.flush()
        self.written += len(line)
        self.samples += 1

    def _note(self, what: str) -> None:
        if what not in self.unreadable:
            self.unreadable.append(what)
            self.log("%s: %s unreadable on this device" % (self.kind, what))

    # ------------------------------------------------------------------ one sample

    def _sample(self, now: float) -> Optional[Dict[str, Any]]:
        """One record; None when the watched target is gone."""
        record: Dict[str, Any] = {"t": round(now, 3)}
        if self.kind == OPEN_FILES:
            return None if self.fds is None else self.fds.sample(record)
        if self.kind == "system":
            record.update(self._system())
        if self.target is not None:
            target = self._target(now)
            if target is None:
                return None
            record["target"] = target
            if self.tree is not None:
                record["tree"] = self.tree.sample(target)
        elif self.kind == "memory":
            return None  # nothing to watch
        return record

    def _system(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        times = parse_cpu_times(self.proc_stat.read())
        if not times:
            self._note("/proc/stat")
        prev, self.prev_cpu = self.prev_cpu, times
        if prev:
            both = "cpu" in times and "cpu" in prev
            out["cpu_pct"] = cpu_pct(prev["cpu"], times["cpu"]) if both else None
            cores: Dict[str, Optional[float]] = {}
            for name, value in times.items():
                if name != "cpu" and name in prev:
                    cores[name] = cpu_pct(prev[name], value)
            out["cpu_core_pct"] = cores
        load = (self.loadavg.read() or "").split()[:3]
        loads: List[float] = []
        for field in load:
            with contextlib.suppress(ValueError):
                loads.append(float(field))
        out["load"] = loads if len(loads) == 3 else None
        mem = parse_kv_kb(
            self.meminfo.read(), ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree")
        )
        out["mem_mb"] = {
            "total": kb_to_mb(mem["MemTotal"]),
            "available": kb_to_mb(mem["MemAvailable"]),
            "swap_total": kb_to_mb(mem["SwapTotal"]),
            "swap_free": kb_to_mb(mem["SwapFree"]),
        }
        if self.zones:
            temps: Dict[str, Optional[float]] = {}
            for name, temp in self.zones:
                milli = int_or_none((temp.read() or "").strip())
                temps[name] = None if milli is None else milli / 1000.0
            out["thermal_c"] = temps
        if self.cores:
            freqs: List[Dict[str, Any]] = []
            for cpu, cur, cap, hw_max in self.cores:
                freqs.append(
                    {
                        "cpu": cpu,
                        "cur_khz": int_or_none((cur.read() or "").strip()),
                        "max_khz": hw_max,
                        "policy_max_khz": int_or_none((cap.read() or "").strip()),
                    }
                )
            out["cpufreq"] = freqs
        net = parse_net_dev(self.net_dev.read())
        if net:
            out["net"] = net
        else:
            self._note("/proc/net/dev")
        return out

    def _target(self, now: float) -> Optional[Dict[str, Any]]:
        files = self.target
        assert files is not None
        out: Dict[str, Any] = {"pid": files.pid}
        status = files.status.read()
        if status_gone(status):
            return None
        mem = parse_kv_kb(
            status,
            ("VmRSS", "VmSwap", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches", "Threads"),
        )
        out["rss_kb"] = mem["VmRSS"]
        out["swap_kb"] = mem["VmSwap"]
        pss = parse_kv_kb(files.smaps.read(), ("Pss",))["Pss"]
        if pss is None:
            self._note("pss")
        out["pss_kb"] = pss
        if self.kind != "system":
            return out
        stat_info = read_target_stat(files.stat.read())
        if stat_info is None:
            return None
        state, ticks, threads = stat_info
        if state in ("Z", "X"):
            return None
        out["cpu_s"] = round(ticks / float(CLK_TCK), 3)
        prev, self.prev_target = self.prev_target, (now, ticks)
        out["cpu_pct"] = (
            round(100.0 * (ticks - prev[1]) / CLK_TCK / (now - prev[0]), 1)
            if prev is not None and now > prev[0]
            else None
        )
        out["threads"] = threads
        out["ctx_voluntary"] = mem["voluntary_ctxt_switches"]
        out["ctx_nonvoluntary"] = mem["nonvoluntary_ctxt_switches"]
        io_text = files.io.read() if files.io is not None else None
        if io_text is None:
            self._note("io")
        counters = parse_kv_kb(io_text, ("rchar", "wchar", "read_bytes", "write_bytes"))
        out.update(counters)
        return out

    # ------------------------------------------------------------------ manifest

    def quality(self) -> Dict[str, Any]:
        ran = (self.stopped_at or time.time()) - (self.started_at or time.time())
        return {
            "samples": self.samples,
            "interval_s": self.interval,
            "missed": self.missed,
            "dropped": self.dropped,
            "sampler_cpu_s": self.cpu_s,
            "ran_s": round(max(0.0, ran), 3),
            "ended": self.ended,
            "target_pid": self.pid,
            "unreadable": list(self.unreadable),
            "clk_tck": CLK_TCK,
            "tree": None
            if self.tree is None
            else {
                "children_files": self.tree.children_files,
                "overflow": self.tree.overflow,
                "max_procs": MAX_TREE_PROCS,
            },
            **({} if self.fds is None else {"open_files": self.fds.quality()}),
        }
