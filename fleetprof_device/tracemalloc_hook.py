"""The tracemalloc startup hook: this file's text is what the runner writes, as
``sitecustomize.py``, into a directory of its workdir that it puts first on the launched
program's PYTHONPATH (fleetprof_device/inprogram.py); the program is started with
PYTHONTRACEMALLOC=<frames>, so tracemalloc traces from the interpreter's start.

Run as ``sitecustomize`` it (a) starts a daemon thread that every interval takes a
snapshot and writes a JSON summary (top sites by size and by count, growth by site since
the first snapshot, traced current and peak, snapshot times) atomically next to the
session's files: no pickle ever exists, and a killed program loses one interval at most;
a last snapshot is taken at a normal exit; (b) puts the environment back as the program
had it (its children do not run the hook) and runs the ``sitecustomize`` this one
shadows, if there is one, so the program behaves as without the hook.

It reads its settings (output path, interval, frames, top, size cap) from the JSON file
beside it, written by the runner; their bounds live in fleetprof_device/contract.py. It
is imported by nothing else, uses the standard library only (Python 3.8+), and never
raises into the program: an error is recorded in the summary's ``errors``.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time

CONFIG_NAME = "fleetprof-tracemalloc.json"  # beside this file; written by inprogram.py
SERIES_POINTS = 120
TYPE_CHECKING = False  # typing is not imported into the program for the annotations
if TYPE_CHECKING:
    from typing import Any


class _Tracer:
    """The snapshots of one program, and its summary file."""

    def __init__(self, config: dict[str, Any], here: str) -> None:
        self.output = str(config["output"])
        self.temp = os.path.join(here, "summary.json.tmp")  # not packed; same filesystem
        self.interval = float(config["interval_s"])
        self.frames = int(config["frames"])
        self.top = int(config["top"])
        self.max_bytes = int(config["max_bytes"])
        self.schema = str(config["schema"])
        self.max_path = int(config["max_path_chars"])
        self.max_errors = int(config["max_errors"])
        self.first_traced: int | None = None
        self.here = here
        self.lock = threading.Lock()
        self.first: dict[tuple[str, int], tuple[int, int]] | None = None  # size, count
        self.peak = 0
        self.busy_s = 0.0  # seconds spent taking and writing snapshots (holding the GIL)
        self.own_files: tuple[str, ...] = ()  # the hook's own allocations: not the program's
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.snapshots = 0
        self.series: list[list[float]] = []  # [seconds from the start, traced current, traced peak]
        self.errors: list[str] = []
        self.started_at = time.time()
        self.started_by = "environment"
        self.final = False

    def error(self, what: str, exc: BaseException) -> None:
        if len(self.errors) < self.max_errors:
            self.errors.append(("%s: %s: %s" % (what, type(exc).__name__, exc))[:300])

    def loop(self) -> None:
        while True:
            time.sleep(self.interval)
            self.take(final=False)

    def take(self, final: bool) -> None:
        """One snapshot and its summary written; never raises."""
        try:
            with self.lock:
                if self.final:
                    return
                self._take(final)
        except BaseException as exc:  # the program must never see it
            try:  # noqa: SIM105 - contextlib is not imported into the program for this
                self.error("snapshot", exc)
            except BaseException:  # not even a failed error record
                pass

    def _take(self, final: bool) -> None:
        import tracemalloc

        if not tracemalloc.is_tracing():
            return
        now = time.time()
        began = time.perf_counter()
        # Read before the snapshot: its own work is not the program's memory. The peak is
        # then reset (Python 3.9+), so the next reading's peak is the program's alone.
        current, peak = tracemalloc.get_traced_memory()
        self.peak = max(self.peak, peak)
        snapshot = tracemalloc.take_snapshot()
        sites = _sites(snapshot, self.own_files)
        del snapshot
        if self.first is None:
            # Growth is measured from this first snapshot's sites (compare_to(first,
            # "lineno") without keeping the snapshot, and its traces, alive).
            self.first = dict((key, (site[0], site[1])) for key, site in sites.items())
            self.first_at = now
            self.first_traced = current
        self.snapshots += 1
        self.last_at = now
        self.final = final
        self._point(now - self.started_at, current, self.peak)
        summary = self._summary(sites, current, tracemalloc.get_tracemalloc_memory())
        self._write(summary)
        if hasattr(tracemalloc, "reset_peak"):
            tracemalloc.reset_peak()
        self.busy_s += time.perf_counter() - began

    def _point(self, t: float, current: int, peak: int) -> None:
        self.series.append([round(t, 3), current, peak])
        if len(self.series) > SERIES_POINTS:
            self.series = self.series[::2]

    def _summary(
        self, sites: dict[tuple[str, int], list[Any]], current: int, own: int
    ) -> dict[str, Any]:
        rows = [
            {
                "file": self._path(key[0]),
                "line": key[1],
                "size": value[0],
                "count": value[1],
                "traceback": [
                    {"file": self._path(f.filename), "line": f.lineno} for f in reversed(value[2])
                ],
            }
            for key, value in sites.items()
        ]
        by_size = sorted(rows, key=lambda r: (-r["size"], -r["count"]))[: self.top]
        by_count = sorted(rows, key=lambda r: (-r["count"], -r["size"]))[: self.top]
        first = self.first or {}
        growth: list[dict[str, Any]] = []
        if self.snapshots > 1:
            for key in set(sites) | set(first):
                size, count = (sites[key][0], sites[key][1]) if key in sites else (0, 0)
                was_size, was_count = first.get(key, (0, 0))
                if size > was_size:
                    growth.append(
                        {
                            "file": self._path(key[0]),
                            "line": key[1],
                            "size_diff": size - was_size,
                            "count_diff": count - was_count,
                            "size": size,
                            "count": count,
                        }
                    )
            growth.sort(key=lambda r: (-int(r["size_diff"]), str(r["file"]), int(r["line"])))
        return {
            "schema": self.schema,
            "pid": os.getpid(),
            "python": "%d.%d.%d" % sys.version_info[:3],
            "frames": self.frames,
            "interval_s": self.interval,
            "top": self.top,
            "started_by": self.started_by,
            "started_at": self.started_at,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "snapshots": self.snapshots,
            "final": self.final,
            "first_traced_bytes": self.first_traced,
            "traced_current_bytes": current,
            "traced_peak_bytes": self.peak,
            "tracemalloc_bytes": own,
            # Up to the snapshot before this one: this one's cost is known once written.
            "snapshot_seconds": round(self.busy_s, 3),
            "series": self.series,
            "top_by_size": by_size,
            "top_by_count": by_count,
            "growth": growth[: self.top],
            "errors": list(self.errors),
            "cut": False,
        }

    def _path(self, name: object) -> str:
        text = str(name)
        return text if len(text) <= self.max_path else "..." + text[-self.max_path :]

    def _write(self, summary: dict[str, Any]) -> None:
        data = json.dumps(summary, separators=(",", ":")).encode("utf-8")
        while len(data) > self.max_bytes:
            # Tracebacks first, then fewer rows, until the summary fits its cap.
            summary["cut"] = True
            tables = [summary[k] for k in ("top_by_size", "top_by_count", "growth")]
            if any(len(r.get("traceback") or ()) > 1 for t in tables for r in t):
                for table in tables:
                    for row in table:
                        if "traceback" in row:
                            row["traceback"] = row["traceback"][:1]
            elif any(len(t) > 1 for t in tables) or len(summary["series"]) > 2:
                for key in ("top_by_size", "top_by_count", "growth", "series"):
                    summary[key] = summary[key][: max(1, len(summary[key]) // 2)]
            else:
                return
            data = json.dumps(summary, separators=(",", ":")).encode("utf-8")
        with open(self.temp, "wb") as handle:
            handle.write(data)
        os.replace(self.temp, self.output)


def _sites(snapshot: Any, own_files: tuple[str, ...]) -> dict[tuple[str, int], list[Any]]:
    """(file, line) of the allocating line -> [size, count, the traceback of its largest
    group]: the snapshot's "lineno" statistics, each with a traceback, without the lines
    of ``own_files`` (grouped first: filtering every trace would cost a pass more)."""
    sites: dict[tuple[str, int], list[Any]] = {}
    for stat in snapshot.statistics("traceback"):
        frames = list(stat.traceback)  # oldest first (Python 3.7+)
        if not frames:
            continue
        site = sites.setdefault((frames[-1].filename, frames[-1].lineno), [0, 0, frames, -1])
        site[0] += stat.size
        site[1] += stat.count
        if stat.size > site[3]:
            site[2], site[3] = frames, stat.size
    for key in [key for key in sites if key[0].startswith(own_files)]:
        del sites[key]
    return sites


def _restore_environment(config: dict[str, Any], here: str) -> None:
    """The program's own PYTHONPATH and PYTHONTRACEMALLOC, for the processes it starts
    (they do not run the hook) and for itself; this directory leaves sys.path."""
    for name, value in (config.get("environment") or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    while here in sys.path:
        sys.path.remove(here)


def _chain(here: str) -> None:
    """Run the sitecustomize this one shadows (Debian ships one), as it would have run."""
    import importlib.machinery
    import importlib.util

    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _start() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    tracer: _Tracer | None = None
    try:
        with open(os.path.join(here, CONFIG_NAME), encoding="utf-8") as handle:
            config = json.load(handle)
        tracer = _Tracer(config, here)
        _restore_environment(config, here)
        import tracemalloc

        tracer.own_files = (
            os.path.abspath(__file__),
            tracemalloc.__file__,
            os.path.dirname(json.__file__) + os.sep,
        )
        if not tracemalloc.is_tracing():  # PYTHONTRACEMALLOC was not honoured
            tracemalloc.start(tracer.frames)
            tracer.started_by = "hook"
        thread = threading.Thread(target=tracer.loop, name="fleetprof-tracemalloc")
        thread.daemon = True
        thread.start()
        atexit.register(tracer.take, True)
    except BaseException as exc:  # the program must never see it
        if tracer is not None:
            tracer.error("start", exc)
    try:
        _chain(here)
    except Exception as exc:
        # As site.py says it when a sitecustomize fails; the program goes on.
        sys.stderr.write(
            "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n%s: %s\n"
            % (type(exc).__name__, exc)
        )
        if tracer is not None:
            tracer.error("the shadowed sitecustomize", exc)


if __name__ == "sitecustomize":
    _start()
