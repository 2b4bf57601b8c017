"""The benchmarks at their smoke size, through the code path `make bench` takes, so that
CI keeps them working. Nothing here is timed: the figures are only checked to be there.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import BENCHMARKS, report_scale
from benchmarks.__main__ import load
from orchestrator.analysis.stacks import read_folded
from orchestrator.models import REPORT_SCHEMA


def test_every_registered_benchmark_has_a_name_a_summary_and_a_bench() -> None:
    for name in BENCHMARKS:
        module = load(name)
        assert name == module.NAME
        assert module.SUMMARY
        assert callable(module.bench)


def test_report_scale_smoke_builds_a_valid_report(tmp_path: Path) -> None:
    hosts, stacks = 3, 300
    data = report_scale.run(
        (hosts,), stacks, workdir=tmp_path, keep=True, results=False, quiet=True
    )
    [row] = data["rows"]
    assert row["hosts"] == row["hosts_in_report"] == hosts
    assert row["history_problem"] is None
    for figure in ("build_s", "parse_s", "analyze_s", "exports_s", "peak_rss_mb"):
        assert row[figure] > 0

    [run_dir] = tmp_path.glob(f"*/out-{hosts}/{report_scale.CAMPAIGN}/{report_scale.RUN_ID}")
    report = json.loads((run_dir / "report.json").read_text())
    assert report["schema"] == REPORT_SCHEMA
    assert report["summary"]["hosts"] == report["summary"]["ok"] == hosts
    assert {h["name"] for h in report["hosts"]} == {report_scale.host_name(i) for i in range(hosts)}
    for host in report["hosts"]:
        # What the generator wrote is what the parsers accept, all of it.
        assert host["data_quality"] == []
        assert host["flamegraph"]["value"] == host["metrics"]["pyspy.samples"] > 0
        assert host["metrics"]["system.samples"] > 0
        assert host["metrics"]["workload.fps"] > 0
        folded = run_dir / "hosts" / host["name"] / "session" / "py-spy.folded"
        profile = read_folded(folded)
        assert len([s for s in profile.stacks if s]) == stacks  # and the " N" line
        assert profile.malformed_lines == 0
        assert (run_dir / "hosts" / host["name"] / "profile.speedscope.json").is_file()
    assert report["groups"] and all(g["flamegraph"] for g in report["groups"])
    assert (run_dir / "report.html").stat().st_size > 0
    assert (run_dir.parent.parent / "history.sqlite").is_file()
