"""A memray capture (``python -m memray run -o memray.bin``) -> small JSON, on the device.

memray's file is its own binary format, read by its own library: the runner runs this
module after the program stopped, with the program's interpreter (the one memray is
installed for; a post step, ``BOOTSTRAP``). This module needs only the standard library
to load; memray is imported when it runs, from the program's environment.

The JSON holds memray's metadata (peak memory, the allocation records' count), the totals
over the run (every allocation and its bytes), the ``top`` sites (function, file:line: the
innermost Python frame) by bytes allocated and by allocations over the run, the sites that
held the most memory at the peak (high-water mark) and those whose memory was never freed
(leaked: still allocated when the program stopped), each with a short Python stack. Texts
and rows are capped. It is written even when the capture cannot be read: ``error`` says why.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .contract import DEVICE_PACKAGE_ARG
from .converters import converter_main

SCHEMA = "fleetprof.memray/1"
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from fleetprof_device.memray_json import main; sys.exit(main(sys.argv[2:]))"
)
MAX_TOP = 100
MAX_STACK = 10  # frames kept of a site's stack, innermost first
MAX_TEXT = 300  # characters of a function or file name (a longer one keeps its end)
MAX_ERRORS = 10

Site = Tuple[str, str, int]


def post_argv(python: str, capture: str, output: str, top: int) -> List[str]:
    """The post step that converts ``capture`` into ``output`` with ``python``."""
    return [python, "-c", BOOTSTRAP, DEVICE_PACKAGE_ARG, capture, output, str(top)]


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_TEXT else "..." + text[-(MAX_TEXT - 3) :]


def _frame(raw: Any) -> Site:
    function, file, line = ([*list(raw), "?", "?", 0])[:3]
    return (_text(function), _text(file), line if isinstance(line, int) else 0)


def _stack(record: Any) -> List[Site]:
    try:
        return [_frame(frame) for frame in record.stack_trace(MAX_STACK)]
    except (ValueError, TypeError, NotImplementedError):
        return []


def _program_frames(stack: List[Site]) -> List[Site]:
    """A stack without what runs the program (memray's ``run`` command and runpy), which
    every stack ends with; the innermost frame is kept whatever it is."""
    for index, frame in enumerate(stack[1:], 1):
        if "runpy" in frame[1] or "%smemray%s" % (os.sep, os.sep) in frame[1]:
            return stack[:index]
    return stack


def _site_row(site: Site, size: int, count: int, stack: List[Site]) -> Dict[str, Any]:
    stack = _program_frames(stack)
    return {
        "function": site[0],
        "file": site[1],
        "line": site[2],
        "size": size,
        "count": count,
        "stack": ["%s %s:%d" % frame for frame in stack],
    }


def by_site(records: Iterable[Any], top: int) -> Tuple[List[Dict[str, Any]], int, int]:
    """memray's records (one per stack) added up by site, the innermost frame: the ``top``
    by size, each with the stack that held the most there; and the totals of every record."""
    sizes: Dict[Site, List[Any]] = {}
    total_size = total_count = 0
    for record in records:
        size, count = int(record.size), int(record.n_allocations)
        total_size, total_count = total_size + size, total_count + count
        stack = _stack(record)
        site = stack[0] if stack else ("<unknown>", "<unknown>", 0)
        kept = sizes.setdefault(site, [0, 0, stack, -1])
        kept[0], kept[1] = kept[0] + size, kept[1] + count
        if size > kept[3]:
            kept[2], kept[3] = stack, size
    ranked = sorted(sizes.items(), key=lambda item: (-item[1][0], item[0]))[:top]
    return [_site_row(site, v[0], v[1], v[2]) for site, v in ranked], total_size, total_count


def _located(rows: Iterable[Any], key: str, top: int) -> List[Dict[str, Any]]:
    """compute_statistics' top locations ((function, file, line), value) as rows."""
    found = []
    for location, value in list(rows)[:top]:
        function, file, line = _frame(location)
        found.append({"function": function, "file": file, "line": line, key: int(value)})
    return found


def _metadata(meta: Any) -> Dict[str, Any]:
    duration = None
    with contextlib.suppress(AttributeError, TypeError):
        duration = round((meta.end_time - meta.start_time).total_seconds(), 3)
    return {
        "peak_memory": int(meta.peak_memory),
        "total_allocations": int(meta.total_allocations),
        "duration_s": duration,
        "python_allocator": _text(getattr(meta, "python_allocator", "")),
        "native_traces": bool(getattr(meta, "has_native_traces", False)),
        "trace_python_allocators": bool(getattr(meta, "trace_python_allocators", False)),
        "file_format": _text(getattr(getattr(meta, "file_format", None), "name", "")),
    }


def summarize(memray: Any, capture: str, top: int) -> Dict[str, Any]:
    """The capture -> the JSON document (memray's errors propagate)."""
    top = max(1, min(top, MAX_TOP))
    errors: List[str] = []
    document: Dict[str, Any] = {
        "schema": SCHEMA,
        "python": platform.python_version(),
        "memray": _text(getattr(memray, "__version__", "?")),
        "top": top,
    }
    reader = memray.FileReader(capture)
    try:
        document["metadata"] = _metadata(reader.metadata)
        peak = reader.get_high_watermark_allocation_records(merge_threads=True)
        document["peak_sites"], document["peak_bytes"], _ = by_site(peak, top)
        leaked = reader.get_leaked_allocation_records(merge_threads=True)
        sites, size, count = by_site(leaked, top)
        document.update(leaked_sites=sites, leaked_bytes=size, leaked_allocations=count)
    finally:
        reader.close()
    try:  # every allocation of the run (not in an --aggregate capture)
        stats = importlib.import_module("memray._memray").compute_statistics(
            capture, num_largest=top
        )
        document.update(
            total_allocations=int(stats.total_num_allocations),
            total_bytes=int(stats.total_memory_allocated),
            top_by_size=_located(stats.top_locations_by_size, "size", top),
            top_by_count=_located(stats.top_locations_by_count, "count", top),
        )
    except Exception as exc:  # memray's own: its version, or an aggregated capture
        errors.append("no totals over the run: %s" % _text(str(exc) or type(exc).__name__))
    document["errors"] = errors[:MAX_ERRORS]
    return document


def convert(capture: str, top: int) -> Tuple[Dict[str, Any], Optional[str]]:
    """(document, None), or (a document holding ``error``, the error)."""
    try:
        if os.path.getsize(capture) == 0:
            raise ValueError("the capture is empty")
        memray = importlib.import_module("memray")
        return summarize(memray, capture, top), None
    except Exception as exc:  # memray raises its own kinds on a damaged file
        why = "%s: %s" % (os.path.basename(capture), _text(str(exc) or type(exc).__name__))
        return {"schema": SCHEMA, "python": platform.python_version(), "error": why}, why


def main(argv: List[str]) -> int:
    """INPUT OUTPUT TOP -> 0, or 1 (OUTPUT then says why; so does stderr)."""
    return converter_main(argv, convert, "memray_json", "memray capture")
