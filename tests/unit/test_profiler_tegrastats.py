"""tegrastats: planned only on Jetson boards, and its lines read on every board's format.

The fixtures are real tegrastats lines (Nano, TX1, TX2, AGX Xavier, Xavier NX, AGX Orin,
and L4T 28 on a TX1) copied from public repositories and issue threads (see
tests/fixtures/SOURCES.md). Expected figures are read off the fixture text by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator import profilers
from orchestrator.campaign.model import Campaign
from orchestrator.models import HostFacts
from orchestrator.profilers import tegrastats
from orchestrator.stages.plan import make_plan
from tests.support.factories import host_facts
from tests.support.paths import FIXTURES as _FIXTURES

FIXTURES = _FIXTURES / "tegrastats"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def campaign(interval: str = "1s") -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": "30s",
        "target": {"attach": {"process": "detector"}},
        "profilers": {"tegrastats": {"interval": interval}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


def facts(**overrides: Any) -> HostFacts:
    gpu = {"nvidia_driver": False, "jetson": True, "gpu_counters_admin_only": None}
    defaults = {
        "host": "jetson-1",
        "arch": "aarch64",
        "hw_model": "NVIDIA Jetson Xavier NX",
        "hw_model_source": "device-tree",
        "home": "/root",
        "is_root": True,
        "tools": {"tegrastats": "/usr/bin/tegrastats"},
        "gpu": gpu,
    }
    return host_facts(**{**defaults, **overrides})


def parse(tmp_path: Path, text: str | bytes) -> tegrastats.ProfileResult:
    out = tmp_path / tegrastats.OUTPUT
    out.write_bytes(text.encode() if isinstance(text, str) else text)
    entry = {"status": "ok", "exit_code": 0, "outputs": {tegrastats.OUTPUT: {"truncated": False}}}
    return tegrastats.parse(tmp_path, entry, campaign())


# -- plan ----------------------------------------------------------------------------------


def test_tegrastats_is_registered() -> None:
    assert profilers.get("tegrastats") is tegrastats
    assert tegrastats.TOOL is None and tegrastats.OUTPUT == "tegrastats.stdout"


def test_plan_runs_tegrastats_every_interval_in_milliseconds() -> None:
    plan = make_plan(campaign("250ms"), facts(), "run1", {}, t0=1000.0)
    [planned] = plan.profilers
    assert planned.status == "planned" and planned.reason is None
    assert planned.argv == ["/usr/bin/tegrastats", "--interval", "250"]
    assert planned.outputs == ["tegrastats.stdout"]
    assert plan.tools == {}


def test_plan_skips_a_host_that_is_not_a_jetson() -> None:
    planned = tegrastats.plan(campaign(), facts(tools={}), None)
    assert planned.status == "skipped" and planned.argv == []
    assert planned.reason == tegrastats.NOT_INSTALLED
    assert "not an NVIDIA Jetson" in planned.reason


# -- parse: real output, one board at a time -----------------------------------------------


def test_nano_older_format_with_pom_rails(tmp_path: Path) -> None:
    # RAM 534/3964MB ... CPU [16%@204,9%@204,0%@204,0%@204] EMC_FREQ 0%@204 GR3D_FREQ 0%@76
    # PLL@34C CPU@36.5C PMIC@100C GPU@36C AO@39.5C thermal@36.25C
    # POM_5V_IN 1022/1022 POM_5V_GPU 0/0 POM_5V_CPU 204/204
    result = parse(tmp_path, fixture("nano-jp4.txt"))
    m = result.metrics
    assert m["tegra.samples"] == 1
    assert m["tegra.ram_used_mb.max"] == 534 and m["tegra.ram_total_mb"] == 3964
    assert m["tegra.swap_used_mb.max"] == 5
    assert m["tegra.cpu_load_pct.mean"] == (16 + 9 + 0 + 0) / 4
    assert m["tegra.cpu_core_load_pct.max"] == 16
    assert m["tegra.cpu_freq_mhz.mean"] == 204
    assert m["tegra.gpu_load_pct.mean"] == 0 and m["tegra.gpu_freq_mhz.mean"] == 76
    assert m["tegra.temp.cpu.max_c"] == 36.5 and m["tegra.temp.thermal.max_c"] == 36.25
    assert m["tegra.temp.pmic.max_c"] == 100  # kept per zone...
    assert m["tegra.temp.max_c"] == 39.5  # ...but PMIC@100C is a placeholder: AO is hottest
    assert m["tegra.power.pom_5v_in.mean_mw"] == 1022
    assert m["tegra.power.pom_5v_gpu.mean_mw"] == 0
    assert m["tegra.power.pom_5v_cpu.mean_mw"] == 204
    assert result.data_quality == []


def test_tx2_offline_cores_and_vdd_sys_rails(tmp_path: Path) -> None:
    # CPU [1%@345,off,off,1%@345,0%@345,2%@345] ... VDD_SYS_GPU 152/152 ... VDD_IN 3056/3056
    m = parse(tmp_path, fixture("tx2.txt")).metrics
    assert m["tegra.cpu_load_pct.mean"] == (1 + 1 + 0 + 2) / 4  # the two off cores are out
    assert m["tegra.gpu_freq_mhz.mean"] == 624 and m["tegra.emc_load_pct.mean"] == 4
    assert m["tegra.temp.bcpu.max_c"] == 37.5 and m["tegra.temp.tdiode.max_c"] == 34.25
    assert m["tegra.temp.max_c"] == 37.5
    assert m["tegra.power.vdd_in.mean_mw"] == 3056
    assert m["tegra.power.vdd_sys_ddr.mean_mw"] == 883
    assert m["tegra.power.vdd_4v0_wifi.mean_mw"] == 0


def test_tx1_takes_the_instant_value_not_the_average(tmp_path: Path) -> None:
    # VDD_IN 2532/2698 VDD_CPU 76/178 VDD_GPU 19/19
    m = parse(tmp_path, fixture("tx1.txt")).metrics
    assert m["tegra.power.vdd_in.mean_mw"] == 2532
    assert m["tegra.power.vdd_cpu.mean_mw"] == 76
    assert "tegra.swap_used_mb.max" not in m  # this line has no SWAP field
    assert m["tegra.temp.max_c"] == 42.75


def test_agx_xavier_rails_without_a_vdd_prefix(tmp_path: Path) -> None:
    # ... MTS fg 0% bg 0% ... GPU 0/0 CPU 311/311 SOC 932/932 CV 0/0 VDDRQ 621/621 SYS5V 1482/1482
    m = parse(tmp_path, fixture("agx-xavier.txt")).metrics
    rails = {k for k in m if k.startswith("tegra.power.")}
    assert rails == {
        f"tegra.power.{r}.mean_mw" for r in ("gpu", "cpu", "soc", "cv", "vddrq", "sys5v")
    }
    assert m["tegra.power.sys5v.mean_mw"] == 1482
    assert m["tegra.cpu_load_pct.mean"] == (2 + 0 + 0 + 0) / 4
    assert m["tegra.ram_total_mb"] == 31927


def test_xavier_nx_gpu_load(tmp_path: Path) -> None:
    # CPU [9%@1190,6%@1190,6%@1190,5%@1190,4%@1190,8%@1267] ... GR3D_FREQ 62%@306
    m = parse(tmp_path, fixture("xavier-nx.txt")).metrics
    assert m["tegra.gpu_load_pct.mean"] == 62 and m["tegra.gpu_load_pct.max"] == 62
    assert m["tegra.cpu_load_pct.mean"] == round((9 + 6 + 6 + 5 + 4 + 8) / 6, 2)
    assert m["tegra.cpu_freq_mhz.mean"] == round((1190 * 5 + 1267) / 6, 1)
    assert m["tegra.power.vdd_cpu_gpu_cv.mean_mw"] == 738
    assert m["tegra.temp.max_c"] == 43.5


def test_agx_orin_jetpack6_format(tmp_path: Path) -> None:
    # 04-11-2025 10:36:27 RAM 4321/62801MB ... GR3D_FREQ 0%@[0,0] ... CV0@-256C CPU@44.562C
    # ... GPU@-256C tj@44.343C ... VDD_GPU_SOC 2340mW/2340mW ... NC 0mW/0mW ...
    result = parse(tmp_path, fixture("agx-orin-jp6.txt"))
    m = result.metrics
    assert m["tegra.samples"] == 1 and m["tegra.ram_used_mb.max"] == 4321
    assert m["tegra.cpu_load_pct.mean"] == 0 and m["tegra.cpu_freq_mhz.mean"] == 729
    assert m["tegra.gpu_load_pct.max"] == 0
    assert "tegra.gpu_freq_mhz.mean" not in m  # [0,0]: GPCs gated, no clock
    assert m["tegra.temp.tj.max_c"] == 44.343 and m["tegra.temp.max_c"] == 44.562
    assert "tegra.temp.gpu.max_c" not in m and "tegra.temp.cv0.max_c" not in m
    assert m["tegra.power.vdd_gpu_soc.mean_mw"] == 2340
    assert m["tegra.power.vin_sys_5v0.mean_mw"] == 4025
    assert m["tegra.power.vddq_vdd2_1v8ao.mean_mw"] == 301
    assert "tegra.power.nc.mean_mw" not in m
    assert "tegrastats temperature sensors off or invalid: cv0, cv1, cv2, gpu" in (
        result.data_quality
    )


def test_l4t28_format_over_two_samples(tmp_path: Path) -> None:
    # cpu [17%,13%,29%,5%]@408 EMC 1%@408 APE 25 GR3D 3%@76
    # cpu [17%,11%,65%,0%]@1734 EMC 1%@1600 APE 25 GR3D 39%@76
    m = parse(tmp_path, fixture("tx1-l4t28.txt")).metrics
    assert m["tegra.samples"] == 2
    assert m["tegra.ram_used_mb.max"] == 3607 and m["tegra.swap_used_mb.max"] == 873
    first, second = (17 + 13 + 29 + 5) / 4, (17 + 11 + 65 + 0) / 4
    assert m["tegra.cpu_load_pct.mean"] == round((first + second) / 2, 2)
    assert m["tegra.cpu_core_load_pct.max"] == 65
    assert m["tegra.cpu_freq_mhz.mean"] == (408 + 1734) / 2
    assert m["tegra.gpu_load_pct.mean"] == (3 + 39) / 2 and m["tegra.gpu_load_pct.max"] == 39
    assert m["tegra.emc_load_pct.mean"] == 1
    assert not any(k.startswith("tegra.temp.") or k.startswith("tegra.power.") for k in m)


# -- parse: damage and hostile input ---------------------------------------------------------


def test_a_cut_last_line_and_garbage_are_left_out_and_counted(tmp_path: Path) -> None:
    nano = fixture("nano-jp4.txt")
    text = nano + "garbage\n" + "RAM 9999/10MB nonsense\n" + nano[:60]
    result = parse(tmp_path, text)
    assert result.metrics["tegra.samples"] == 1
    assert "2 malformed lines in tegrastats output" in result.data_quality
    assert any("last line was incomplete" in note for note in result.data_quality)


@pytest.mark.parametrize("text", ["", "\n\n", b"\x00\xff\xfe"])
def test_empty_or_binary_output_gives_no_figures(tmp_path: Path, text: str | bytes) -> None:
    result = parse(tmp_path, text)
    assert result.metrics == {"tegra.samples": 0.0}
    assert "tegrastats printed no samples" in result.data_quality


def test_zone_and_rail_names_are_sanitized_and_capped(tmp_path: Path) -> None:
    zones = " ".join(f"Z{i}@{30 + i % 10}C" for i in range(tegrastats.MAX_NAMES + 8))
    line = f"RAM 1/2MB weird-Zone@41C {'A' * 50}@42C VDD_IN/X 5/5 {zones} VDD_IN 10mW/10mW\n"
    result = parse(tmp_path, line)
    m = result.metrics
    for key in m:
        parts = key.split(".")
        assert all(part.replace("_", "").isalnum() for part in parts), key
        assert all(len(part) <= tegrastats.MAX_NAME_LEN for part in parts), key
    assert m["tegra.temp.weird_zone.max_c"] == 41
    assert m["tegra.temp." + "a" * tegrastats.MAX_NAME_LEN + ".max_c"] == 42
    assert len([k for k in m if k.startswith("tegra.temp.") and k != "tegra.temp.max_c"]) == (
        tegrastats.MAX_NAMES
    )
    assert m["tegra.power.vdd_in.mean_mw"] == 10
    assert any("more than 32" in note for note in result.data_quality)


def test_out_of_range_loads_are_refused() -> None:
    output = tegrastats.parse_text("RAM 1/2MB CPU [500%@100] GR3D_FREQ 900%@1\n")
    assert output.samples[0].cpu_loads == [] and output.samples[0].gpu_load_pct is None
    assert output.malformed_lines == 1


def test_a_missing_output_file_gives_nothing(tmp_path: Path) -> None:
    result = tegrastats.parse(tmp_path, {}, campaign())
    assert result.metrics == {} and result.data_quality == []
