"""The documentation's examples, read from its Markdown: fenced blocks, their markers, and
the commands of ``console`` blocks.

The convention (docs/guide.md, "About the examples"):

- In a fenced block whose info string is ``console``, a line starting with ``$ `` is a
  command; a line ending in ``\\`` continues on the next line. Every other line is shown
  output and is not run.
- An HTML comment on the last non-blank line before a block says how to run it:
  ``<!-- exit: 3 -->`` (every command of the block is expected to exit 3; 0 otherwise) or
  ``<!-- not-run: REASON -->`` (the block's commands are not run; only for the project's
  two commands, ``make demo`` and ``make test``, which CI runs itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_MARKER_RE = re.compile(r"^\s*<!--\s*(?P<key>[a-z-]+)\s*:\s*(?P<value>.*?)\s*-->\s*$")
MARKER_KEYS = ("exit", "not-run")


class MarkdownError(ValueError):
    """A block the convention cannot read (an unclosed fence, a marker it does not know)."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str  # the info string's first word, lower case ("" without one)
    text: str  # the block's content, without the fences
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


@dataclass(frozen=True)
class Command:
    """One command of a console block, as the documentation shows it."""

    block: Block
    line: int  # 1-based line of its `$ ` line in the file
    text: str  # without the `$ ` prompt; continuation lines kept (with their `\`)
    exit_code: int
    not_run: str | None  # the reason, when the block is marked not-run

    @property
    def where(self) -> str:
        return f"{self.block.path.name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in file order, with its markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE_RE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines):
            line = lines[index]
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(line[indent:] if line[:indent].strip() == "" else line)
            index += 1
        else:
            raise MarkdownError(f"{path.name}:{start + 1}: the fenced block is never closed")
        index += 1
        info = match["info"].strip().split()
        found.append(
            Block(
                path=path,
                line=start + 1,
                language=info[0].lower() if info else "",
                text="\n".join(body) + ("\n" if body else ""),
                markers=_markers(lines, start, path),
            )
        )
    return found


def _markers(lines: list[str], fence_index: int, path: Path) -> dict[str, str]:
    """The markers on the comment lines right above a fence (blank lines between allowed)."""
    markers: dict[str, str] = {}
    index = fence_index - 1
    while index >= 0 and not lines[index].strip():
        index -= 1
    while index >= 0 and lines[index].strip().startswith("<!--"):
        match = _MARKER_RE.match(lines[index])
        if match is not None:
            if match["key"] not in MARKER_KEYS:
                raise MarkdownError(
                    f"{path.name}:{index + 1}: unknown marker {match['key']!r} "
                    f"(known: {', '.join(MARKER_KEYS)})"
                )
            markers[match["key"]] = match["value"]
        index -= 1
    return markers


def commands(block: Block) -> list[Command]:
    """The `$ ` commands of a console block (continuation lines joined), in order."""
    if block.language != "console":
        return []
    exit_text = block.markers.get("exit", "0")
    if not re.fullmatch(r"\d{1,3}", exit_text):
        raise MarkdownError(f"{block.where}: exit marker {exit_text!r} is not an exit status")
    not_run = block.markers.get("not-run")
    if not_run is not None and not not_run:
        raise MarkdownError(f"{block.where}: a not-run marker needs its reason")
    found: list[Command] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            index += 1
            continue
        first = block.line + 1 + index
        parts = [line[2:]]
        while parts[-1].endswith("\\") and index + 1 < len(lines):
            index += 1
            parts.append(lines[index])
        if parts[-1].endswith("\\"):
            raise MarkdownError(f"{block.path.name}:{first}: the command's last line ends in \\")
        found.append(
            Command(
                block=block,
                line=first,
                text="\n".join(parts),
                exit_code=int(exit_text),
                not_run=not_run,
            )
        )
        index += 1
    return found


def doc_files(repo: Path) -> list[Path]:
    """README.md and docs/*.md in the order their examples run: the user guide first (it
    makes the runs the references reuse), then README.md, then the rest by name."""
    docs = sorted((repo / "docs").glob("*.md"))
    guide = [p for p in docs if p.name == "guide.md"]
    rest = [p for p in docs if p.name != "guide.md"]
    readme = [repo / "README.md"] if (repo / "README.md").is_file() else []
    return [*guide, *readme, *rest]
