"""iotop: planned only where it can run, and its batch output read into byte rates.

The expected figures below are worked out by hand from the fixture files (real iotop 0.6
output, see tests/fixtures/SOURCES.md): iotop prints K/s with -k, K = 1024 bytes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fleetprof_device import facts as facts_module
from orchestrator import profilers
from orchestrator.ansible import Capture, HostOutcome
from orchestrator.campaign import Campaign
from orchestrator.flow import facts_from
from orchestrator.models import HostFacts
from orchestrator.plan import make_plan
from orchestrator.profilers import iotop
from tests.unit.factories import host_facts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "iotop"
WITH_DELAYACCT = FIXTURES / "iotop-b-o-t-k-P.txt"
NO_DELAYACCT = FIXTURES / "iotop-b-o-t-k-P.no-delayacct.txt"
BUSY = FIXTURES / "iotop-b-o-t-k-P.busy-n3.txt"
FACTS_MODULE = (
    Path(__file__).resolve().parents[2] / "roles/fleetprof_preflight/library/fleetprof_facts.py"
)
K = 1024.0


def campaign(duration: str = "30s", interval: str = "1s") -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": duration,
        "target": {"attach": {"process": "iow"}},
        "profilers": {"iotop": {"interval": interval}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


def facts(**overrides: Any) -> HostFacts:
    defaults = {"home": "/root", "is_root": True, "tools": {"iotop": "/usr/sbin/iotop"}}
    return host_facts(**{**defaults, "delayacct": False, **overrides})


def session(
    tmp_path: Path,
    text: str | bytes,
    pid: int | None = None,
    cmdline: list[str] | None = None,
    **entry: Any,
) -> tuple[Path, dict[str, Any]]:
    """A session directory as collect leaves it: iotop's output and the manifest."""
    out = tmp_path / "iotop.stdout"
    out.write_bytes(text.encode() if isinstance(text, str) else text)
    target: dict[str, Any] = {"mode": "attach", "pid": pid, "cmdline": cmdline}
    profiler_entry = {
        "status": "ok",
        "exit_code": 0,
        "outputs": {"iotop.stdout": {"bytes": out.stat().st_size, "truncated": False}},
        **entry,
    }
    manifest = {"target": target, "profilers": {"iotop": profiler_entry}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path, profiler_entry


def parse(tmp_path: Path, text: str | bytes, **kwargs: Any) -> iotop.ProfileResult:
    session_dir, entry = session(tmp_path, text, **kwargs)
    return iotop.parse(session_dir, entry, campaign())


# -- plan ----------------------------------------------------------------------------------


def test_iotop_is_registered() -> None:
    assert profilers.get("iotop") is iotop


def test_plan_runs_iotop_in_batch_mode_ending_by_itself_after_the_window() -> None:
    plan = make_plan(campaign("30s", "1s"), facts(), "run1", {}, t0=1000.0)
    [planned] = plan.profilers
    assert planned.status == "planned" and planned.reason is None
    # 30 one-second samples plus iotop's first, which measures nothing.
    assert planned.argv == ["/usr/sbin/iotop", "-b", "-o", "-t", "-k", "-P", "-d", "1", "-n", "31"]
    assert planned.outputs == ["iotop.stdout"]
    assert plan.tools == {}  # nothing pushed: iotop comes from the device's packages


@pytest.mark.parametrize(
    ("duration", "interval", "d", "n"),
    [("2.5s", "1s", "1", "4"), ("10s", "500ms", "0.5", "21"), ("1s", "2s", "2", "2")],
)
def test_plan_asks_for_one_sample_per_interval_plus_the_first(
    duration: str, interval: str, d: str, n: str
) -> None:
    planned = iotop.plan(campaign(duration, interval), facts(), None)
    assert planned.argv[-4:] == ["-d", d, "-n", n]


def test_plan_skips_iotop_where_it_is_not_installed_and_says_how_to_get_it() -> None:
    planned = iotop.plan(campaign(), facts(tools={}), None)
    assert planned.status == "skipped" and planned.argv == []
    assert planned.reason is not None
    assert planned.reason.startswith("iotop is not installed: install the iotop package")
    assert "fleetprof_tools_install_packages: true" in planned.reason
    # provision reads this to install the package where the operator allows become
    assert planned.options == {"install_package": "iotop"}


def test_plan_skips_iotop_for_a_non_root_user() -> None:
    planned = iotop.plan(campaign(), facts(is_root=False), None)
    assert planned.status == "skipped"
    assert planned.reason is not None and "root" in planned.reason
    assert "taskstats" in planned.reason
    assert planned.options == {}


def test_plan_runs_iotop_without_delay_accounting() -> None:
    for delayacct in (False, None, True):
        assert iotop.plan(campaign(), facts(delayacct=delayacct), None).status == "planned"


# -- parse: the real fixtures ----------------------------------------------------------------


def test_parse_with_delay_accounting(tmp_path: Path) -> None:
    result = parse(
        tmp_path, WITH_DELAYACCT.read_text(), pid=14269, cmdline=["python3", "/tmp/iow.py"]
    )
    m = result.metrics
    # 4 samples (01:31:39-42); the first is iotop's start-up moment and is left out.
    assert m["iotop.samples"] == 3
    assert m["iotop.total.read_bytes_per_s.mean"] == pytest.approx(
        (11.94 + 7.96 + 3.98) / 3 * K, abs=0.1
    )
    assert m["iotop.total.write_bytes_per_s.mean"] == pytest.approx(
        (117171.97 + 112085.72 + 108996.01) / 3 * K, abs=0.1
    )
    assert m["iotop.target.read_bytes_per_s.mean"] == pytest.approx(
        (3.98 + 7.96 + 3.98) / 3 * K, abs=0.1
    )
    assert m["iotop.target.read_bytes_per_s.max"] == pytest.approx(7.96 * K, abs=0.1)
    assert m["iotop.target.write_bytes_per_s.mean"] == pytest.approx(
        (117167.99 + 112085.72 + 108996.01) / 3 * K, abs=0.1
    )
    assert m["iotop.target.write_bytes_per_s.max"] == pytest.approx(117167.99 * K, abs=0.1)
    assert all(isinstance(v, float) for v in m.values())
    assert result.data_quality == []


def test_parse_without_delay_accounting_says_so_and_how_to_enable_it(tmp_path: Path) -> None:
    result = parse(
        tmp_path, NO_DELAYACCT.read_text(), pid=14402, cmdline=["python3", "/tmp/iow.py"]
    )
    m = result.metrics
    # 3 samples (01:32:03-05), the first left out; the iotop row (pid 14445) is not ours.
    assert m["iotop.samples"] == 2
    assert m["iotop.total.read_bytes_per_s.mean"] == 0.0
    assert m["iotop.total.write_bytes_per_s.mean"] == pytest.approx(
        (148812.05 + 126266.91) / 2 * K, abs=0.1
    )
    assert m["iotop.target.write_bytes_per_s.mean"] == pytest.approx(
        (148808.07 + 126266.91) / 2 * K, abs=0.1
    )
    assert m["iotop.target.write_bytes_per_s.max"] == pytest.approx(148808.07 * K, abs=0.1)
    assert m["iotop.target.read_bytes_per_s.max"] == 0.0
    [note] = result.data_quality
    assert "delay accounting" in note and "sysctl kernel.task_delayacct=1" in note


def test_parse_picks_the_target_out_of_a_busy_machine(tmp_path: Path) -> None:
    result = parse(tmp_path, BUSY.read_text(), pid=2070, cmdline=["python3", "/tmp/iow.py"])
    m = result.metrics
    # 12:06:44 is iotop's start-up sample; 12:06:45 and 12:06:46 count.
    assert m["iotop.samples"] == 2
    assert m["iotop.target.write_bytes_per_s.mean"] == pytest.approx(
        (19344.78 + 19332.97) / 2 * K, abs=0.1
    )
    assert m["iotop.target.write_bytes_per_s.max"] == pytest.approx(19344.78 * K, abs=0.1)
    assert m["iotop.target.read_bytes_per_s.max"] == 0.0
    assert m["iotop.total.read_bytes_per_s.mean"] == pytest.approx(
        (954.51 + 953.93) / 2 * K, abs=0.1
    )
    assert m["iotop.total.write_bytes_per_s.mean"] == pytest.approx(
        (21325.40 + 21586.62) / 2 * K, abs=0.1
    )
    output = iotop.parse_text(BUSY.read_text())
    assert output.malformed_lines == 0
    assert [len(s.rows) for s in output.samples] == [0, 4, 7]
    assert output.samples[2].rows[2].command.endswith("/work/main/playbooks/session.yml")


def test_rows_keep_command_lines_with_spaces(tmp_path: Path) -> None:
    output = iotop.parse_text(NO_DELAYACCT.read_text())
    assert [s.time for s in output.samples] == ["01:32:03", "01:32:04", "01:32:05"]
    commands = [row.command for row in output.samples[1].rows]
    assert commands == ["python3 /tmp/iow.py", "python3 /usr/sbin/iotop -b -o -t -k -P -d 1 -n 3"]
    assert output.unavailable_rows == 3 and output.malformed_lines == 0


# -- parse: what real devices send back --------------------------------------------------------


def test_a_cut_last_line_drops_the_unfinished_sample(tmp_path: Path) -> None:
    text = WITH_DELAYACCT.read_text()
    cut = text[: text.rindex("108996.01") + 4]  # in the middle of the last row's write rate
    result = parse(tmp_path, cut, pid=14269)
    m = result.metrics
    assert m["iotop.samples"] == 2  # 01:31:40 and 01:31:41
    assert m["iotop.target.write_bytes_per_s.mean"] == pytest.approx(
        (117167.99 + 112085.72) / 2 * K, abs=0.1
    )
    assert any("last sample" in note for note in result.data_quality)
    assert not any("malformed" in note for note in result.data_quality)


def test_an_interrupted_iotop_loses_its_last_sample(tmp_path: Path) -> None:
    result = parse(tmp_path, WITH_DELAYACCT.read_text(), pid=14269, exit_code=-2)
    assert result.metrics["iotop.samples"] == 2
    assert any("last sample" in note for note in result.data_quality)


def test_garbage_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    lines = WITH_DELAYACCT.read_text().splitlines()
    lines.insert(5, "Traceback (most recent call last):")
    lines.insert(9, "01:31:40 14269 be/4 root  lots K/s 12 K/s  0.00 % 1.00 % x")
    lines.insert(0, "01:31:38 999 be/4 root 1.00 K/s 1.00 K/s ?unavailable?  before a header")
    blob = ("\n".join(lines) + "\n").encode() + b"\xff\xfe\x00garbage\n"
    result = parse(tmp_path, blob, pid=14269)
    assert result.metrics["iotop.samples"] == 3
    assert result.metrics["iotop.target.write_bytes_per_s.max"] == pytest.approx(
        117167.99 * K, abs=0.1
    )
    assert "4 malformed lines in iotop output" in result.data_quality


def test_random_bytes_never_crash_the_parser(tmp_path: Path) -> None:
    rng = random.Random(7)
    real = WITH_DELAYACCT.read_bytes()
    for _ in range(200):
        cut = bytearray(real[: rng.randrange(len(real))])
        for _ in range(rng.randrange(5)):
            if cut:
                cut[rng.randrange(len(cut))] = rng.randrange(256)
        result = parse(tmp_path, bytes(cut), pid=14269)
        assert all(isinstance(v, float) for v in result.metrics.values())


def test_units_other_than_kilobytes_are_converted(tmp_path: Path) -> None:
    text = (
        "Total DISK READ:       1.50 M/s | Total DISK WRITE:       2.00 G/s\n"
        "Current DISK READ:     1.50 M/s | Current DISK WRITE:     2.00 G/s\n"
        "  PID  PRIO  USER     DISK READ  DISK WRITE  SWAPIN      IO    COMMAND\n"
        "Total DISK READ:     512.00 B/s | Total DISK WRITE:       3.00 M/s\n"
        "Actual DISK READ:      0.00 B/s | Actual DISK WRITE:      0.00 B/s\n"
        "  PID  PRIO  USER     DISK READ  DISK WRITE  SWAPIN      IO    COMMAND\n"
        "   42 be/4 app       512.00 B/s    3.00 M/s  0.00 %  1.00 % my app --name x\n"
    )
    result = parse(tmp_path, text, pid=42)
    assert result.metrics["iotop.total.read_bytes_per_s.mean"] == 512.0
    assert result.metrics["iotop.target.write_bytes_per_s.mean"] == 3 * K * K
    assert result.metrics["iotop.samples"] == 1
    assert result.data_quality == []


def test_a_target_that_did_no_io_reads_zero(tmp_path: Path) -> None:
    result = parse(tmp_path, WITH_DELAYACCT.read_text(), pid=4242, cmdline=["python3", "x.py"])
    m = result.metrics
    assert m["iotop.samples"] == 3
    assert m["iotop.target.write_bytes_per_s.mean"] == 0.0
    assert m["iotop.target.read_bytes_per_s.max"] == 0.0
    assert m["iotop.total.write_bytes_per_s.mean"] > 0


def test_an_unknown_target_gives_only_system_totals(tmp_path: Path) -> None:
    result = parse(tmp_path, WITH_DELAYACCT.read_text(), pid=None)
    assert "iotop.total.write_bytes_per_s.mean" in result.metrics
    assert not any(k.startswith("iotop.target.") for k in result.metrics)
    assert any("pid is unknown" in note for note in result.data_quality)


def test_workers_with_the_targets_command_line_count_as_the_target(tmp_path: Path) -> None:
    # The target (pid 14402, "/usr/bin/python3 /tmp/iow.py" as argv) and a forked worker
    # with its command line; iotop prints argv[0] without its directory.
    text = NO_DELAYACCT.read_text().replace(
        "14445 be/4 root        0.00 K/s    3.98", "14500 be/4 root        0.00 K/s 1000.00"
    )
    text = text.replace("python3 /usr/sbin/iotop -b -o -t -k -P -d 1 -n 3", "python3 /tmp/iow.py")
    result = parse(tmp_path, text, pid=14402, cmdline=["/usr/bin/python3", "/tmp/iow.py"])
    assert result.metrics["iotop.target.write_bytes_per_s.max"] == pytest.approx(
        (148808.07 + 1000.0) * K, abs=0.1
    )


def test_no_output_file_gives_no_metrics(tmp_path: Path) -> None:
    result = iotop.parse(tmp_path, {"status": "failed"}, campaign())
    assert result.metrics == {} and result.data_quality == []


# -- preflight -------------------------------------------------------------------------------


def load_facts_module() -> ModuleType:
    return facts_module


def test_preflight_reads_delay_accounting(tmp_path: Path) -> None:
    module = load_facts_module()
    sysctl = tmp_path / "task_delayacct"
    assert module.delay_accounting(str(tmp_path / "missing")) is None
    sysctl.write_text("1\n")
    assert module.delay_accounting(str(sysctl)) is True
    sysctl.write_text("0\n")
    assert module.delay_accounting(str(sysctl)) is False


def test_preflight_finds_iotop_on_path_or_in_sbin(tmp_path: Path) -> None:
    module = load_facts_module()
    bin_dir, sbin = tmp_path / "bin", tmp_path / "sbin"
    bin_dir.mkdir()
    sbin.mkdir()
    assert module.find_iotop(str(bin_dir), (str(sbin),)) is None
    tool = sbin / "iotop"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o644)
    assert module.find_iotop(str(bin_dir), (str(sbin),)) is None  # not executable
    tool.chmod(0o755)
    assert module.find_iotop(str(bin_dir), (str(sbin),)) == str(tool)


