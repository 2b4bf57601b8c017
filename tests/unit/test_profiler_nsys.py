"""nsys: planned only for a launched command on a host with Nsight Systems and a driver,
and its `nsys stats` CSVs read into GPU kernel and CUDA API totals.

The expected figures are sums over the fixture lines (real `nsys stats --format csv`
output of Nsight Systems 2024.6.2, see tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator import profilers
from orchestrator.campaign.model import Campaign
from orchestrator.models import HostFacts
from orchestrator.profilers import nsys
from orchestrator.stages.plan import make_plan
from tests.support.paths import FIXTURES as _FIXTURES
from tests.support.profilers.nsys import NSYS, facts

FIXTURES = _FIXTURES / "nsys"
KERN = FIXTURES / "cuda_gpu_kern_sum.nsys-2024.6.2.csv"
API = FIXTURES / "cuda_api_sum.nsys-2024.6.2.csv"


def campaign(profilers_: dict[str, Any] | None = None, **target: Any) -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": "30s",
        "target": target or {"launch": {"command": ["python3", "infer.py", "--batch", "8"]}},
        "profilers": profilers_ if profilers_ is not None else {"nsys": {}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


def session(tmp_path: Path, **files: Path) -> Path:
    for name, source in files.items():
        shutil.copy(source, tmp_path / name)
    return tmp_path


# --------------------------------------------------------------------------- plan


def test_registered_and_planned_with_the_documented_argv() -> None:
    assert profilers.REGISTRY["nsys"] is nsys
    planned = nsys.plan(campaign({"nsys": {"trace": ["cuda", "osrt"]}}), facts(), None)

    assert planned.status == "planned", planned.reason
    assert planned.argv == []
    assert planned.launch_argv == [
        NSYS, "profile", "--output", "{workdir}/nsys-report", "--force-overwrite", "true",
        "--trace", "cuda,osrt", "--duration", "30",
        "--", "python3", "infer.py", "--batch", "8",
    ]  # fmt: skip
    assert "nsys-report.nsys-rep" not in planned.outputs
    assert set(planned.outputs) == set(nsys.CSV_OUTPUTS)
    assert planned.options["discard"] == ["nsys-report.sqlite", "nsys-report.nsys-rep"]
    assert planned.options["optional_outputs"] == nsys.CSV_OUTPUTS


def test_stats_run_on_the_device_new_report_names_first_old_ones_as_fallback() -> None:
    planned = nsys.plan(campaign(), facts(), None)

    reports = [argv[argv.index("--report") + 1] for argv in planned.post_argv]
    assert reports == ["cuda_gpu_kern_sum", "gpukernsum", "cuda_api_sum", "cudaapisum",
                       "osrt_sum", "osrtsum", "nvtx_sum", "nvtxsum"]  # fmt: skip
    assert planned.options["post_fallback"] == [1, 3, 5, 7]
    for argv in planned.post_argv:
        assert argv[:2] == [NSYS, "stats"]
        assert argv[argv.index("--format") + 1] == "csv"
        assert argv[argv.index("--output") + 1] == "nsys-stats"
        assert argv[-1] == "nsys-report.nsys-rep"
    # nsys stats --output PREFIX writes PREFIX_<report>.csv: every one is a declared output.
    assert {f"nsys-stats_{name}.csv" for name in reports} == set(planned.outputs)


def test_keep_report_brings_the_report_back_and_does_not_discard_it() -> None:
    planned = nsys.plan(campaign({"nsys": {"keep_report": True}}), facts(), None)

    assert "nsys-report.nsys-rep" in planned.outputs
    assert "nsys-report.nsys-rep" not in planned.options["optional_outputs"]
    assert planned.options["discard"] == ["nsys-report.sqlite"]
    assert planned.max_bytes == nsys.REPORT_MAX_BYTES


@pytest.mark.parametrize(
    ("camp", "host", "expected"),
    [
        (campaign(attach={"process": "infer"}), facts(), "cannot attach"),
        (campaign(), facts(tools={}), "nsys (the Nsight Systems CLI) was not found"),
        (campaign(), facts(gpu={}), "no NVIDIA driver"),
        (campaign(), facts(gpu={"nvidia_driver": False}), "no NVIDIA driver"),
        (campaign({"py-spy": {}, "nsys": {}}), facts(), "py-spy does"),
    ],
)
def test_skipped_with_the_reason(camp: Campaign, host: HostFacts, expected: str) -> None:
    planned = nsys.plan(camp, host, None)

    assert planned.status == "skipped"
    assert planned.reason is not None and expected in planned.reason
    assert planned.launch_argv == [] and planned.post_argv == []


def test_the_session_plan_carries_the_post_steps_and_nsys_launches() -> None:
    plan = make_plan(campaign(), facts(), "20261125-111500-ab12", {}, t0=1795000000.0)

    (entry,) = plan.profilers
    assert entry.name == "nsys" and entry.status == "planned"
    assert len(entry.post_argv) == 8
    assert plan.target.mode == "launch"
    assert plan.to_dict()["profilers"][0]["post_argv"] == entry.post_argv


# --------------------------------------------------------------------------- parse


def test_kernel_and_api_summaries_of_nsys_2024() -> None:
    kern = nsys.parse_summary(KERN.read_text())
    api = nsys.parse_summary(API.read_text())

    assert len(kern.rows) == 15 and kern.malformed_rows == 0 and not kern.cut
    assert kern.rows[0].name == "flash_attention_prefill_f16"
    assert kern.rows[0].total_ns == 99385786
    assert kern.rows[0].count == 32
    assert kern.rows[0].avg_ns == 3105805.8 and kern.rows[0].med_ns == 3041179.0
    assert len(api.rows) == 11
    assert api.rows[0].name == "cuMemcpyHtoD_v2" and api.rows[0].count == 293


def test_parse_reads_the_new_names_into_metrics_and_tables(tmp_path: Path) -> None:
    directory = session(
        tmp_path,
        **{"nsys-stats_cuda_gpu_kern_sum.csv": KERN, "nsys-stats_cuda_api_sum.csv": API},
    )

    result = nsys.parse(directory, {}, campaign())

    # 99385786 + 37727461 + ... + 1632 ns over the 15 kernel rows
    assert result.metrics["nsys.gpu_kernel_time_ms.total"] == 198.511027
    assert result.metrics["nsys.gpu_kernel.launches"] == 679.0
    assert result.metrics["nsys.kernels.distinct"] == 15.0
    assert result.metrics["nsys.top_kernel_pct"] == 50.07  # 99385786 / 198511027
    assert result.metrics["nsys.cuda_api_time_ms.total"] == 2176.47803
    assert result.metrics["nsys.cuda_api.calls"] == 1979.0
    assert "nsys.osrt_time_ms.total" not in result.metrics
    kernels = result.tables["gpu_kernels"]
    assert len(kernels) == 10
    assert kernels[0] == {
        "name": "flash_attention_prefill_f16",
        "total_ms": 99.385786,
        "count": 32,
        "avg_us": 3105.806,
        "med_us": 3041.179,
        "pct": 50.07,
    }
    assert [row["name"] for row in result.tables["cuda_api"][:3]] == [
        "cuMemcpyHtoD_v2",
        "cuModuleLoadData",
        "cuLaunchKernel",
    ]
    assert result.data_quality == []


def test_the_old_report_names_are_read_when_the_new_ones_are_missing(tmp_path: Path) -> None:
    directory = session(tmp_path, **{"nsys-stats_gpukernsum.csv": KERN})

    result = nsys.parse(directory, {}, campaign())

    assert result.metrics["nsys.kernels.distinct"] == 15.0


def test_no_kernel_summary_is_said_not_reported_as_zero(tmp_path: Path) -> None:
    result = nsys.parse(tmp_path, {}, campaign())

    assert "nsys.gpu_kernel_time_ms.total" not in result.metrics
    assert any("no GPU kernel summary" in note for note in result.data_quality)


def test_older_column_names_quoting_and_preamble() -> None:
    # The column set of the reports before 2023 ("Time(%)", "Average", no median), quoted
    # cells, a name with commas and a preamble line: the parser must find each column.
    header = '"Time(%)","Total Time (ns)","Instances","Average","Minimum","Maximum","Name"\n'
    text = "Processing report\n\n" + header + '"60.0","3,000","2","1,500.0","1","2","k(a, b)"\n'

    summary = nsys.parse_summary(text)

    (row,) = summary.rows
    assert (row.name, row.total_ns, row.count, row.avg_ns, row.med_ns) == (
        "k(a, b)",
        3000.0,
        2,
        1500.0,
        None,
    )


def test_a_cut_file_drops_its_last_line_and_says_so(tmp_path: Path) -> None:
    text = KERN.read_text()
    cut = text[: text.index("rope_f16") + 4]  # mid-name: "rope"
    (tmp_path / "nsys-stats_cuda_gpu_kern_sum.csv").write_text(cut)

    result = nsys.parse(tmp_path, {}, campaign())

    assert result.metrics["nsys.kernels.distinct"] == 9.0
    assert any("was cut" in note for note in result.data_quality)


def test_missing_columns_and_junk_rows_are_notes_not_crashes(tmp_path: Path) -> None:
    (tmp_path / "nsys-stats_cuda_gpu_kern_sum.csv").write_text(
        "Time (%),Total Time (ns),Instances\n1,2,3\n"
    )
    (tmp_path / "nsys-stats_cuda_api_sum.csv").write_text(
        API.read_text() + "x,not-a-number,1,1,1,1,1,1,cuBroken\n3,4\n"
    )

    result = nsys.parse(tmp_path, {}, campaign())

    assert "nsys.gpu_kernel_time_ms.total" not in result.metrics
    assert any("lacks the column(s) Name" in note for note in result.data_quality)
    assert result.metrics["nsys.cuda_api.calls"] == 1979.0
    assert any("2 malformed rows" in note for note in result.data_quality)
