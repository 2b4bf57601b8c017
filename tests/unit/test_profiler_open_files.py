"""The open-files profiler: its plan, the metrics and tables from the sampler's JSON lines,
the leak verdict (memory's rule), and device output that cannot be trusted."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device import arguments
from fleetprof_device.errors import InvocationError
from orchestrator.campaign.messages import CampaignError
from orchestrator.profilers import REGISTRY, open_files
from orchestrator.profilers.base import ProfileResult
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from orchestrator.stages.plan import make_plan
from tests.support.factories import campaign, host_facts
from tests.support.reports import PWN_MD, PWN_SCRIPT, fleet_report

CONFIG = "/etc/app/config.yml"


def chosen(**spec: Any):
    return campaign(
        target={"launch": {"command": ["python3", "app.py"]}},
        profilers={"open-files": spec},
    )


def sample(t: float, files: int, **extra: Any) -> dict[str, Any]:
    """A sample as the runner writes it: ``files`` leaked files, a config file open twice,
    stdin/stdout/stderr on /dev/null, a listening socket, a pipe's two ends."""
    kinds = {"file": files + 2, "socket": 1, "pipe": 2, "anon_inode": 1, "device": 3, "other": 0}
    record = {
        "t": t,
        "pid": 4242,
        "procs": 1,
        "total": sum(kinds.values()),
        "kinds": kinds,
        "paths": [[CONFIG, 2], ["/dev/null", 3]] + [[f"/var/log/x{i}", 1] for i in range(files)],
        "distinct_paths": files + 2,
        "members": [[4242, sum(kinds.values())]],
        "sockets": {"tcp": {"LISTEN": 1}},
        "sockets_other": 0,
        "listening": ["tcp 0.0.0.0:8080"],
    }
    record.update(extra)
    return record


def parse(tmp_path: Path, records: list[Any], **spec: Any) -> ProfileResult:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    (tmp_path / open_files.OUTPUT).write_text("\n".join(lines) + "\n")
    return open_files.parse(tmp_path, {}, chosen(**spec))


def test_it_is_registered_and_plans_a_builtin_sampler_with_its_top_paths():
    assert REGISTRY["open-files"] is open_files
    planned = open_files.plan(chosen(interval="500ms", top_paths=7), host_facts(), None)
    assert (planned.status, planned.builtin, planned.outputs) == (
        "planned",
        "open-files",
        ["open_files.jsonl"],
    )
    assert planned.options == {"interval_s": 0.5, "top_paths": 7}
    assert open_files.plan(chosen(), host_facts(), None).options["top_paths"] == 20


def test_a_probe_target_skips_it_with_the_reason():
    probe = campaign(target={"probe": ["cpu"]}, profilers={"open-files": {}})
    planned = open_files.plan(probe, host_facts(), None)
    assert planned.status == "skipped"
    assert planned.reason == "open-files follows a target process; a probe target has none"


@pytest.mark.parametrize("spec", [{"top_paths": 0}, {"top_paths": 101}, {"leak_per_min": 0}])
def test_the_campaign_rejects_settings_out_of_range(spec):
    with pytest.raises(CampaignError):
        chosen(**spec)


def test_a_plan_the_controller_makes_the_device_accepts():
    made = make_plan(
        chosen(top_paths=100), host_facts(), "20261125-111500-ab12", {}, time.time() + 60
    )
    plan = json.loads(json.dumps(made.to_dict()))
    arguments.validate_plan(plan)
    entry = next(p for p in plan["profilers"] if p["name"] == "open-files")
    assert entry["builtin"] == "open-files" and entry["options"]["top_paths"] == 100
    entry["options"]["top_paths"] = 101
    with pytest.raises(InvocationError) as error:
        arguments.validate_plan(plan)
    assert "options.top_paths must be an integer from 1 to 100" in str(error.value)


def test_steady_growth_over_the_threshold_is_a_likely_leak(tmp_path):
    # One file more every 2 s: 30 a minute, over the default 10.
    result = parse(tmp_path, [sample(100.0 + 2 * i, i) for i in range(20)])
    m = result.metrics
    assert math.isclose(m["fds.growth_per_min"], 30.0, rel_tol=1e-3)
    assert m["fds.growth_r2"] == 1.0 and m["fds.leak"] == 1.0
    assert (
        m["fds.total_peak"] == 19 + 2 + 1 + 2 + 1 + 3 and m["fds.total_last"] == m["fds.total_peak"]
    )
    assert (m["fds.file_peak"], m["fds.socket_peak"], m["fds.pipe_peak"]) == (21, 1, 2)
    assert (m["fds.device_peak"], m["fds.anon_inode_peak"], m["fds.other_peak"]) == (3, 1, 0)
    assert m["fds.tcp.listen"] == 1 and m["fds.socket_other_peak"] == 0
    assert m["fds.processes.max"] == 1 and m["fds.samples"] == 20
    assert result.data_quality == [
        "open-files: likely descriptor leak: open descriptors grew steadily at 30.0 per minute "
        "(r\u00b2 1.00; threshold 10 per minute)"
    ]
    assert result.series["fds.t"][-1] == 38.0 and result.series["fds.total"][-1] == 28.0
    assert result.series["fds.file"][0] == 2.0


