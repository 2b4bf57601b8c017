"""iotop: planned only where it can run, and its batch output read into byte rates.

The expected figures below are worked out by hand from the fixture files (real iotop 0.6
output, see tests/fixtures/SOURCES.md): iotop prints K/s with -k, K = 1024 bytes.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fleetprof_device import facts as facts_module
from orchestrator import profilers
from orchestrator.campaign.model import Campaign
from orchestrator.profilers import iotop
from orchestrator.stages.ansible import Capture, HostOutcome
from orchestrator.stages.flow import facts_from
from orchestrator.stages.plan import make_plan
from tests.support.profilers.iotop import (
    BUSY,
    NO_DELAYACCT,
    WITH_DELAYACCT,
    K,
    campaign,
    facts,
    parse,
)
from tests.support.runner import FACTS_MODULE

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
