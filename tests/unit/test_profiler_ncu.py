"""ncu: planned only where its counters can be read, and its CSV read into per-metric means.

No real `ncu --csv` output was found for tests/fixtures/ncu/ yet (see SOURCES.md): the
parser tests below use rows written here in the layout of ncu's documented `details` and
`raw` pages, so they pin the parsing rules, not real ncu behaviour. Replace them with a
real log as soon as one is captured on a GPU host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator import profilers
from orchestrator.campaign.model import Campaign
from orchestrator.models import HostFacts
from orchestrator.profilers import ncu
from tests.support.profilers.nsys import facts

NCU = "/usr/local/cuda/bin/ncu"
HEADER = (
    '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
    '"Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit",'
    '"Metric Value"'
)


def row(launch: int, kernel: str, section: str, metric: str, unit: str, value: str) -> str:
    return (
        f'"{launch}","4242","python3","127.0.0.1","{kernel}","1","7","(256, 1, 1)",'
        f'"(64, 1, 1)","0","8.7","{section}","{metric}","{unit}","{value}"'
    )


def campaign(spec: dict[str, Any] | None = None, **target: Any) -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": "30s",
        "target": target or {"launch": {"command": ["./saxpy", "1024"]}},
        "profilers": {"ncu": spec or {}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


# --------------------------------------------------------------------------- plan


def test_registered_and_planned_with_csv_into_its_log_file() -> None:
    assert profilers.REGISTRY["ncu"] is ncu
    spec = {"kernel": "saxpy|gemm", "metrics": ["gpu__time_duration.sum"], "launch_count": 5}

    planned = ncu.plan(campaign(spec), facts(), None)

    assert planned.status == "planned", planned.reason
    assert planned.launch_argv == [
        NCU, "--csv", "--log-file", "{workdir}/ncu.csv", "--target-processes", "all",
        "--launch-count", "5", "--kernel-name", "regex:saxpy|gemm",
        "--metrics", "gpu__time_duration.sum", "--", "./saxpy", "1024",
    ]  # fmt: skip
    assert planned.outputs == ["ncu.csv"] and planned.argv == []


def test_a_section_set_is_passed_as_asked() -> None:
    planned = ncu.plan(campaign({"set": "basic"}), facts(), None)

    assert planned.launch_argv[planned.launch_argv.index("--set") + 1] == "basic"
    assert "--metrics" not in planned.launch_argv


@pytest.mark.parametrize(
    ("camp", "host", "expected"),
    [
        (campaign(attach={"pid": 42}), facts(), "cannot attach"),
        (campaign(), facts(tools={}), "ncu (the Nsight Compute CLI) was not found"),
        (campaign(), facts(gpu={}), "no NVIDIA driver"),
        (
            campaign(),
            facts(gpu={"nvidia_driver": True, "gpu_counters_admin_only": True}),
            "ERR_NVGPUCTRPERM",
        ),
    ],
)
def test_skipped_with_the_reason(camp: Campaign, host: HostFacts, expected: str) -> None:
    planned = ncu.plan(camp, host, None)

    assert planned.status == "skipped"
    assert planned.reason is not None and expected in planned.reason


def test_counter_permission_tells_how_to_fix_it_and_root_may_run() -> None:
    admin_only = {"nvidia_driver": True, "gpu_counters_admin_only": True}

    skipped = ncu.plan(campaign(), facts(gpu=admin_only), None)
    as_root = ncu.plan(campaign(), facts(gpu=admin_only, is_root=True), None)

    assert skipped.reason is not None
    assert "NVreg_RestrictProfilingToAdminUsers=0" in skipped.reason
    assert "root" in skipped.reason
    assert as_root.status == "planned"


# --------------------------------------------------------------------------- parse


def test_details_page_means_over_launches_with_units_normalized(tmp_path: Path) -> None:
    log = "\n".join(
        [
            "==PROF== Connected to process 4242 (/opt/app/saxpy)",
            '==PROF== Profiling "saxpy" - 0: 0%....50%....100% - 8 passes',
            HEADER,
            row(0, "saxpy(int, float, float *)", "Cmd", "gpu__time_duration.sum", "usecond",
                "1,205.00"),
            row(0, "saxpy(int, float, float *)", "Cmd", "dram__bytes.sum", "Mbyte", "2.50"),
            row(1, "saxpy(int, float, float *)", "Cmd", "gpu__time_duration.sum", "msecond",
                "1.50"),
            row(1, "saxpy(int, float, float *)", "Cmd", "dram__bytes.sum", "Kbyte", "500"),
            row(1, "saxpy(int, float, float *)", "Cmd", "sm__throughput.avg.pct", "%", "n/a"),
            "==PROF== Disconnected from process 4242",
        ]
    )  # fmt: skip
    (tmp_path / "ncu.csv").write_text(log + "\n")

    result = ncu.parse(tmp_path, {}, campaign())

    assert result.metrics["ncu.kernels.profiled"] == 2.0
    # (1205 us + 1.5 ms) / 2 in ns; (2.5 MB + 500 kB) / 2 in bytes
    assert result.metrics["ncu.gpu__time_duration.sum.mean"] == 1352500.0
    assert result.metrics["ncu.dram__bytes.sum.mean"] == 1500000.0
    assert "ncu.sm__throughput.avg.pct.mean" not in result.metrics
    assert result.tables["ncu_kernels"][0]["units"]["gpu__time_duration.sum"] == "ns"
    assert result.data_quality == []


def test_a_name_in_two_sections_gets_its_section_and_mixed_units_are_left_out() -> None:
    log = "\n".join(
        [
            HEADER,
            row(0, "k", "GPU Speed Of Light Throughput", "Memory Throughput", "%", "14.26"),
            row(0, "k", "Memory Workload Analysis", "Memory Throughput", "Gbyte/second", "1.5"),
            row(0, "k", "GPU Speed Of Light Throughput", "Duration", "usecond", "2.85"),
            row(1, "k", "GPU Speed Of Light Throughput", "Duration", "%", "3"),
        ]
    )

    out = ncu.parse_text(log + "\n")
    keys = ncu._keys(out.launches)

    assert keys[("GPU Speed Of Light Throughput", "Memory Throughput")] == (
        "gpu_speed_of_light_throughput.memory_throughput"
    )
    assert out.launches[0].values[("Memory Workload Analysis", "Memory Throughput")] == (
        1.5e9,
        "byte/s",
    )


def test_the_raw_page_with_its_units_row() -> None:
    log = "\n".join(
        [
            '"ID","Process ID","Process Name","Host Name","Kernel Name","gpu__time_duration.sum"',
            '"","","","","","nsecond"',
            '"0","1","app","h","k1","1,000"',
            '"1","1","app","h","k2","3,000"',
        ]
    )

    out = ncu.parse_text(log + "\n")

    assert out.page == "raw"
    assert [launch.values[("", "gpu__time_duration.sum")] for launch in out.launches] == [
        (1000.0, "ns"),
        (3000.0, "ns"),
    ]


def test_permission_error_is_explained(tmp_path: Path) -> None:
    (tmp_path / "ncu.csv").write_text(
        "==PROF== Connected to process 4242\n"
        "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA "
        "GPU Performance Counters on the target device 0.\n"
    )

    result = ncu.parse(tmp_path, {}, campaign())

    assert result.metrics == {"ncu.kernels.profiled": 0.0}
    assert any("NVreg_RestrictProfilingToAdminUsers=0" in n for n in result.data_quality)


def test_a_cut_log_and_short_rows_are_noted(tmp_path: Path) -> None:
    rows = [row(0, "k", "S", "m__a.sum", "", "1"), '"1","2"', row(1, "k", "S", "m__a.sum", "", "3")]
    log = "\n".join([HEADER, *rows])
    (tmp_path / "ncu.csv").write_text(log[:-5])

    result = ncu.parse(tmp_path, {}, campaign())

    assert result.metrics["ncu.m__a.sum.mean"] == 1.0
    assert any("was cut" in n for n in result.data_quality)
    assert any("1 malformed rows" in n for n in result.data_quality)


def test_no_output_file_gives_nothing(tmp_path: Path) -> None:
    assert ncu.parse(tmp_path, {}, campaign()).metrics == {}


def test_short_unit_spellings_convert_like_the_long_ones() -> None:
    """Newer ncu releases print `ns`/`us`/`ms`, `KB`/`MB`, `GB/s`, `Ghz`: one launch in
    `us` and another in `ms` must still average in one unit, not be left out as mixed."""
    log = "\n".join(
        [
            HEADER,
            row(0, "k(float *)", "Cmd", "gpu__time_duration.sum", "us", "2.00"),
            row(0, "k(float *)", "Cmd", "dram__bytes.sum", "KB", "4.00"),
            row(0, "k(float *)", "Cmd", "dram__throughput.sum", "GB/s", "1.50"),
            row(0, "k(float *)", "Cmd", "gpc__cycles_elapsed.avg.per_second", "Ghz", "1.41"),
            row(1, "k(float *)", "Cmd", "gpu__time_duration.sum", "ms", "0.004"),
            row(1, "k(float *)", "Cmd", "dram__bytes.sum", "MB", "0.002"),
            row(1, "k(float *)", "Cmd", "dram__throughput.sum", "Gbyte/second", "0.50"),
            row(1, "k(float *)", "Cmd", "gpc__cycles_elapsed.avg.per_second", "cycle/nsecond",
                "1.39"),
        ]
    )  # fmt: skip
    output = ncu.parse_text(log + "\n")
    units = {unit for launch in output.launches for _value, unit in launch.values.values()}
    assert units == {"ns", "byte", "byte/s", "hz"}
    first, second = (launch.values for launch in output.launches)
    assert first[("Cmd", "gpu__time_duration.sum")][0] == 2000.0
    assert second[("Cmd", "gpu__time_duration.sum")][0] == 4000.0
    assert first[("Cmd", "dram__bytes.sum")][0] == 4000.0
    assert second[("Cmd", "dram__throughput.sum")][0] == 0.5e9
    assert first[("Cmd", "gpc__cycles_elapsed.avg.per_second")][0] == 1.41e9
