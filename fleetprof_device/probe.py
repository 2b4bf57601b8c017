"""Probe targets: fixed micro-benchmarks (CPU single-thread and all-core, memory copy, disk
write and read) run in the window instead of profiling a process; ``probe.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from .children import Child
from .contract import MIB, PROBE_FILE, PROBE_REPS, PROBE_SCHEMA
from .files import file_tail, last_line, write_json
from .netprobe import PeerError, measure
from .netserve import PeerServer, ip_or_none
from .procfs import kill_quietly, os_error_text, shorten
from .procread import parse_kv_kb, read_once
from .runlog import RunnerLog

PROBE_DEFAULT_S = 2.0  # per benchmark, when the plan does not say
PROBE_RESERVE_S = 0.2  # kept free before the deadline: stopping workers, writing probe.json
PROBE_MIN_S = 0.05  # a benchmark with less time than this left does not start
PROBE_READY_SHARE = 0.5  # all-core: at most this share of its time waiting for the workers,
PROBE_READY_MIN_S = 0.5  # ... or this long (past its end where the deadline leaves room)
PROBE_GO_MARGIN_S = 0.02  # all-core: the first window opens this long after the start file
PROBE_GO_FILE = ".probe-cpu-go"  # all-core: the windows; its appearance starts the workers
PROBE_WORKER_WAIT_S = 2.0  # all-core workers still running this long after their end: killed
PROBE_MEMORY_BYTES = 64 << 20
PROBE_COPY_CHUNK = 4 << 20
PROBE_DISK_BYTES = 256 << 20
PROBE_DISK_BLOCK = 1 << 20
PROBE_DISK_SYNC_BYTES = 8 << 20  # fsync this often: dirty data (and the last fsync) stay small
PROBE_DISK_FILE = ".probe-disk.tmp"

# The CPU workload, as source: the runner runs it in its own process (single-thread) and
# in os.cpu_count() fresh interpreters at once (all-core): the same code everywhere.
PROBE_CPU_SOURCE = '''
import time


def probe_cpu(windows):
    """Count loop iterations (an LCG step and a xorshift each) in every (start, end);
    late_s: how long after start the counting began (a worker still starting up, or the
    repetition before overran: the process was not given the CPU). A window with less
    than half of it left when its turn comes is not timed but marked missed: a few
    thousand iterations over a sliver of a window are a coin toss, not a rate."""
    done = []
    for start, end in windows:
        now = time.time()
        if now < start:
            time.sleep(start - now)
        began = time.time()
        late = round(max(0.0, began - start), 6)
        if end - began < (end - start) / 2.0:
            done.append({"iterations": 0, "seconds": 0.0, "late_s": late, "missed": True})
            continue
        count = 0
        x = 1
        while True:
            for _ in range(2000):
                x = (x * 1103515245 + 12345) & 0xFFFFFFFF
                x ^= x >> 13
            count += 2000
            now = time.time()
            if now >= end:
                break
        done.append({"iterations": count, "seconds": round(now - began, 6), "late_s": late})
    return done
'''
# An all-core worker: says it is up (a line on stdout), waits for the runner's start file
# (the windows, written once every worker is up), counts, prints its repetitions.
PROBE_CPU_MAIN = """
import json, os, sys
go, give_up = sys.argv[1], float(sys.argv[2])
sys.stdout.write("ready\\n")
sys.stdout.flush()
while not os.path.exists(go):
    if time.time() >= give_up:
        sys.exit("no start from the runner")
    time.sleep(0.005)
with open(go) as handle:
    windows = json.load(handle)
sys.stdout.write(json.dumps(probe_cpu(windows)) + "\\n")
"""
_PROBE_NAMESPACE: Dict[str, Any] = {}
exec(compile(PROBE_CPU_SOURCE, "<probe_cpu>", "exec"), _PROBE_NAMESPACE)
# (windows: [[start, end], ...]) -> [{"iterations", "seconds"}, ...]
probe_cpu: Callable[..., List[Dict[str, Any]]] = _PROBE_NAMESPACE["probe_cpu"]


class ProbeError(Exception):
    """A benchmark that cannot run here (too little memory or disk); its result's error."""


def _started(stdout: str) -> bool:
    """An all-core worker is up once it wrote its first line."""
    try:
        return os.path.getsize(stdout) > 0
    except OSError:
        return False


def _windows(start: float, end: float, reps: int) -> List[List[float]]:
    width = max(0.001, (end - start) / reps)
    return [[start + i * width, start + (i + 1) * width] for i in range(reps)]


