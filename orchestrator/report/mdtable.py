"""Markdown text and tables for summary.md: every device string goes through
:func:`md_text`, so a host or function name cannot open a link, an image, a code span, raw
HTML or a heading, nor break a table row."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from orchestrator.report.formats import MISSING
from orchestrator.values import number as _number

MAX_ROWS = 100  # per table: a CI comment has a size limit; the HTML has everything

# Backslash-escapable ASCII punctuation that means something inline in (GitHub) Markdown;
# < > & become entities instead, so no raw HTML survives. Line-start syntax (lists, "1.")
# cannot occur: a device string never starts a line here (table cells, after "### ").
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|~])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def md_text(value: Any) -> str:
    """A device string as literal Markdown text, on one line (a table cell is one line)."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub(" ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", text)


def num(value: Any, digits: int = 1) -> str:
    number = _number(value)
    if number is None:
        return MISSING
    if digits == 0:
        return f"{round(number):,}"
    return f"{number:,.{digits}f}"


def signed(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:+.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """A GFM table; ``right``: the indices of right-aligned (numeric) columns. The header
    cells are ours, the row cells already escaped."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        lines.append("")
        lines.append(f"… and {len(rows) - MAX_ROWS} more (see report.html)")
    return lines
