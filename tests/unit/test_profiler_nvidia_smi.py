"""nvidia-smi: planned only where a driver and nvidia-smi are, and its CSV read per GPU.

The fixtures are real nvidia-smi output copied from public issue threads (see
tests/fixtures/SOURCES.md). Expected figures are worked out here from the fixture text
itself, independently of the parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator import profilers
from orchestrator.campaign.model import Campaign
from orchestrator.models import HostFacts
from orchestrator.profilers import nvidia_smi
from orchestrator.stages.plan import make_plan
from tests.support.factories import host_facts
from tests.support.paths import FIXTURES as _FIXTURES

FIXTURES = _FIXTURES / "nvidia-smi"
LOOP = FIXTURES / "gtx-loop-index-units.520.csv"
TWO_GPUS = FIXTURES / "two-gpus-no-index.csv"
GB10 = FIXTURES / "gb10-memory-na.csv"
GB10_NOHEADER = FIXTURES / "gb10-memory-na.noheader.csv"
GTX770 = FIXTURES / "gtx770-not-supported.noheader.csv"
GTX770_QUERY = (
    "gpu_name",
    "utilization.gpu",
    "utilization.memory",
    "temperature.gpu",
    "power.draw",
    "power.limit",
    "fan.speed",
    "pstate",
    "clocks.current.graphics",
    "clocks.current.memory",
    "power.max_limit",
    "power.default_limit",
)


def campaign(interval: str = "1s") -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": "30s",
        "target": {"attach": {"process": "trainer"}},
        "profilers": {"nvidia-smi": {"interval": interval}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


def facts(**overrides: Any) -> HostFacts:
    gpu = {"nvidia_driver": True, "jetson": False, "gpu_counters_admin_only": None}
    defaults = {"host": "gpu-1", "home": "/root", "is_root": True, "gpu": gpu}
    return host_facts(**{**defaults, "tools": {"nvidia-smi": "/usr/bin/nvidia-smi"}, **overrides})


def parse(tmp_path: Path, text: str | bytes) -> nvidia_smi.ProfileResult:
    out = tmp_path / nvidia_smi.OUTPUT
    out.write_bytes(text.encode() if isinstance(text, str) else text)
    entry = {"status": "ok", "exit_code": 0, "outputs": {nvidia_smi.OUTPUT: {"truncated": False}}}
    return nvidia_smi.parse(tmp_path, entry, campaign())


def numbers(text: str, column: int, unit: str) -> list[float]:
    """Column ``column`` of every data row, its unit removed: the test's own reading."""
    rows = [line.split(", ") for line in text.splitlines()[1:]]
    return [float(row[column].removesuffix(unit).strip()) for row in rows]


# -- plan ----------------------------------------------------------------------------------


def test_nvidia_smi_is_registered() -> None:
    assert profilers.get("nvidia-smi") is nvidia_smi
    assert nvidia_smi.TOOL is None and nvidia_smi.OUTPUT == "nvidia-smi.stdout"


def test_plan_loops_over_the_query_every_interval_in_milliseconds() -> None:
    plan = make_plan(campaign("500ms"), facts(), "run1", {}, t0=1000.0)
    [planned] = plan.profilers
    assert planned.status == "planned" and planned.reason is None
    assert planned.argv == [
        "/usr/bin/nvidia-smi",
        "--query-gpu=timestamp,index,uuid,name,utilization.gpu,utilization.memory,"
        "memory.used,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,"
        "power.limit",
        "--format=csv,nounits",
        "-lms",
        "500",
    ]
    assert planned.outputs == ["nvidia-smi.stdout"]
    assert plan.tools == {}


def test_plan_never_asks_for_a_field_some_drivers_refuse() -> None:
    argv = nvidia_smi.plan(campaign(), facts(), None).argv
    assert "throttle" not in argv[1] and "event_reasons" not in argv[1]


def test_plan_skips_a_host_without_nvidia_smi() -> None:
    planned = nvidia_smi.plan(campaign(), facts(tools={}), None)
    assert planned.status == "skipped" and planned.argv == []
    assert planned.reason == nvidia_smi.NOT_INSTALLED
    assert "nvidia-smi was not found" in planned.reason


def test_plan_skips_a_host_without_the_nvidia_driver() -> None:
    planned = nvidia_smi.plan(campaign(), facts(gpu={"nvidia_driver": False}), None)
    assert planned.status == "skipped" and planned.reason == nvidia_smi.NO_DRIVER


def test_plan_runs_where_the_driver_is_unknown_but_nvidia_smi_is_there() -> None:
    assert nvidia_smi.plan(campaign(), facts(gpu={}), None).status == "planned"


