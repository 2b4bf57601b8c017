"""`fleetprof inspect`: one raw artifact through the report's own parser."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli.app import main
from tests.support.paths import FIXTURES


def test_inspect_prints_what_a_pyspy_file_holds_as_json() -> None:
    path = FIXTURES / "py-spy/cpu-two-stages.threads-idle.folded.txt"
    result = CliRunner().invoke(main, ["inspect", "py-spy", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["metrics"]["pyspy.samples"] == 74 + 34 + 91
    functions = {row["function"]: row["self_pct"] for row in data["top_functions"]}
    assert functions["decode"] == round(100 * 91 / 199, 2)


def test_inspect_renders_tables_for_iotop() -> None:
    path = FIXTURES / "iotop/iotop-b-o-t-k-P.txt"
    result = CliRunner().invoke(main, ["inspect", "iotop", str(path)])
    assert result.exit_code == 0, result.output
    assert "iotop.total.write_bytes_per_s.mean" in result.output


def test_inspect_rejects_an_unknown_profiler_and_a_missing_file_with_exit_2(
    tmp_path: Path,
) -> None:
    (tmp_path / "perf.data").write_text("x")
    unknown = CliRunner().invoke(main, ["inspect", "perf", str(tmp_path / "perf.data")])
    assert unknown.exit_code == 2
    assert "unknown profiler" in unknown.output
    missing = CliRunner().invoke(main, ["inspect", "py-spy", str(tmp_path / "none")])
    assert missing.exit_code == 2
    assert "not a readable file" in missing.output


def test_inspect_shows_cprofile_functions_and_edges() -> None:
    path = FIXTURES / "cprofile" / "finished.py3.11.json"
    result = CliRunner().invoke(main, ["inspect", "cprofile", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    functions, edges = (
        result.output.index("cprofile.functions"),
        result.output.index("cprofile.edges"),
    )
    assert "cprofile.us_per_call" in result.output and functions < edges
    assert "light" in result.output and "step (workload.py:18)" in result.output
