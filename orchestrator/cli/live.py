"""The terminal edge: the consoles every command prints with, and the live progress of a
campaign (phase, hosts done / failed).

Where the output is not a terminal (a CI log, ``| tee``, a file) it is plain: no escape
sequences, no box drawing, no wrapping or cutting at 80 columns; a table is aligned text
columns with every cell whole, so a log keeps the whole reason of a failed host.
``FLEETPROF_OUTPUT`` overrides the choice (docs/commands.md)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import IO, Any, NoReturn

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

OUTPUT_ENV = "FLEETPROF_OUTPUT"
PLAIN, RICH, AUTO = "plain", "rich", "auto"
COLUMN_GAP = "  "


def no_color(environ: Mapping[str, str] | None = None) -> bool:
    """https://no-color.org: ``NO_COLOR`` set to anything but the empty string."""
    return bool((os.environ if environ is None else environ).get("NO_COLOR"))


def output_mode(environ: Mapping[str, str] | None = None) -> str:
    """``FLEETPROF_OUTPUT``: ``plain`` or ``rich`` as asked; anything else (unset,
    ``auto``) lets the stream decide: rich on a terminal, plain elsewhere."""
    value = (os.environ if environ is None else environ).get(OUTPUT_ENV, "").strip().lower()
    return value if value in (PLAIN, RICH) else AUTO


def _cell_text(cell: RenderableType | None) -> str:
    """A cell (or title) as one line of plain text: markup rendered, styles dropped."""
    if cell is None:
        return ""
    text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
    return " ".join(text.splitlines())


