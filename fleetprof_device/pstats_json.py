"""A cProfile profile (``python -m cProfile -o FILE``: marshal) -> small JSON, on the device.

marshal's format belongs to the Python version that wrote it, and the controller never
unmarshals device data: the runner runs this module, after the program stopped, with the
same interpreter that ran the program (a post step, ``BOOTSTRAP`` below). Only marshal and
json are needed (not pstats): the profile is the dict cProfile dumps,
``{(file, line, name): (primitive calls, calls, tottime, cumtime, {caller: (pc, nc, tt, ct)})}``.

The JSON keeps the ``top`` functions by own time (tottime) and by cumulative time, their
callers and callees (``edges`` of each, the largest by cumulative time), and the totals over
every function; strings and counts are capped, so the file stays small whatever the program.
It is written even when the profile cannot be read: ``error`` says why (exit code 1).
"""

from __future__ import annotations

import json
import marshal
import os
import platform
import sys
from typing import Any, Dict, List, Optional, Tuple

from .contract import DEVICE_PACKAGE_ARG

SCHEMA = "fleetprof.cprofile/1"
# The post step: the target's own interpreter puts the device package (the zipapp, or a
# source checkout; the runner substitutes DEVICE_PACKAGE_ARG) on sys.path and runs main().
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from fleetprof_device.pstats_json import main; sys.exit(main(sys.argv[2:]))"
)
MAX_PROFILE_BYTES = 256 * 1024 * 1024  # a larger .prof is not read (an error, said so)
MAX_TOP = 500
MAX_EDGES = 50
MAX_TEXT = 300  # characters of a file name or function name

Key = Tuple[str, int, str]


def post_argv(python: str, profile: str, output: str, top: int, edges: int) -> List[str]:
    """The post step that converts ``profile`` into ``output`` with ``python``."""
    return [python, "-c", BOOTSTRAP, DEVICE_PACKAGE_ARG, profile, output, str(top), str(edges)]


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _key(raw: Any) -> Key:
    if not (isinstance(raw, tuple) and len(raw) == 3):
        raise ValueError("a function key is not (file, line, name): %r" % (raw,)[:200])
    line = raw[1] if isinstance(raw[1], int) and not isinstance(raw[1], bool) else 0
    return (_text(raw[0]), line, _text(raw[2]))


def _numbers(raw: Any, what: str) -> Tuple[int, int, float, float]:
    if not (isinstance(raw, tuple) and len(raw) >= 4):
        raise ValueError("%s is not (primitive calls, calls, tottime, cumtime)" % what)
    pc, nc, tt, ct = raw[:4]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (pc, nc, tt, ct)):
        raise ValueError("%s holds a value that is not a number" % what)
    return int(pc), int(nc), float(tt), float(ct)


def read_stats(data: Any) -> Tuple[Dict[Key, Tuple[int, int, float, float]], List[Any]]:
    """The dumped dict -> (function -> numbers, edges as (caller, callee, numbers))."""
    if not isinstance(data, dict):
        raise ValueError("the profile is not a cProfile dump (a %s)" % type(data).__name__)
    stats: Dict[Key, Tuple[int, int, float, float]] = {}
    edges: List[Any] = []
    for raw_key, raw in data.items():
        key = _key(raw_key)
        stats[key] = _numbers(raw, "an entry")
        callers = raw[4] if len(raw) > 4 else {}
        if not isinstance(callers, dict):
            raise ValueError("an entry's callers are not a dict")
        for raw_caller, numbers in callers.items():
            if isinstance(numbers, int):  # the pure-Python profile module: calls only
                numbers = (numbers, numbers, 0.0, 0.0)
            edges.append((_key(raw_caller), key, _numbers(numbers, "a caller")))
    return stats, edges


def _function(key: Key, numbers: Tuple[int, int, float, float]) -> Dict[str, Any]:
    return {
        "file": key[0],
        "line": key[1],
        "function": key[2],
        "primitive_calls": numbers[0],
        "calls": numbers[1],
        "tottime": round(numbers[2], 9),
        "cumtime": round(numbers[3], 9),
    }