# -- parse: real output --------------------------------------------------------------------


def test_a_loop_of_one_gpu_with_units_in_the_header_and_values(tmp_path: Path) -> None:
    text = LOOP.read_text()
    util = numbers(text, 2, "%")
    power = numbers(text, 6, "W")
    sm = numbers(text, 7, "MHz")
    temp = numbers(text, 1, "")
    result = parse(tmp_path, text)
    m = result.metrics
    assert m["gpu.samples"] == 13 == len(util)
    assert m["gpu.count"] == 1
    assert m["gpu.0.util_pct.mean"] == pytest.approx(sum(util) / 13, abs=0.01)
    assert m["gpu.0.util_pct.max"] == max(util) == 32
    assert m["gpu.0.power_w.mean"] == pytest.approx(sum(power) / 13, abs=0.01)
    assert m["gpu.0.power_w.max"] == max(power) == 84.77
    assert m["gpu.0.sm_clock_mhz.mean"] == pytest.approx(sum(sm) / 13, abs=0.1)
    assert m["gpu.0.temp_c.max"] == max(temp) == 56
    assert m["gpu.util_pct.mean"] == m["gpu.0.util_pct.mean"]
    assert m["gpu.temp_c.max"] == 56
    # That query had neither memory.used nor clocks.max.sm: no figure, a note each.
    assert "gpu.0.mem_used_mb.max" not in m and "gpu.0.sm_clock_ratio.min" not in m
    assert "nvidia-smi output has no memory.used column" in result.data_quality
    assert "nvidia-smi output has no clocks.max.sm column" in result.data_quality


def test_two_gpus_without_an_index_column_are_told_apart_by_their_row(tmp_path: Path) -> None:
    m = parse(tmp_path, TWO_GPUS.read_text()).metrics
    # GeForce GTX 1080 Ti, 29 %, 11175 MiB, 2856 MiB, 36 %, 60, 106.56 W, ...
    # GeForce GTX 1060 6GB, 29 %, 6078 MiB, 4 MiB, 0 %, 49, 5.68 W, ...
    assert m["gpu.count"] == 2
    assert (m["gpu.0.util_pct.max"], m["gpu.1.util_pct.max"]) == (36, 0)
    assert (m["gpu.0.mem_used_mb.max"], m["gpu.1.mem_used_mb.max"]) == (2856, 4)
    assert (m["gpu.0.power_w.max"], m["gpu.1.power_w.mean"]) == (106.56, 5.68)
    assert m["gpu.util_pct.mean"] == (36 + 0) / 2
    assert m["gpu.temp_c.max"] == 60
    output = nvidia_smi.parse_text(TWO_GPUS.read_text())
    assert output.gpus["0"].name == "GeForce GTX 1080 Ti"
    assert output.gpus["1"].name == "GeForce GTX 1060 6GB"


def test_not_supported_values_are_left_out_with_a_note(tmp_path: Path) -> None:
    output = nvidia_smi.parse_text(GTX770.read_text(), GTX770_QUERY)
    assert output.rows == 1 and output.malformed_lines == 0
    assert output.unavailable == {"util": 1, "power": 1}
    m = nvidia_smi.metrics_from(output)
    assert m["gpu.0.temp_c.max"] == 52
    assert not any("util_pct" in k or "power_w" in k for k in m)


def test_na_memory_on_a_unified_memory_gpu(tmp_path: Path) -> None:
    # GB10: `--query-gpu=memory.used,memory.total,utilization.memory` reads [N/A], [N/A], 0.
    output = nvidia_smi.parse_text(
        GB10_NOHEADER.read_text(), ("memory.used", "memory.total", "utilization.memory")
    )
    assert output.rows == 1 and output.unavailable == {"mem_used": 1}
    assert "gpu.0.mem_used_mb.max" not in nvidia_smi.metrics_from(output)
    result = parse(tmp_path, GB10.read_text())
    assert result.metrics == {"gpu.samples": 1.0, "gpu.count": 1.0}


# -- parse: the query fleetprof runs, and damage ---------------------------------------------

HEADER = (
    "timestamp, index, uuid, name, utilization.gpu [%], utilization.memory [%], "
    "memory.used [MiB], memory.total [MiB], clocks.current.sm [MHz], clocks.max.sm [MHz], "
    "temperature.gpu, power.draw [W], power.limit [W]\n"
)


def row(stamp: str, index: int, util: str, mem: str, sm: str, temp: str, power: str) -> str:
    return (
        f"{stamp}, {index}, GPU-{index}, NVIDIA A100-SXM4-40GB, {util}, 3, {mem}, 40960, "
        f"{sm}, 1410, {temp}, {power}, 400.00\n"
    )