def _aligned(value: str, width: int, justify: str) -> str:
    pad = width - cell_len(value)
    if justify == "right":
        return " " * pad + value
    if justify == "center":
        return " " * (pad // 2) + value + " " * (pad - pad // 2)
    return value + " " * pad


def plain_table(table: Table) -> Text:
    """A rich table as plain lines: its title, a header row, one line per row, columns
    aligned and separated by two spaces, every cell whole (no width limit, no ellipsis),
    no box drawing and no trailing spaces."""
    columns = table.columns
    rows = [[_cell_text(cell) for cell in column.cells] for column in columns]
    height = max((len(cells) for cells in rows), default=0)
    headers = [_cell_text(column.header) for column in columns]
    widths = [
        max([cell_len(h) if table.show_header else 0, *(cell_len(c) for c in cells)])
        for h, cells in zip(headers, rows, strict=True)
    ]
    lines = [_cell_text(table.title)] if table.title else []

    def line(cells: list[str]) -> str:
        parts = [
            _aligned(value, width, str(column.justify))
            for value, width, column in zip(cells, widths, columns, strict=True)
        ]
        return COLUMN_GAP.join(parts).rstrip()

    if table.show_header and columns:
        lines.append(line(headers))
    for i in range(height):
        lines.append(line([cells[i] if i < len(cells) else "" for cells in rows]))
    if table.caption:
        lines.append(_cell_text(table.caption))
    return Text("\n".join(lines))


class PlainConsole(Console):
    """Plain output (see the module docstring): no escape sequences, lines never wrapped
    or cut, tables printed by :func:`plain_table`."""

    def __init__(self, *, stderr: bool = False, file: IO[str] | None = None) -> None:
        super().__init__(
            stderr=stderr,
            file=file,
            no_color=True,
            color_system=None,
            force_terminal=False,
            force_interactive=False,
            soft_wrap=True,
            emoji=False,
        )

    def print(self, *objects: Any, **kwargs: Any) -> None:
        plain = tuple(plain_table(o) if isinstance(o, Table) else o for o in objects)
        super().print(*plain, **kwargs)


def is_plain(console: Console) -> bool:
    return isinstance(console, PlainConsole)


def make_console(*, stderr: bool = False, environ: Mapping[str, str] | None = None) -> Console:
    """The one way a command gets a console (stdout, or stderr for messages).

    Plain (:class:`PlainConsole`) where the stream is not a terminal (as rich sees it:
    ``FORCE_COLOR`` makes anything one), or where ``FLEETPROF_OUTPUT=plain``. Otherwise
    rich: tables with borders and live progress on a terminal; with
    ``FLEETPROF_OUTPUT=rich`` into a file or pipe, the same tables without escape
    sequences, ``COLUMNS`` wide (80 when unset), as rich lays them out.

    With ``NO_COLOR`` no escape sequence at all is written, even on a terminal: rich's own
    ``no_color`` drops colours but keeps bold and underline, and a live progress display
    moves the cursor, so the console is told it writes to a plain file instead (it still
    takes its width from the terminal)."""
    env = os.environ if environ is None else environ
    mode = output_mode(env)
    if mode == PLAIN or (mode == AUTO and not Console(stderr=stderr).is_terminal):
        return PlainConsole(stderr=stderr)
    if no_color(env):
        return Console(
            stderr=stderr,
            no_color=True,
            color_system=None,
            force_terminal=False,
            force_interactive=False,
        )
    return Console(stderr=stderr)


BAD_INPUT = 2  # the exit code of bad input (DESIGN.md): nothing was run


def fail(message: str) -> NoReturn:
    """A command's bad-input exit: ``error: message`` on stderr, exit 2, no traceback."""
    make_console(stderr=True).print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    sys.exit(BAD_INPUT)


class ConsoleUi:
    """Implements flow.Ui; one progress line per stage, a countdown for the window."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            # Plain output draws no bars, not even the final one: a line per stage instead.
            disable=is_plain(console),
        )
        self.tasks: dict[str, TaskID] = {}
        self.totals: dict[str, int] = {}
        self.counts: dict[str, Counter[str]] = {}
        self.lock = threading.Lock()
        self.stop_ticker = threading.Event()

    def __enter__(self) -> ConsoleUi:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_ticker.set()
        self.progress.stop()

    def stage(self, name: str, hosts: int) -> None:
        if not self.console.is_interactive:
            # No live display (a file, a pipe, NO_COLOR): one line per stage as it starts,
            # so a log shows how far a long campaign got; the table comes at the end.
            self.console.print(f"{name}: {hosts} host(s)", highlight=False)
        with self.lock:
            self.tasks[name] = self.progress.add_task(f"{name:<10}", total=hosts, detail="")
            self.totals[name] = hosts
            self.counts[name] = Counter()

    def host(self, stage: str, host: str, event: str) -> None:
        with self.lock:
            task = self.tasks.get(stage)
            if task is None:
                return
            self.counts[stage][event] += 1
            bad = {k: v for k, v in self.counts[stage].items() if k != "ok"}
            detail = ", ".join(f"{v} {k}" for k, v in sorted(bad.items()))
            self.progress.update(task, advance=1, detail=f"[red]{detail}[/]" if detail else "")
            if event != "ok":
                self.progress.console.print(f"  [red]{escape(host)}[/]: {event} in {stage}")
            done = sum(self.counts[stage].values())
            if is_plain(self.console) and done == self.totals[stage]:
                summary = f"{stage}: {done}/{done} done" + (f", {detail}" if detail else "")
                self.console.print(summary, highlight=False, markup=False)

    def window(self, t0: float, deadline: float) -> None:
        total = max(deadline - time.time(), 1.0)
        if not self.console.is_interactive:
            self.console.print(
                f"window: starts in {max(t0 - time.time(), 0):.0f}s, closes in {total:.0f}s",
                highlight=False,
            )
        task = self.progress.add_task("window    ", total=round(total, 1), detail="starting")
        stop = self.stop_ticker

        def tick() -> None:
            while not stop.wait(0.5):
                now = time.time()
                if now >= deadline:
                    self.progress.update(task, completed=total, detail="window closed")
                    return
                detail = f"starts in {t0 - now:.0f}s" if now < t0 else "profiling"
                self.progress.update(task, completed=total - (deadline - now), detail=detail)

        threading.Thread(target=tick, daemon=True).start()

    def note(self, text: str) -> None:
        self.progress.console.print(text)
