"""fleetprof's command line as a user runs it: the installed script, the module form, a
terminal (pty) to run it on, an environment without colour switches, and ptrace's rule."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.support.paths import REPO

BIN = Path(sys.executable).parent
FLEETPROF = BIN / "fleetprof"
# The same command line run as a module, for runs with the venv's Python wherever it is.
FLEETPROF_ARGV = [sys.executable, "-m", "orchestrator.cli"]


ESC = b"\x1b"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that switches colour on or off by itself."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
    }
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", TERM="xterm-256color")
    env.update(extra)
    return env


def run_on_tty(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdout_on_tty: bool = True,
    cwd: Path = REPO,
    timeout: float = 60,
) -> tuple[int, bytes, bytes]:
    """Run with stderr (and stdout unless told) on a pseudo-terminal of 120 columns.
    Returns the exit code, what came through the stdout pipe, and what the terminal got."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_on_tty else subprocess.PIPE,
        stderr=slave,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    os.close(slave)
    tty, piped = bytearray(), bytearray()
    streams = [master] + ([proc.stdout.fileno()] if proc.stdout else [])
    deadline = time.monotonic() + timeout
    try:
        while streams and time.monotonic() < deadline:
            ready, _, _ = select.select(streams, [], [], 0.2)
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: every writer of the terminal is gone
                    chunk = b""
                if not chunk:
                    streams.remove(fd)
                else:
                    (tty if fd == master else piped).extend(chunk)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, bytes(piped), bytes(tty)


def ptrace_allowed() -> bool:
    try:
        scope = int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        scope = 0
    return (os.geteuid() == 0 and scope < 3) or scope == 0


needs_ptrace = pytest.mark.skipif(
    not ptrace_allowed(), reason="py-spy needs root or kernel.yama.ptrace_scope=0 to attach"
)