def summarize(data: Any, top: int, per_function: int) -> Dict[str, Any]:
    """The dumped dict -> the JSON document (ValueError when it is not a cProfile dump)."""
    top = max(1, min(top, MAX_TOP))
    per_function = max(0, min(per_function, MAX_EDGES))
    stats, edges = read_stats(data)
    by_tottime = sorted(stats, key=lambda k: (-stats[k][2], k))
    by_cumtime = sorted(stats, key=lambda k: (-stats[k][3], k))
    kept = list(dict.fromkeys(by_tottime[:top] + by_cumtime[:top]))
    hot = set(by_tottime[:top])
    chosen: List[Any] = []
    for side in (0, 1):  # callers of each hot function, then its callees
        picked: Dict[Key, List[Any]] = {}
        for edge in sorted(edges, key=lambda e: (-e[2][3], e[0], e[1])):
            end = edge[1 - side]
            if end in hot and len(picked.setdefault(end, [])) < per_function:
                picked[end].append(edge)
        chosen.extend(e for group in picked.values() for e in group)
    unique = list(dict.fromkeys((e[0], e[1]) for e in chosen))
    numbers = dict(((e[0], e[1]), e[2]) for e in chosen)
    return {
        "schema": SCHEMA,
        "python": platform.python_version(),
        "functions_total": len(stats),
        "edges_total": len(edges),
        "calls": sum(n[1] for n in stats.values()),
        "primitive_calls": sum(n[0] for n in stats.values()),
        "tottime": round(sum(n[2] for n in stats.values()), 9),
        "functions": [_function(k, stats[k]) for k in kept],
        "edges": [
            {
                "caller": list(caller),
                "callee": list(callee),
                "primitive_calls": numbers[(caller, callee)][0],
                "calls": numbers[(caller, callee)][1],
                "tottime": round(numbers[(caller, callee)][2], 9),
                "cumtime": round(numbers[(caller, callee)][3], 9),
            }
            for caller, callee in unique
        ],
        "top": top,
        "edges_per_function": per_function,
    }


def convert(profile: str, top: int, per_function: int) -> Tuple[Dict[str, Any], Optional[str]]:
    """(document, None), or (a document holding ``error``, the error)."""
    try:
        size = os.path.getsize(profile)
        if size > MAX_PROFILE_BYTES:
            raise ValueError(
                "the profile is %d bytes, over the cap of %d" % (size, MAX_PROFILE_BYTES)
            )
        if size == 0:
            raise ValueError("the profile is empty")
        with open(profile, "rb") as handle:
            data = marshal.load(handle)
        return summarize(data, top, per_function), None
    except (OSError, EOFError, ValueError, TypeError) as exc:
        why = "%s: %s" % (os.path.basename(profile), _text(str(exc) or type(exc).__name__))
        if isinstance(exc, EOFError):
            why = "%s: truncated (marshal data ended early)" % os.path.basename(profile)
        return {"schema": SCHEMA, "python": platform.python_version(), "error": why}, why


def main(argv: List[str]) -> int:
    """PROFILE OUTPUT TOP EDGES -> 0, or 1 (OUTPUT then says why; so does stderr)."""
    if len(argv) != 4:
        sys.stderr.write("usage: pstats_json PROFILE OUTPUT TOP EDGES_PER_FUNCTION\n")
        return 2
    try:
        top, per_function = int(argv[2]), int(argv[3])
    except ValueError:
        sys.stderr.write("TOP and EDGES_PER_FUNCTION must be integers\n")
        return 2
    document, error = convert(argv[0], top, per_function)
    tmp = argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(document, handle, separators=(",", ":"))
    os.replace(tmp, argv[1])
    if error:
        sys.stderr.write("cannot read the profile: %s\n" % error)
        return 1
    return 0
