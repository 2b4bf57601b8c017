"""Reading untrusted JSON-shaped values (report.json, check.json, device files) safely.

A renderer or reader takes what it finds: a wrong type reads as empty or missing, never as
an exception, and numbers are finite floats or ``None`` (a bool is not a number; an integer
too large for a float is missing, not an OverflowError).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fleetprof_device.contract import WORKLOAD_NAME_MAX_CHARS

# Deeper than any file fleetprof or a workload writes (a manifest nests 4 levels); a
# device's 100,000 nested arrays once stopped the report for every host (RecursionError).
MAX_JSON_DEPTH = 64


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def dicts(value: Any) -> list[Mapping[str, Any]]:
    """The mappings in a list (or tuple); anything else reads as no items."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def number(value: Any) -> float | None:
    """A finite float from an int or float; ``None`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def moment(value: Any) -> datetime | None:
    """An ISO 8601 time (a report's ``started_at``) as an aware datetime, a time without a
    zone taken as UTC; anything else is missing."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def load_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON a device or a workload wrote. Raises ``ValueError`` (never
    ``RecursionError``) for malformed text or nesting deeper than ``max_depth``, so a
    caller's ``except ValueError`` covers every way the file can be bad."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    if _nests_deeper(data, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return data


def _nests_deeper(data: Any, max_depth: int) -> bool:
    """Whether ``data`` has containers nested more than ``max_depth`` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


# C0 controls (but tab and newline), DEL and C1 controls -> a visible stand-in: the
# Control Pictures block for C0 and DEL (ESC shows as "␛"), U+FFFD for C1. A device's
# reason with ESC or BEL in it must not drive the terminal of whoever `cat`s a report.
_VISIBLE = {code: 0x2400 + code for code in range(0x20) if code not in (0x09, 0x0A)}
_VISIBLE[0x7F] = 0x2421
_VISIBLE.update({code: 0xFFFD for code in range(0x80, 0xA0)})


def visible(text: str) -> str:
    """``text`` with every control character but tab and newline made visible."""
    return text.translate(_VISIBLE)


def has_control(text: str) -> bool:
    """Whether ``text`` holds a character :func:`visible` would replace."""
    return text != visible(text)


# The workload's own metric names (fleetprof_device/contract.py, "The workload's own
# numbers"): one grammar for what a program writes and what a campaign names.
WORKLOAD_STATS = ("p50", "p95", "last", "count")
_WORKLOAD_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")


def workload_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a workload metric, or None when it can: letters, digits and
    ``_.:-``, not starting with a digit, at most the contract's length, not ending in a dot
    or in one of the statistics' suffixes (``workload.<name>.p95`` must stay unambiguous)."""
    if not isinstance(name, str) or not _WORKLOAD_NAME_RE.fullmatch(name):
        return "letters, digits and _.:- only, not starting with a digit or one of .:-"
    if len(name) > WORKLOAD_NAME_MAX_CHARS:
        return f"at most {WORKLOAD_NAME_MAX_CHARS} characters"
    if name.endswith(".") or (name.rpartition(".")[2] in WORKLOAD_STATS and "." in name):
        return f"not ending in a dot or in .{', .'.join(WORKLOAD_STATS)}"
    return None
