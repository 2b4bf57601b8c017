"""The time series the system, memory and iotop parsers keep for the report's charts.

Shape (``ProfileResult.series``, copied to ``hosts[].series``): flat, ``<source>.t`` is a
source's time axis in seconds from its first sample, every other ``<source>.*`` list is
aligned with it (None where a sample lacks the value), at most 200 points each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.profilers.system import SERIES_POINTS, pick_evenly
from tests.support.profilers import iotop as iotop_tests
from tests.support.profilers import memory as memory_tests
from tests.support.profilers import system as system_tests


def _aligned(series: dict[str, list[float | None]], source: str) -> None:
    axis = series[f"{source}.t"]
    assert axis[0] == 0.0
    assert axis == sorted(axis)
    for key, values in series.items():
        if key.startswith(f"{source}."):
            assert len(values) == len(axis), key
    json.dumps(series, allow_nan=False)  # report.json stays strict JSON


def test_system_series_per_sample(tmp_path: Path) -> None:
    records = [system_tests.sample(float(t)) for t in range(5)]
    for i, record in enumerate(records):
        record["thermal_c"] = {"cpu": 40.0 + i, "gpu": 45.0, "junk": 9999}
        record["cpufreq"] = [
            {"cpu": 0, "cur_khz": 1_000_000, "max_khz": 2_000_000},
            {"cpu": 1, "cur_khz": 2_000_000, "max_khz": 2_000_000},
        ]
    series = system_tests.parse(tmp_path, records).series
    _aligned(series, "system")
    assert series["system.t"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert series["system.cpu_pct"] == [20.0, 21.0, 22.0, 23.0, 24.0]
    # cpu_s grows 0.5 s per second: 50 %; the first sample has no interval yet.
    assert series["system.target.cpu_pct"] == [None, 50.0, 50.0, 50.0, 50.0]
    assert series["system.target.rss_mb"] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert series["system.target.write_bytes_per_s"] == [None, 2000.0, 2000.0, 2000.0, 2000.0]
    assert series["system.target.read_bytes_per_s"][1] == 1000.0
    assert series["system.thermal.max_c"] == [45.0] * 5
    assert series["system.cpufreq.min_ratio"] == [0.5] * 5
    assert series["system.mem.used_pct"][0] == 25.0


def test_system_series_gap_where_the_target_restarts_or_is_missing(tmp_path: Path) -> None:
    records = [system_tests.sample(float(t)) for t in range(4)]
    records[2]["target"] = {}
    records[3]["target"]["pid"] = 99
    series = system_tests.parse(tmp_path, records).series
    assert series["system.target.cpu_pct"] == [None, 50.0, None, None]
    assert series["system.target.rss_mb"][2] is None
    assert "system.thermal.max_c" not in series  # never measured: left out


def test_long_series_are_picked_evenly(tmp_path: Path) -> None:
    records = [system_tests.sample(t * 0.5) for t in range(1001)]
    series = system_tests.parse(tmp_path, records).series
    _aligned(series, "system")
    assert len(series["system.t"]) == SERIES_POINTS
    assert series["system.t"][0] == 0.0
    assert series["system.t"][-1] == 500.0
    assert pick_evenly(3) == [0, 1, 2]
    assert pick_evenly(1001, 5) == [0, 250, 500, 750, 1000]


def test_memory_series(tmp_path: Path) -> None:
    series = memory_tests.parse(tmp_path, memory_tests.series([10, 11, 12], step_s=2.0)).series
    _aligned(series, "memory")
    assert series == {
        "memory.t": [0.0, 2.0, 4.0],
        "memory.rss_mb": [10.0, 11.0, 12.0],
        "memory.pss_mb": [5.0, 5.5, 6.0],
    }


def test_memory_without_rss_has_no_series(tmp_path: Path) -> None:
    assert memory_tests.parse(tmp_path, [{"t": 1000.0, "target": {}}]).series == {}


def test_iotop_series_from_its_clock(tmp_path: Path) -> None:
    result = iotop_tests.parse(
        tmp_path,
        iotop_tests.WITH_DELAYACCT.read_text(),
        pid=14269,
        cmdline=["python3", "/tmp/iow.py"],
    )
    series = result.series
    _aligned(series, "iotop")
    assert series["iotop.t"] == [0.0, 1.0, 2.0]
    k = iotop_tests.K
    assert series["iotop.target.write_bytes_per_s"][0] == pytest.approx(117167.99 * k, abs=0.1)
    assert series["iotop.total.read_bytes_per_s"] == pytest.approx(
        [11.94 * k, 7.96 * k, 3.98 * k], abs=0.1
    )


def test_iotop_series_without_a_target_has_only_totals(tmp_path: Path) -> None:
    series = iotop_tests.parse(tmp_path, iotop_tests.WITH_DELAYACCT.read_text()).series
    assert set(series) == {
        "iotop.t",
        "iotop.total.read_bytes_per_s",
        "iotop.total.write_bytes_per_s",
    }


def test_iotop_times_wrap_at_midnight() -> None:
    from orchestrator.profilers.iotop import Sample, sample_times

    samples = [Sample(t, 0.0, 0.0) for t in ("23:59:59", "00:00:00", "00:00:01")]
    assert sample_times(samples, 1.0) == [86399.0, 86400.0, 86401.0]
    assert sample_times([Sample(None, 0.0, 0.0)] * 3, 0.5) == [0.0, 0.5, 1.0]
