"""The workload's own metrics: the reader of untrusted lines, the statistics, the names'
grammar, and the directions a campaign declares (outliers, check and compare judge only
the worse side of a declared name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetprof_device.contract import WORKLOAD_MAX_NAMES
from orchestrator.analysis.directions import (
    BOTH,
    HIGHER,
    LOWER,
    SKIP,
    declared_directions,
    is_bad_side,
    rule_for,
)
from orchestrator.analysis.workload import Points, base_name, quantile, repetitions, summarize
from orchestrator.stages.workload import read_workload
from orchestrator.values import workload_name_problem


def write(tmp_path: Path, *lines: object) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (tmp_path / "workload.jsonl").write_text(text)
    return tmp_path


def test_quantiles_interpolate_between_the_closest_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert quantile(values, 0.5) == 5.5
    assert quantile(values, 0.95) == pytest.approx(9.55)
    assert quantile([4.0], 0.95) == 4.0


def test_a_name_s_statistics_and_the_mean_as_its_headline() -> None:
    stats = summarize("fps", Points(values=[20.0, 30.0, 25.0]))
    assert stats == {
        "workload.fps": 25.0,
        "workload.fps.p50": 25.0,
        "workload.fps.p95": 29.5,
        "workload.fps.last": 25.0,
        "workload.fps.count": 3.0,
    }
    assert base_name("workload.fps.p95") == "fps" and base_name("workload.stage.decode") == (
        "stage.decode"
    )


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("fps", True),
        ("stage.decode_ms", True),
        ("count", True),
        ("a:b-c", True),
        ("fps.p95", False),
        ("x.count", False),
        ("9lives", False),
        ("", False),
        ("a b", False),
        ("<script>", False),
        ("x" * 65, False),
        ("end.", False),
    ],
)
def test_the_name_grammar(name: str, ok: bool) -> None:
    assert (workload_name_problem(name) is None) is ok


def test_untrusted_lines_are_counted_and_skipped_never_fatal(tmp_path: Path) -> None:
    session = write(
        tmp_path,
        {"name": "fps", "value": 25, "unit": "frames/s", "t": 100.5},
        "{broken",
        "[1, 2]",
        {"name": "fps", "value": True},
        {"name": "fps", "value": "30"},
        '{"name": "fps", "value": NaN}',
        {"name": "<img src=x>", "value": 1},
        {"name": "fps", "value": 35, "unit": "Hz", "t": 101.5},
        "x" * 5000,
    )
    result = read_workload(session, {"t0_device": 100.0})
    assert result.metrics["workload.fps"] == 30.0 and result.metrics["workload.fps.count"] == 2
    notes = "\n".join(result.data_quality)
    assert "6 malformed lines" in notes
    assert "1 lines with an unusable name" in notes
    assert "1 lines gave another unit than frames/s" in notes
    assert result.rows[0]["unit"] == "frames/s"
    assert result.series == {"workload.t": [0.5, 1.5], "workload.fps": [25.0, 35.0]}


def test_names_past_the_cap_are_skipped_with_a_note(tmp_path: Path) -> None:
    lines = [{"name": f"m{i}", "value": i} for i in range(WORKLOAD_MAX_NAMES + 5)]
    result = read_workload(write(tmp_path, *lines), {})
    assert len(result.rows) == WORKLOAD_MAX_NAMES
    assert any("5 lines of further names skipped" in n for n in result.data_quality)


def test_no_file_no_metrics_and_a_link_is_not_followed(tmp_path: Path) -> None:
    assert read_workload(tmp_path, {}).metrics == {}
    secret = tmp_path / "secret"
    secret.write_text('{"name": "leak", "value": 1}\n')
    (tmp_path / "workload.jsonl").symlink_to(secret)
    assert read_workload(tmp_path, {}).metrics == {}


def test_declared_directions_rule_only_inside_their_block() -> None:
    assert rule_for("workload.fps").direction == HIGHER  # the demo's, built in
    assert rule_for("workload.latency_ms").direction == BOTH
    assert rule_for("workload.latency_ms.count").direction == SKIP
    with declared_directions({"latency_ms": "lower", "fps": "lower", "count": "higher"}):
        assert rule_for("workload.latency_ms").direction == LOWER
        assert rule_for("workload.latency_ms.p95").direction == LOWER
        assert rule_for("workload.latency_ms.count").direction == SKIP
        assert rule_for("workload.fps.p50").direction == LOWER  # the campaign's word wins
        assert rule_for("workload.count").direction == HIGHER
        assert is_bad_side("workload.latency_ms", 4.0)
        assert not is_bad_side("workload.latency_ms", -4.0)
        assert rule_for("system.cpu_pct").direction == BOTH
    assert rule_for("workload.latency_ms").direction == BOTH


def test_a_sweep_run_s_metric_has_its_name_s_direction() -> None:
    with declared_directions({"items_per_s": "higher"}):
        assert rule_for("workload.items_per_s[8]").direction == HIGHER
        assert rule_for("workload.items_per_s.p95[8]").direction == HIGHER
        assert rule_for("workload.items_per_s.count[8]").direction == SKIP
    assert rule_for("workload.fps[0.5]").direction == HIGHER


def test_a_window_s_values_become_five_repetitions_for_the_check(tmp_path: Path) -> None:
    lines = [{"name": "fps", "value": float(v), "t": 100.0 + v} for v in range(10)]
    result = read_workload(write(tmp_path, *lines), {"t0_device": 100.0})
    assert result.samples == {"workload.fps": [0.5, 2.5, 4.5, 6.5, 8.5]}
    untimed = Points(values=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert repetitions(untimed, 3) == [1.5, 3.5, 5.5]
    assert repetitions(Points(values=[1.0, 2.0]), 5) == []