def test_own_query_two_gpus_two_samples(tmp_path: Path) -> None:
    text = (
        HEADER
        + row("2024/01/01 10:00:00.000", 0, "90", "1000", "1410", "60", "300.50")
        + row("2024/01/01 10:00:00.000", 1, "10", "500", "705", "40", "[N/A]")
        + row("2024/01/01 10:00:01.000", 0, "70", "3000", "1200", "65", "250.50")
        + row("2024/01/01 10:00:01.000", 1, "30", "600", "1410", "45", "100.00")
    )
    result = parse(tmp_path, text)
    m = result.metrics
    assert m["gpu.samples"] == 4 and m["gpu.count"] == 2
    assert m["gpu.0.util_pct.mean"] == 80 and m["gpu.0.util_pct.max"] == 90
    assert m["gpu.0.mem_used_mb.max"] == 3000
    assert m["gpu.0.sm_clock_mhz.mean"] == 1305
    assert m["gpu.0.sm_clock_ratio.min"] == round(1200 / 1410, 4)
    assert m["gpu.1.sm_clock_ratio.min"] == 0.5
    assert m["gpu.0.power_w.mean"] == 275.5 and m["gpu.0.power_w.max"] == 300.5
    assert m["gpu.1.power_w.mean"] == 100 and m["gpu.1.power_w.max"] == 100
    assert m["gpu.util_pct.mean"] == (90 + 10 + 70 + 30) / 4
    assert m["gpu.temp_c.max"] == 65
    assert any("power.draw as unavailable" in note for note in result.data_quality)


def test_a_name_with_a_comma_is_read_as_one_quoted_cell() -> None:
    text = (
        HEADER
        + '2024/01/01 10:00:00.000, 0, GPU-0, "Tesla K80, rev 2", 5, 1, 10, 11441, '
        + "562, 875, 30, 25.0, 149.0\n"
    )
    output = nvidia_smi.parse_text(text)
    assert output.rows == 1 and output.gpus["0"].name == "Tesla K80, rev 2"
    assert output.gpus["0"].values["util"] == [5.0]


def test_a_cut_last_line_and_garbage_are_left_out_and_counted(tmp_path: Path) -> None:
    text = (
        HEADER
        + row("2024/01/01 10:00:00.000", 0, "50", "10", "1410", "50", "100.0")
        + "garbage, line\n"
        + "0, 1, 2\n"
        + row("2024/01/01 10:00:01.000", 0, "60", "10", "1410", "55", "110.0")[:40]
    )
    result = parse(tmp_path, text)
    assert result.metrics["gpu.samples"] == 1
    assert result.metrics["gpu.0.util_pct.max"] == 50
    assert "2 malformed lines in nvidia-smi output" in result.data_quality
    assert any("last line was incomplete" in note for note in result.data_quality)


def test_out_of_range_values_are_dropped(tmp_path: Path) -> None:
    text = HEADER + row("t", 0, "250", "-5", "1410", "nan", "1e99")
    result = parse(tmp_path, text)
    assert result.metrics["gpu.samples"] == 1
    assert "gpu.0.util_pct.max" not in result.metrics
    assert any("not numbers or out of range" in note for note in result.data_quality)


def test_an_nvidia_smi_error_instead_of_rows_is_reported(tmp_path: Path) -> None:
    text = 'Field "clocks_event_reasons.active" is not a valid field to query.\n\n'
    result = parse(tmp_path, text)
    assert result.metrics == {"gpu.samples": 0.0}
    assert any("is not a valid field" in note for note in result.data_quality)


@pytest.mark.parametrize("text", ["", "\n", b"\xff\xfe\x00garbage"])
def test_empty_or_binary_output_gives_no_figures(tmp_path: Path, text: str | bytes) -> None:
    result = parse(tmp_path, text)
    assert result.metrics == {"gpu.samples": 0.0}


def test_a_missing_output_file_gives_nothing(tmp_path: Path) -> None:
    result = nvidia_smi.parse(tmp_path, {}, campaign())
    assert result.metrics == {} and result.data_quality == []


def test_too_many_gpus_are_capped(tmp_path: Path) -> None:
    rows = "".join(row("t", i, "1", "1", "1", "1", "1") for i in range(nvidia_smi.MAX_GPUS + 5))
    output = nvidia_smi.parse_text(HEADER + rows)
    assert len(output.gpus) == nvidia_smi.MAX_GPUS and output.malformed_lines == 5
