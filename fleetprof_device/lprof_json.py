"""A line_profiler result (``kernprof -l -o line_profiler.lprof``: a pickle) -> small JSON,
on the device.

The controller never unpickles device data: the runner runs this module after the program
stopped, with the program's interpreter (the one line_profiler is installed for; a post
step, ``BOOTSTRAP``), which loads the file with line_profiler's own ``load_stats``. This
module needs only the standard library to load; line_profiler is imported when it runs.

The JSON holds, for the ``top`` profiled functions by time, each line that ran: its hits,
its time (seconds), time per hit (microseconds), its share of the function's time, and
its source text (cut at ``MAX_LINE_CHARS``, where the device can read the file). It is
written even when the file cannot be read: ``error`` says why.
"""

from __future__ import annotations

import importlib
import linecache
import os
import platform
from typing import Any, Dict, List, Optional, Tuple

from .contract import DEVICE_PACKAGE_ARG, SOURCE_LINE_MAX_CHARS
from .converters import converter_main

SCHEMA = "fleetprof.line-profiler/1"
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from fleetprof_device.lprof_json import main; sys.exit(main(sys.argv[2:]))"
)
MAX_TOP = 100
MAX_LINES = 200  # lines kept per function, in line order
MAX_TEXT = 300
MAX_LINE_CHARS = SOURCE_LINE_MAX_CHARS
MAX_STATS_BYTES = 64 * 1024 * 1024


def post_argv(python: str, stats: str, output: str, top: int) -> List[str]:
    """The post step that converts ``stats`` into ``output`` with ``python``."""
    return [python, "-c", BOOTSTRAP, DEVICE_PACKAGE_ARG, stats, output, str(top)]


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_TEXT else "..." + text[-(MAX_TEXT - 3) :]


def _source(file: str, line: int) -> Optional[str]:
    text = linecache.getline(file, line) if os.path.isfile(file) else ""
    return text.rstrip("\r\n")[:MAX_LINE_CHARS] if text else None


def _function(key: Any, rows: Any, unit: float) -> Dict[str, Any]:
    file, first, name = ([*list(key), "?", 0, "?"])[:3]
    timings: List[Tuple[int, int, float]] = [
        (int(line), int(hits), float(time) * unit) for line, hits, time in rows
    ]
    total = sum(t[2] for t in timings)
    lines = []
    for line, hits, seconds in sorted(timings)[:MAX_LINES]:
        lines.append(
            {
                "line": line,
                "hits": hits,
                "time_s": round(seconds, 9),
                "per_hit_us": round(1e6 * seconds / hits, 3) if hits else None,
                "pct": round(100.0 * seconds / total, 2) if total > 0 else None,
                "text": _source(str(file), line),
            }
        )
    return {
        "function": _text(name),
        "file": _text(file),
        "line": first if isinstance(first, int) else 0,
        "time_s": round(total, 9),
        "lines_total": len(timings),
        "lines": lines,
    }


def summarize(stats: Any, top: int) -> Dict[str, Any]:
    """line_profiler's LineStats -> the JSON document."""
    top = max(1, min(top, MAX_TOP))
    unit = float(stats.unit)
    functions = [_function(key, rows, unit) for key, rows in stats.timings.items() if rows]
    functions.sort(key=lambda f: (-f["time_s"], f["function"], f["file"]))
    return {
        "schema": SCHEMA,
        "python": platform.python_version(),
        "unit_s": unit,
        "functions_total": len(stats.timings),
        "functions_run": len(functions),
        "functions": functions[:top],
        "top": top,
    }


def convert(path: str, top: int) -> Tuple[Dict[str, Any], Optional[str]]:
    """(document, None), or (a document holding ``error``, the error)."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise ValueError("the file is empty")
        if size > MAX_STATS_BYTES:
            raise ValueError("the file is %d bytes, over the cap of %d" % (size, MAX_STATS_BYTES))
        line_profiler = importlib.import_module("line_profiler")
        return summarize(line_profiler.load_stats(path), top), None
    except Exception as exc:  # a pickle that is not line_profiler's raises anything
        why = "%s: %s" % (os.path.basename(path), _text(str(exc) or type(exc).__name__))
        return {"schema": SCHEMA, "python": platform.python_version(), "error": why}, why


def main(argv: List[str]) -> int:
    """INPUT OUTPUT TOP -> 0, or 1 (OUTPUT then says why; so does stderr)."""
    return converter_main(argv, convert, "lprof_json", "line_profiler stats")
