"""Real iotop on this machine measures a writer whose rate the test knows (root and a
disk-backed tmp only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.profilers import iotop
from tests.support.profilers.iotop import (
    campaign,
    facts,
    parse,
)

WRITER = """
import os, sys, time
path, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
block = b"x" * (256 * 1024)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
written, start = 0, time.monotonic()
print("ready", flush=True)
while time.monotonic() - start < seconds:
    os.pwrite(fd, block, written % (64 * 1024 * 1024))
    os.fsync(fd)
    written += len(block)
    # paced: a steady rate, so any window of it is the whole run's rate
    time.sleep(max(0.0, start + written / rate - time.monotonic()))
elapsed = time.monotonic() - start
os.close(fd)
os.unlink(path)
print(written / elapsed, flush=True)
"""


def _fs_type(path: Path) -> str:
    best, kind = "", ""
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    return kind


def test_real_iotop_measures_a_writers_rate(tmp_path: Path) -> None:
    binary = shutil.which("iotop") or next(
        (p for p in ("/usr/sbin/iotop", "/usr/bin/iotop", "/sbin/iotop") if os.access(p, os.X_OK)),
        None,
    )
    if binary is None:
        pytest.skip("iotop is not installed")
    if os.geteuid() != 0:
        pytest.skip("iotop needs root (taskstats)")
    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is on {_fs_type(tmp_path)}: its writes reach no disk")
    rate = 8 * 1024 * 1024.0
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    command = [sys.executable, str(script), str(tmp_path / "data"), "4.5", str(rate)]
    writer = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        argv = iotop.plan(campaign("2s", "1s"), facts(tools={"iotop": binary}), None).argv
        assert argv == [binary, "-b", "-o", "-t", "-k", "-P", "-d", "1", "-n", "3"]
        ran = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=30)
        if ran.returncode != 0:
            pytest.skip(f"iotop cannot run here: {ran.stderr.strip()[-300:]}")
        out, _ = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    actual = float(out.split()[-1])
    result = parse(tmp_path, ran.stdout, pid=writer.pid, cmdline=command, exit_code=0)
    m = result.metrics
    print(f"wrote {actual:.0f} B/s; iotop: {m}")
    assert m["iotop.samples"] == 2
    assert m["iotop.target.write_bytes_per_s.mean"] == pytest.approx(actual, rel=0.3)
    assert m["iotop.total.write_bytes_per_s.mean"] >= 0.7 * actual
