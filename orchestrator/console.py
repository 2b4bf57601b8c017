"""The terminal edge: the consoles every command prints with, and the live progress of a
campaign (phase, hosts done / failed)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


def no_color(environ: Mapping[str, str] | None = None) -> bool:
    """https://no-color.org: ``NO_COLOR`` set to anything but the empty string."""
    return bool((os.environ if environ is None else environ).get("NO_COLOR"))


def make_console(*, stderr: bool = False, environ: Mapping[str, str] | None = None) -> Console:
    """The one way a command gets a console (stdout, or stderr for messages).

    With ``NO_COLOR`` no escape sequence at all is written, even on a terminal: rich's own
    ``no_color`` drops colours but keeps bold and underline, and a live progress display
    moves the cursor, so the console is told it writes to a plain file instead (it still
    takes its width from the terminal)."""
    if no_color(environ):
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
        )
        self.tasks: dict[str, TaskID] = {}
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
