"""Formatting shared by the report's renderers (HTML, Markdown, terminal): the mark for a
missing value, numbers for table cells, and the check's findings as text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.values import mapping as _mapping
from orchestrator.values import number as _number

MISSING = "\u2013"  # an en dash stands for a value the report does not have


# regressions[] keys the Regressions table shows in its own columns (or in a tooltip);
# any other key a later report adds gets a generic column after them.
REGRESSION_KEYS = frozenset(
    {
        "host", "group", "hw_model", "metric", "baseline", "value", "change_pct",
        "direction", "test", "p_value", "q_value", "n", "baseline_n", "baseline_run",
        "confirmed", "confirm", "fingerprint", "stability",
    }
)  # fmt: skip


def fmt_num(value: Any, digits: int = 1) -> str:
    """A number for a table cell: ints with thousands separators, a dash when absent."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    number = _number(value)
    if number is None:
        return MISSING if value is None else str(value)
    return f"{number:,.{digits}f}"


def fmt_count(value: Any) -> str:
    """A count (samples, hosts) as an integer, even when the report holds it as a float."""
    number = _number(value)
    return MISSING if number is None else f"{round(number):,}"


def fmt_signed(value: Any, digits: int = 2) -> str:
    """A signed number (robust z): always with its sign, a dash when absent."""
    number = _number(value)
    return MISSING if number is None else f"{number:+,.{digits}f}"


def fmt_sci(value: Any) -> str:
    """A p- or q-value: three significant digits, small ones in scientific notation."""
    number = _number(value)
    return MISSING if number is None else f"{number:.3g}"


def fmt_duration(value: Any) -> str:
    seconds = _number(value)
    if seconds is None:
        return MISSING
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _peers(value: Any) -> str:
    """A fingerprint's peer values as one string: a list joined, a mapping (value: how
    many peers have it) as "value (count)"."""
    if isinstance(value, Mapping):
        return ", ".join(
            f"{k} ({fmt_count(v)})" if _number(v) is not None else str(k) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def fingerprint_text(item: Mapping[str, Any]) -> str:
    """One fingerprint entry as "key: value (peers: ...)"."""
    peers = _peers(item.get("peers"))
    text = f"{text_or_none(item.get('key')) or '?'}: {text_or_none(item.get('value')) or MISSING}"
    return f"{text} (peers: {peers})" if peers else text


def confirmed_text(value: Any) -> str:
    """A regression's ``confirmed``: yes, no, or a dash when confirmation was off (null)."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return MISSING if value is None else str(value)


def stability_text(value: Any) -> str:
    """A regression's ``stability`` as "flagged/checks" (in how many recent checks)."""
    stability = _mapping(value)
    flagged, checks = _number(stability.get("flagged")), _number(stability.get("checks"))
    if flagged is None or checks is None:
        return MISSING
    return f"{round(flagged)}/{round(checks)}"
