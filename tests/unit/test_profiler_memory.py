"""The memory profiler: peaks, the growth slope, and when a leak is suspected."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.profilers import REGISTRY, memory
from tests.support.profilers.memory import campaign, parse, series


def test_it_is_registered_and_plans_a_builtin_sampler():
    assert REGISTRY["memory"] is memory
    planned = memory.plan(campaign(), None, None)  # type: ignore[arg-type]
    assert (planned.status, planned.builtin, planned.outputs) == (
        "planned",
        "memory",
        ["memory.jsonl"],
    )
    assert planned.options == {"interval_s": 1.0}


def test_steady_growth_over_the_threshold_is_a_suspected_leak(tmp_path):
    # +0.1 MB a second = 6 MB/min, far over the default 1 MB/min.
    result = parse(tmp_path, series([100 + 0.1 * i for i in range(30)]))
    m = result.metrics
    assert m["memory.rss_peak_mb"] == 102.9
    assert m["memory.pss_peak_mb"] == 51.45
    assert math.isclose(m["memory.rss_slope_mb_per_min"], 6.0, rel_tol=1e-3)
    assert m["memory.rss_slope_r2"] == 1.0
    assert m["memory.leak_suspected"] == 1.0
    assert any("likely leak" in note for note in result.data_quality)


def test_the_campaign_threshold_decides(tmp_path):
    result = parse(tmp_path, series([100 + 0.1 * i for i in range(30)]), leak=10.0)
    assert result.metrics["memory.leak_suspected"] == 0.0
    assert not result.data_quality


def test_a_jumpy_series_is_not_a_leak_even_when_its_slope_is_steep(tmp_path):
    # A sawtooth (allocate, free, allocate) with one late spike: a slope, but no trend.
    rss = [100.0, 160.0, 100.0, 160.0, 100.0, 160.0, 100.0, 160.0, 100.0, 200.0]
    result = parse(tmp_path, series(rss))
    assert result.metrics["memory.rss_slope_mb_per_min"] > 1.0
    assert result.metrics["memory.rss_slope_r2"] < memory.MIN_R2
    assert result.metrics["memory.leak_suspected"] == 0.0
    assert any("unsteadily" in note for note in result.data_quality)


def test_a_flat_series_has_zero_slope(tmp_path):
    result = parse(tmp_path, series([50.0] * 10))
    assert result.metrics["memory.rss_slope_mb_per_min"] == 0.0
    assert result.metrics["memory.leak_suspected"] == 0.0


def test_too_few_samples_give_peaks_but_no_verdict(tmp_path):
    single = parse(tmp_path, series([42.0]))
    assert single.metrics == {"memory.rss_peak_mb": 42.0, "memory.pss_peak_mb": 21.0}
    assert any("too few samples" in note for note in single.data_quality)
    few = parse(tmp_path, series([1.0, 50.0, 100.0]))
    assert "memory.rss_slope_mb_per_min" in few.metrics
    assert "memory.leak_suspected" not in few.metrics


def test_garbage_and_truncation_are_survived(tmp_path):
    lines: list[Any] = [*series([10.0, 11.0, 12.0])]
    lines += ["garbage", '{"t": 1e999}', {"t": 1010.0, "target": {"rss_kb": -5, "pss_kb": "x"}}]
    lines.append('{"t": 1011.0, "target": {"rss_')  # cut mid-line
    result = parse(tmp_path, lines)
    assert result.metrics["memory.rss_peak_mb"] == 12.0
    assert any("3 malformed lines" in note for note in result.data_quality)


def test_unreadable_pss_is_said(tmp_path):
    records = [{"t": 1000.0 + i, "target": {"rss_kb": 1024 * (i + 1)}} for i in range(6)]
    result = parse(tmp_path, records)
    assert "memory.pss_peak_mb" not in result.metrics
    assert any("PSS is unreadable" in note for note in result.data_quality)


def test_no_rss_at_all(tmp_path):
    result = parse(tmp_path, [{"t": 1000.0}, {"t": 1001.0, "target": {}}])
    assert result.metrics == {}
    assert result.data_quality == ["memory: no RSS sample of the target"]


def test_memory_is_skipped_for_a_probe_target_with_the_reason() -> None:
    from orchestrator.profilers import memory as memory_profiler
    from tests.support.factories import host_facts

    probe = Campaign.from_mapping(
        {"name": "p", "duration": "5s", "target": {"probe": ["cpu"]}, "profilers": {"memory": {}}}
    )
    planned = memory_profiler.plan(probe, host_facts(), None)
    assert planned.status == "skipped"
    assert "probe target" in (planned.reason or "")
