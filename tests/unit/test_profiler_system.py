"""The system profiler: its plan, and its parser on what a device may send back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.profilers import REGISTRY, system
from tests.support.profilers.system import campaign, parse, sample


def test_it_is_registered_and_plans_a_builtin_sampler_at_the_campaign_interval():
    assert REGISTRY["system"] is system
    planned = system.plan(campaign(), None, None)  # type: ignore[arg-type]
    assert planned.status == "planned"
    assert (planned.builtin, planned.options) == ("system", {"interval_s": 0.5})
    assert (planned.argv, planned.outputs) == ([], ["system.jsonl"])
    assert system.tool_push(None, None) is None  # type: ignore[arg-type]


def test_a_clean_series_gives_every_metric(tmp_path):
    result = parse(tmp_path, [sample(t) for t in range(11)], {"data_quality": {}})
    m = result.metrics
    assert m["system.samples"] == 11
    assert m["system.cpu.total_pct.mean"] == 25.0
    assert m["system.cpu.total_pct.max"] == 30.0
    assert m["system.cpu.core_pct.max"] == 40.0
    assert m["system.load1.max"] == 1.5
    assert m["system.mem.available_mb.min"] == 2990.0
    assert m["system.swap.used_mb.max"] == 10.0
    assert m["target.cpu_pct.mean"] == 50.0
    assert m["target.cpu_pct.max"] == 50.0
    assert m["target.rss_mb.peak"] == 20.0
    assert m["target.pss_mb.peak"] == 18.0
    assert m["target.threads.max"] == 3
    assert m["target.read_bytes_per_s"] == 1000.0
    assert m["target.write_bytes_per_s"] == 2000.0
    assert m["target.rchar_per_s"] == 3000.0
    assert m["target.wchar_per_s"] == 4000.0
    assert m["target.ctx_switches_per_s"] == 15.0
    assert m["target.nonvoluntary_ctx_switches_per_s"] == 5.0
    assert "system: no cpufreq on this device (VM or container?)" in result.data_quality
    assert "system: no thermal zones on this device" in result.data_quality


def test_rates_use_the_first_and_last_counters_over_the_elapsed_time(tmp_path):
    # Bursty writes: rate = (last - first) / elapsed, whatever happened in between.
    writes = [0, 0, 9000, 9000, 10000]
    result = parse(tmp_path, [sample(t, write_bytes=w) for t, w in enumerate(writes)])
    assert result.metrics["target.write_bytes_per_s"] == 2500.0


def test_counters_going_backwards_are_skipped_and_said(tmp_path):
    cpu = [0.0, 1.0, 2.0, 0.5, 1.5]  # the counter restarted (pid reuse, garbage)
    result = parse(tmp_path, [sample(t, cpu_s=c) for t, c in enumerate(cpu)])
    # Three good intervals of 1 s, each +1 s of CPU: 100%.
    assert result.metrics["target.cpu_pct.mean"] == 100.0
    assert any("went backwards 1 times" in note for note in result.data_quality)


def test_a_single_sample_has_peaks_but_no_rates(tmp_path):
    result = parse(tmp_path, [sample(0)])
    assert result.metrics["target.rss_mb.peak"] == 10.0
    assert "target.cpu_pct.mean" not in result.metrics
    assert "target.write_bytes_per_s" not in result.metrics
    assert any("a single sample" in note for note in result.data_quality)


def test_garbage_lines_are_counted_and_skipped(tmp_path):
    lines: list[Any] = [
        sample(0),
        "not json at all",
        "[1, 2, 3]",
        '{"t": NaN, "cpu_pct": 5}',
        '{"t": "1001"}',
        '{"cpu_pct": 5}',
        "{" * 100000,  # deep nesting must not crash the parser
        sample(1, rss_kb="huge", threads=True, cpu_s=float("inf")),
        '{"t": 1002.0, "cpu_pct": 1e999, "load": "high", "mem_mb": [1], "target": "x"}',
        sample(3),
    ]
    text_lines = [json.dumps(x) if isinstance(x, dict) else x for x in lines]
    text_lines[7] = text_lines[7].replace("Infinity", "1e999")
    result = parse(tmp_path, text_lines)
    assert result.metrics["system.samples"] == 4
    assert any("6 malformed lines" in note for note in result.data_quality)
    assert result.metrics["target.rss_mb.peak"] == 13.0
    assert result.metrics["system.cpu.total_pct.max"] == 23.0  # 1e309 is not a percentage
    assert result.metrics["target.cpu_pct.mean"] == 50.0


def test_a_truncated_file_keeps_the_whole_lines(tmp_path):
    text = "".join(json.dumps(sample(t)) + "\n" for t in range(5))
    (tmp_path / "system.jsonl").write_text(text[: len(text) - 40])
    entry = {"outputs": {"system.jsonl": {"bytes": 100, "truncated": True}}}
    result = system.parse(tmp_path, entry, campaign())
    assert result.metrics["system.samples"] == 4
    assert any("1 malformed lines" in note for note in result.data_quality)
    assert any("size cap" in note for note in result.data_quality)


def test_missing_fields_leave_their_metrics_out(tmp_path):
    records = [{"t": 1000.0 + t, "target": {"pid": 1, "rss_kb": 2048}} for t in range(3)]
    result = parse(tmp_path, records)
    assert result.metrics == {"system.samples": 3.0, "target.rss_mb.peak": 2.0}
    notes = " | ".join(result.data_quality)
    assert "PSS is unreadable" in notes
    assert "I/O counters are unreadable" in notes
    assert "no MemAvailable" in notes


def test_no_target_in_the_series_is_said(tmp_path):
    result = parse(tmp_path, [{"t": 1000.0, "cpu_pct": 5.0}])
    assert any("target was not sampled" in note for note in result.data_quality)
    assert not [name for name in result.metrics if name.startswith("target.")]


def test_no_file_no_metrics(tmp_path):
    assert system.parse(tmp_path, {}, campaign()).metrics == {}


def test_thermal_zones_peak_with_names_sanitized_and_bounded(tmp_path):
    records = []
    for t in range(3):
        thermal = {"CPU-therm": 40.0 + t, "GPU therm/../../x": 35.0, "bad": 9999.0, "": 50.0}
        thermal.update({f"zone{i}": 30.0 for i in range(40)})
        records.append(sample(t) | {"thermal_c": thermal})
    result = parse(tmp_path, records)
    m = result.metrics
    assert m["thermal.CPU-therm.max_c"] == 42.0
    assert m["thermal.GPU_therm_x.max_c"] == 35.0
    assert m["thermal.max_c"] == 42.0
    assert "thermal.bad.max_c" not in m
    zones = [name for name in m if name.startswith("thermal.") and name != "thermal.max_c"]
    assert len(zones) == system.MAX_ZONES
    notes = " | ".join(result.data_quality)
    assert "3 implausible temperature readings" in notes
    assert "beyond the first 32" in notes


def cores(*freqs: tuple[int, int, int]) -> list[dict[str, int]]:
    return [
        {"cpu": cpu, "cur_khz": cur, "max_khz": 2000000, "policy_max_khz": policy}
        for cpu, (cur, policy, _) in enumerate(freqs)
    ]


@pytest.mark.parametrize(
    ("freqs", "busy", "reduced_pct", "capped_pct", "min_ratio"),
    [
        # Busy cores at full speed: nothing reduced.
        ([(2000000, 2000000, 0)] * 2, [90.0, 90.0], 0.0, 0.0, 1.0),
        # An idle core clocked down by its governor is not throttled.
        ([(600000, 2000000, 0), (2000000, 2000000, 0)], [2.0, 90.0], 0.0, 0.0, 0.3),
        # A busy core held at 1.2 GHz under a lowered policy cap: throttled.
        ([(2000000, 2000000, 0), (1200000, 1200000, 0)], [90.0, 95.0], 100.0, 100.0, 0.6),
    ],
    ids=["full-speed", "idle-governor", "throttled"],
)
def test_time_at_reduced_frequency_counts_busy_cores_below_their_max(
    tmp_path, freqs, busy, reduced_pct, capped_pct, min_ratio
):
    records = [
        sample(t) | {"cpu_core_pct": {"cpu0": busy[0], "cpu1": busy[1]}, "cpufreq": cores(*freqs)}
        for t in range(4)
    ]
    records[0].pop("cpu_core_pct")  # the first sample has no load yet: not judged
    result = parse(tmp_path, records)
    assert result.metrics["cpufreq.reduced_time_pct"] == reduced_pct
    assert result.metrics["cpufreq.capped_time_pct"] == capped_pct
    assert result.metrics["cpufreq.min_ratio"] == min_ratio
    assert any("below 95%" in note for note in result.data_quality) == bool(reduced_pct)


def test_cpufreq_garbage_is_ignored(tmp_path):
    freq = [{"cpu": 0, "cur_khz": "fast"}, {"cpu": 1, "cur_khz": 9e9, "max_khz": 1}, 7]
    result = parse(tmp_path, [sample(t) | {"cpufreq": freq} for t in range(2)])
    assert "cpufreq.min_ratio" not in result.metrics
    assert "system: no cpufreq on this device (VM or container?)" in result.data_quality


def test_the_sampler_cost_is_reported_from_the_manifest(tmp_path):
    entry = {"data_quality": {"sampler_cpu_s": 0.05, "ran_s": 10.0}}
    result = parse(tmp_path, [sample(0), sample(1)], entry)
    assert result.metrics["system.sampler_cpu_pct"] == 0.5
    bad = {"data_quality": {"sampler_cpu_s": "a lot", "ran_s": 0}}
    assert "system.sampler_cpu_pct" not in parse(tmp_path, [sample(0)], bad).metrics