def test_the_tables(tmp_path):
    records = [sample(100.0 + i, 3) for i in range(5)]
    records[2]["sockets"] = {"tcp": {"LISTEN": 1, "ESTABLISHED": 4}, "udp6": {"UNCONNECTED": 1}}
    tables = parse(tmp_path, records, top_paths=3).tables
    assert tables["open_files.paths"] == [
        {"path": "/dev/null", "peak": 3.0, "last": 3.0},
        {"path": CONFIG, "peak": 2.0, "last": 2.0},
        {"path": "/var/log/x0", "peak": 1.0, "last": 1.0},
    ]
    assert tables["open_files.sockets"] == [
        {"protocol": "tcp", "state": "ESTABLISHED", "peak": 4.0, "last": 0.0},
        {"protocol": "tcp", "state": "LISTEN", "peak": 1.0, "last": 1.0},
        {"protocol": "udp", "state": "UNCONNECTED", "peak": 1.0, "last": 0.0},
    ]
    kinds = {row["kind"]: row for row in tables["open_files.kinds"]}
    assert kinds["file"] == {"kind": "file", "first": 5.0, "last": 5.0, "peak": 5.0}
    assert tables["open_files.listening"] == [{"socket": "tcp 0.0.0.0:8080"}]


def test_flat_or_slow_counts_are_no_leak(tmp_path):
    result = parse(tmp_path, [sample(100.0 + i, 4) for i in range(10)])
    assert result.metrics["fds.leak"] == 0.0 and result.metrics["fds.growth_per_min"] == 0.0
    assert result.data_quality == []
    slow = parse(tmp_path, [sample(100.0 + 30 * i, i) for i in range(10)])  # 2 a minute
    assert slow.metrics["fds.leak"] == 0.0


def test_steep_but_unsteady_growth_is_noted_not_flagged(tmp_path):
    files = [0, 40, 0, 40, 0, 40, 0, 40, 1, 41]
    result = parse(tmp_path, [sample(100.0 + i, n) for i, n in enumerate(files)])
    assert result.metrics["fds.leak"] == 0.0
    assert result.metrics["fds.growth_per_min"] > open_files.OpenFilesSpec().leak_per_min
    assert "but unsteadily" in result.data_quality[0]


def test_too_few_samples_give_no_verdict(tmp_path):
    result = parse(tmp_path, [sample(100.0 + i, i * 10) for i in range(3)])
    assert "fds.leak" not in result.metrics and "fds.growth_per_min" in result.metrics
    assert result.data_quality == ["open-files: 3 samples are too few to judge a leak"]
    one = parse(tmp_path, [sample(100.0, 1)])
    assert one.metrics["fds.total_peak"] == 10
    assert one.data_quality == ["open-files: too few samples over time for a growth slope"]


def test_no_file_or_no_usable_sample(tmp_path):
    assert open_files.parse(tmp_path, {}, chosen()) == ProfileResult()
    result = parse(tmp_path, ["not json", {"t": 1.0, "total": -3}, {"t": 2.0, "total": "x"}])
    assert result.metrics == {} and result.tables == {}
    assert result.data_quality == [
        "open-files: 1 malformed lines in open_files.jsonl skipped",
        "open-files: no sample of the target's descriptors",
    ]


def test_device_output_is_not_trusted(tmp_path):
    hostile = sample(
        101.0,
        1,
        kinds={"file": float("inf"), "socket": -1, "pipe": "2", "<b>": 5},
        paths=[["<script>alert(1)</script>", 2], ["/" + "p" * 5000, 1], [7, 1], "x", [None]],
        sockets={
            "tcp": {"<i>LISTEN</i>": 3, "LISTEN": 1e308, "CLOSE_WAIT": -2},
            "sctp": {"LISTEN": 1},
            "udp": "x",
        },
        listening=["<img src=x>", 5],
        cut={"unread": 12, "net": ["tcp"], "<x>": 1},
    )
    text = json.dumps(hostile).replace("Infinity", "1e999")
    result = parse(tmp_path, [sample(100.0, 1), text])
    m = result.metrics
    assert "fds.<b>_peak" not in m and m["fds.pipe_peak"] == 2  # the first sample's
    assert m["fds.tcp.listen"] == 1e308 and "fds.tcp.close_wait" not in m
    assert not any(key.startswith("fds.sctp") for key in m)
    paths = {row["path"] for row in result.tables["open_files.paths"]}
    assert "<script>alert(1)</script>" in paths  # kept as text: the renderers escape it
    assert max(len(p) for p in paths) == 200
    assert {"socket": "<img src=x>"} in result.tables["open_files.listening"]
    assert (
        "open-files: more descriptors than the runner reads per sample: their kinds and "
        "paths are not counted (the total is) (1 samples)" in result.data_quality
    )
    assert any("/proc/PID/net table" in note for note in result.data_quality)


def test_the_report_shows_the_part_and_the_summary_row_escaped(tmp_path):
    records = [sample(100.0 + 2 * i, i) for i in range(10)]
    for record in records:
        record["paths"].insert(0, [PWN_SCRIPT, 9])
        record["sockets"] = {"tcp": {"LISTEN": 1}, "tcp6": {"ESTABLISHED": 2}}
        record["listening"] = [PWN_MD]
    result = parse(tmp_path, records)
    report = fleet_report()
    host = report["hosts"][0]
    host.setdefault("tables", {}).update(result.tables)
    host.setdefault("metrics", {}).update(result.metrics)
    host.setdefault("series", {}).update(result.series)
    page = render_html(report)
    assert page.count("<h3>Open files") == 1 and "likely descriptor leak</strong>" in page
    part = page.split("<h3>Open files", 1)[1].split("<h3>", 1)[0]
    assert "<script>document.title" not in part and "&lt;script&gt;" in part
    assert "<td>ESTABLISHED</td>" in part and "/var/log/x0" in part
    assert "Open descriptors" in page  # the chart of the fds.* series
    text = render_markdown(report)
    section = text.split("## open-files per host", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith(f"| {host['name']} |"))
    assert "| 18 | 30.0 | yes | tcp ESTABLISHED 2, tcp LISTEN 1 |" in row
    assert "<script>" not in row and "&lt;script&gt;" in row