def test_preflight_facts_carry_iotop_and_delay_accounting_to_the_plan(tmp_path: Path) -> None:
    args = tmp_path / "args"
    args.write_text(json.dumps({"tools": {}}))
    out = subprocess.run(
        [sys.executable, str(FACTS_MODULE), str(args)], capture_output=True, text=True, check=True
    )
    res = json.loads(out.stdout)
    raw = res["facts"]
    sysctl = Path("/proc/sys/kernel/task_delayacct")
    expected = bool(int(sysctl.read_text())) if sysctl.exists() else None
    assert raw["delayacct"] is expected

    outcome = HostOutcome(captures={"fleetprof_facts": Capture(res, started=None, finished=0.0)})
    host_facts = facts_from("edge-1", outcome)
    assert host_facts is not None and host_facts.delayacct is expected
    assert host_facts.tools.get("iotop") == raw["found_tools"].get("iotop")


# -- a real run ------------------------------------------------------------------------------

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


def test_samples_after_the_target_ended_do_not_dilute_its_rates(tmp_path: Path) -> None:
    """iotop may print a sample after the runner stopped the target at the deadline."""
    header = "    TIME    PID  PRIO  USER     DISK READ  DISK WRITE  SWAPIN      IO    COMMAND\n"

    def sample(clock: str, write_k: float, with_row: bool) -> str:
        text = (
            f"{clock} Total DISK READ:         0.00 K/s | Total DISK WRITE:   {write_k:8.2f} K/s\n"
            f"{clock} Current DISK READ:       0.00 K/s | Current DISK WRITE:       0.00 K/s\n"
            + header
        )
        if with_row:
            text += (
                f"{clock}      96 be/4 root        0.00 K/s {write_k:8.2f} K/s  0.00 %  1.00 %"
                " python3 app.py\n"
            )
        return text

    (tmp_path / iotop.OUTPUT).write_text(
        sample("12:00:00", 0.0, False)
        + sample("12:00:01", 1000.0, True)
        + sample("12:00:02", 1000.0, True)
        + sample("12:00:03", 0.0, False)
    )
    target = {"pid": 96, "cmdline": ["python3", "app.py"], "exited_at_device": 1.0}
    (tmp_path / "manifest.json").write_text(json.dumps({"target": target}))
    campaign = Campaign.from_mapping(
        {
            "name": "x",
            "duration": "3s",
            "target": {"attach": {"pid": 96}},
            "profilers": {"iotop": {}},
        }
    )
    result = iotop.parse(tmp_path, {"exit_code": 0}, campaign)
    assert result.metrics["iotop.target.write_bytes_per_s.mean"] == 1000.0 * 1024