class Probe:
    """A probe target: fixed micro-benchmarks run in order from T0, stdlib only.

    Each gets its budget (the plan's probe_seconds, less when the deadline is nearer) and
    runs as PROBE_REPS repetitions; the raw numbers (iterations or bytes, seconds) of each
    go to probe.json, written whatever happens. Nothing here outlives the deadline.
    """

    def __init__(
        self, spec: Dict[str, Any], workdir: str, log: RunnerLog, floor_mb: Optional[float] = None
    ) -> None:
        self.kinds: List[str] = list(spec.get("probe") or [])
        self.floor_mb = floor_mb  # the disk benchmark's file never takes free space below it
        self.nominal = float(spec.get("probe_seconds") or PROBE_DEFAULT_S)
        self.reps = int(spec.get("probe_repeats") or PROBE_REPS)
        self.peer = spec.get("probe_peer")  # the network benchmark's (netprobe.py)
        self.serve_spec = spec.get("serve_peer")  # this device is the others' peer
        self.server: Optional[PeerServer] = None
        self.serving: Optional[Dict[str, Any]] = None  # what it served, for probe.json
        self.workdir = workdir
        self.log = log
        self.results: Dict[str, Dict[str, Any]] = {}
        self.children: List[Child] = []

    def serve(self) -> None:
        """Before T0, where the plan says this device is the others' network peer: listen
        on every address at the plan's port for the plan's tokens and addresses."""
        spec = self.serve_spec
        if not isinstance(spec, dict):
            return
        port, tokens = spec.get("port"), spec.get("tokens")
        allowed = [ip_or_none(a) for a in spec.get("allowed") or []]
        self.serving = {"port": port, "error": None}
        if not (isinstance(port, int) and 0 < port < 65536 and isinstance(tokens, dict)):
            self.serving["error"] = "the plan's serve_peer is malformed"
            return
        server = PeerServer({a for a in allowed if a is not None})
        server.tokens = {str(t): str(h) for t, h in tokens.items()}
        try:
            server.listen("0.0.0.0", port)
        except OSError as exc:
            self.serving["error"] = "cannot listen on port %d: %s" % (port, os_error_text(exc))
            self.log("probe: network peer: %s" % self.serving["error"])
            server.close()
            return
        self.server = server
        self.log("probe: network peer listening on port %d" % port)

    def _stop_serving(self, deadline: float, stopped: Callable[[], bool]) -> None:
        """The others measure against this device until their deadline: serve until then."""
        server = self.server
        if server is None or self.serving is None:
            return
        while not stopped() and time.time() < deadline - PROBE_RESERVE_S:
            time.sleep(0.05)
        server.close()
        self.serving.update(
            served=dict(server.served),
            received=dict(server.received),
            turned_away=dict(server.turned_away),
        )
        self.server = None

    def run(
        self, spawn: Callable[..., Child], deadline: float, stopped: Callable[[], bool]
    ) -> None:
        try:
            for index, kind in enumerate(self.kinds):
                left = deadline - PROBE_RESERVE_S - time.time()
                budget = min(self.nominal, left / (len(self.kinds) - index))
                result: Dict[str, Any] = {"budget_s": round(max(0.0, budget), 3), "error": None}
                self.results[kind] = result
                if stopped():
                    result["error"] = "the runner was told to stop before it ran"
                    continue
                if budget < PROBE_MIN_S:
                    result["error"] = "no time left before the deadline"
                    continue
                self.log("probe: %s for %.2f s" % (kind, budget))
                started = time.time()
                try:
                    if kind == "cpu":
                        # A slow all-core start may run past the budget, not into the
                        # budgets the benchmarks after it would get.
                        rest = (len(self.kinds) - index - 1) * budget
                        self._cpu(
                            result,
                            spawn,
                            started + budget,
                            deadline,
                            deadline - PROBE_RESERVE_S - rest,
                        )
                    elif kind == "memory":
                        self._memory(result, started + budget)
                    elif kind == "network":
                        latest = deadline - PROBE_RESERVE_S
                        measure(result, self.peer, self.reps, started + budget, latest)
                    else:
                        self._disk(result, started + budget)
                except PeerError as exc:
                    result["error"] = str(exc)
                    self.log("probe: %s: %s" % (kind, result["error"]))
                except Exception as exc:  # one benchmark's failure is its result
                    result["error"] = "%s: %s" % (type(exc).__name__, os_error_text(exc))
                    self.log("probe: %s: %s" % (kind, result["error"]))
                result["ran_s"] = round(time.time() - started, 3)
        finally:
            try:
                self._stop_serving(deadline, stopped)
            finally:
                self.write()

    def ran(self) -> List[str]:
        """The benchmarks that measured something."""
        first = {"cpu": "single", "memory": "copy", "disk": "write", "network": "rtt"}
        return [
            kind
            for kind, result in self.results.items()
            if (result.get(first[kind]) or {}).get("reps")
        ]

    def problems(self) -> List[str]:
        return [
            "probe %s: %s" % (kind, result["error"])
            for kind, result in self.results.items()
            if result.get("error")
        ]

    def write(self) -> None:
        write_json(
            os.path.join(self.workdir, PROBE_FILE),
            {
                "schema": PROBE_SCHEMA,
                "kinds": self.kinds,
                "nominal_s": self.nominal,
                "reps": self.reps,
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "results": self.results,
                **({} if self.serving is None else {"serving": self.serving}),
            },
        )

    # ------------------------------------------------------------------ benchmarks

    def _cpu(
        self,
        result: Dict[str, Any],
        spawn: Callable[..., Child],
        end: float,
        deadline: float,
        latest_end: Optional[float] = None,
    ) -> None:
        """Single-thread ops/s in this process, then all-core: os.cpu_count() interpreters
        running the same loop in the same windows (their rates add up). The all-core
        windows are set once every worker is up (or PROBE_READY_SHARE of the time, at
        least PROBE_READY_MIN_S, is gone): an interpreter starts slowly on a throttled or
        busy device, and windows fixed before it started would be missed, not measured.
        A slow start may push the windows past ``end``, up to ``latest_end`` (by default
        the deadline's reserve)."""
        start = time.time()
        middle = start + (end - start) / 2.0
        result["single"] = {"reps": probe_cpu(_windows(start, middle, self.reps))}
        processes = os.cpu_count() or 1
        result["all"] = {"processes": processes, "reps": []}
        if not sys.executable:
            raise ProbeError("all-core: the Python interpreter's path is unknown")
        go = os.path.join(self.workdir, PROBE_GO_FILE)
        with contextlib.suppress(OSError):
            os.unlink(go)
        argv = [sys.executable, "-c", PROBE_CPU_SOURCE + PROBE_CPU_MAIN, go, repr(deadline)]
        labels = ["probe-cpu-%d" % i for i in range(processes)]
        workers: List[Child] = []
        windows: List[List[float]] = []
        try:
            spawned = time.time()
            for label in labels:
                workers.append(spawn(label, argv, self.workdir))
                self.children.append(workers[-1])
            measure = max(end - spawned, PROBE_MIN_S) * (1.0 - PROBE_READY_SHARE)
            if latest_end is None:
                latest_end = deadline - PROBE_RESERVE_S
            latest_end = max(latest_end, end)
            latest = latest_end - PROBE_GO_MARGIN_S - measure
            ready_by = min(max(end - measure, spawned + PROBE_READY_MIN_S), latest)
            outs = [os.path.join(self.workdir, label + ".stdout") for label in labels]
            while time.time() < ready_by and not all(
                _started(out) or w.exited() for out, w in zip(outs, workers)
            ):
                time.sleep(0.005)
            result["all"]["ready_s"] = round(time.time() - spawned, 3)
            result["all"]["ready"] = sum(1 for out in outs if _started(out))
            first = time.time() + PROBE_GO_MARGIN_S
            stop = max(end, min(first + measure, latest_end))
            windows = _windows(first, stop, self.reps)
            give_up = min(windows[-1][1] + PROBE_WORKER_WAIT_S, deadline)
            with open(go + ".tmp", "w") as handle:
                json.dump(windows, handle)
            os.replace(go + ".tmp", go)  # atomic: a worker never reads half of it
            while time.time() < give_up and not all(w.exited() for w in workers):
                time.sleep(0.02)
        finally:
            for worker in workers:
                if not worker.exited():
                    kill_quietly(worker.pid, signal.SIGKILL, group=True)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        worker.popen.wait(1.0)
                    worker.exited()
            with contextlib.suppress(OSError):
                os.unlink(go)
        outputs: List[List[Any]] = []
        failures: List[str] = []
        for label, worker in zip(labels, workers):
            path = os.path.join(self.workdir, label)
            lines = file_tail(path + ".stdout", 65536).strip().splitlines()
            try:
                reps = json.loads(lines[-1]) if worker.exit_code == 0 and lines else None
            except ValueError:
                reps = None
            if isinstance(reps, list) and len(reps) == len(windows):
                outputs.append(reps)
            else:
                failures.append(
                    "%s exited with %s: %s"
                    % (
                        label,
                        worker.exit_code,
                        last_line(file_tail(path + ".stderr")) or "no result",
                    )
                )
            for suffix in (".stdout", ".stderr"):
                with contextlib.suppress(OSError):
                    os.unlink(path + suffix)
        if failures:
            raise ProbeError(
                "all-core: %d of %d workers failed (%s)"
                % (len(failures), processes, shorten(failures[0], 300))
            )
        result["all"]["reps"] = [
            {"workers": [out[i] for out in outputs]} for i in range(len(windows))
        ]

    def _memory(self, result: Dict[str, Any], end: float) -> None:
        """Copy MB/s: memoryview slice copies, PROBE_COPY_CHUNK at a time, cycling through
        a buffer of min(64 MiB, 10 % of MemAvailable) so it does not fit in a cache."""
        available = parse_kv_kb(read_once("/proc/meminfo"), ("MemAvailable",))["MemAvailable"]
        size = PROBE_MEMORY_BYTES
        if available is not None:
            size = min(size, available * 1024 // 10)
        size -= size % PROBE_COPY_CHUNK
        if size < PROBE_COPY_CHUNK:
            raise ProbeError(
                "too little free memory for a %d MiB buffer" % (PROBE_COPY_CHUNK >> 20)
            )
        src = bytearray(b"\xa5") * size
        dst = bytearray(size)
        reps: List[Dict[str, Any]] = []
        result["buffer_bytes"] = size
        result["copy"] = {"chunk_bytes": PROBE_COPY_CHUNK, "reps": reps}
        with memoryview(src) as source, memoryview(dst) as dest:
            dest[:] = source  # every page faulted in before anything is timed
            for window in _windows(time.time(), end, self.reps):
                began, copied, offset = time.time(), 0, 0
                while True:
                    stop = offset + PROBE_COPY_CHUNK
                    dest[offset:stop] = source[offset:stop]
                    copied += PROBE_COPY_CHUNK
                    offset = (offset + PROBE_COPY_CHUNK) % size
                    now = time.time()
                    if now >= window[1]:
                        break
                reps.append({"bytes": copied, "seconds": round(now - began, 6)})

    def _disk(self, result: Dict[str, Any], end: float) -> None:
        """Sequential write (fsync'ed every 8 MiB and at the end) and read MB/s of one file
        of min(256 MiB, 10 % of the free space) in the workdir, deleted afterwards. Before
        each read its pages are dropped from the page cache (POSIX_FADV_DONTNEED after the
        fsync), so the read comes from the device, not from memory."""
        fs = os.statvfs(self.workdir)
        free = fs.f_bavail * fs.f_frsize
        size = min(PROBE_DISK_BYTES, free // 10)
        if self.floor_mb is not None:
            size = min(size, free - int(self.floor_mb * MIB))
        size -= size % PROBE_DISK_BLOCK
        if size < PROBE_DISK_BLOCK:
            raise ProbeError(
                "less than 10 MiB free in %s%s"
                % (
                    self.workdir,
                    "" if self.floor_mb is None else " above the floor of %g MiB" % self.floor_mb,
                )
            )
        path = os.path.join(self.workdir, PROBE_DISK_FILE)
        block = os.urandom(PROBE_DISK_BLOCK)  # incompressible
        writes: List[Dict[str, Any]] = []
        reads: List[Dict[str, Any]] = []
        result.update(
            file_bytes_max=size,
            block_bytes=PROBE_DISK_BLOCK,
            sync_every_bytes=PROBE_DISK_SYNC_BYTES,
            cache_dropped=True,
            write={"reps": writes},
            read={"reps": reads},
        )

        def drop(fd: int) -> None:
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except (AttributeError, OSError):
                result["cache_dropped"] = False

        try:
            for window in _windows(time.time(), end, self.reps):
                middle = (window[0] + window[1]) / 2.0
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    began, written, unsynced = time.time(), 0, 0
                    while written < size:
                        count = os.write(fd, block)
                        written += count
                        unsynced += count
                        if unsynced >= PROBE_DISK_SYNC_BYTES:
                            os.fsync(fd)
                            unsynced = 0
                        if time.time() >= middle:
                            break
                    os.fsync(fd)
                    writes.append({"bytes": written, "seconds": round(time.time() - began, 6)})
                    drop(fd)
                finally:
                    os.close(fd)
                fd = os.open(path, os.O_RDONLY)
                try:
                    drop(fd)
                    began, got = time.time(), 0
                    while True:
                        data = os.read(fd, PROBE_DISK_BLOCK)
                        if not data:  # read it all: drop it again and start over
                            if time.time() >= window[1]:
                                break
                            drop(fd)
                            os.lseek(fd, 0, os.SEEK_SET)
                            continue
                        got += len(data)
                        if time.time() >= window[1]:
                            break
                    reads.append({"bytes": got, "seconds": round(time.time() - began, 6)})
                finally:
                    os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
