"""Reading untrusted JSON-shaped values (report.json, check.json, device files) safely.

A renderer or reader takes what it finds: a wrong type reads as empty or missing, never as
an exception, and numbers are finite floats or ``None`` (a bool is not a number; an integer
too large for a float is missing, not an OverflowError).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


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
