"""nsys's NVTX side: the range summary (`nsys stats --report nvtx_sum`, `nvtxsum` before
2023) read into the `nvtx_ranges` table and the `nsys.nvtx.*` metrics, and the campaign's
`pytorch:` key (`nsys profile --pytorch=MODE`, dropped on the device where its nsys lacks it).

The fixture is real `nsys stats --format csv` NVTX output (tests/fixtures/SOURCES.md): the
push/pop summary, which has no Style column. Rows that test the Style column, odd names and
cut files are written here and say so.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign.model import Campaign
from orchestrator.profilers import nsys
from tests.support.paths import FIXTURES
from tests.support.profilers.nsys import NSYS, facts
from tests.unit.test_campaign import error_for

PUSHPOP = FIXTURES / "nsys" / "nvtx_pushpop_sum.llm-perf-opt.csv"
NVTX_CSV = "nsys-stats_nvtx_sum.csv"
# Written here, not captured: the 2023+ nvtx_sum header (as nsys's nvtx_sum.py names its
# columns, see SOURCES.md) with a Style column, a start/end range and a name with a comma.
WRITTEN = (
    "Processing [report.sqlite] with [nvtx_sum.py]... \n"
    "Time (%),Total Time (ns),Instances,Avg (ns),Med (ns),Min (ns),Max (ns),StdDev (ns),"
    "Style,Range\n"
    "60.0,6000,3,2000.0,2000.0,1000,3000,1000.0,PushPop,:step\n"
    '40.0,4000,1,4000.0,4000.0,4000,4000,0.0,StartEnd,"load, decode"\n'
)


def campaign(nsys_spec: dict[str, Any] | None = None) -> Campaign:
    return Campaign.from_mapping(
        {
            "name": "unit",
            "duration": "30s",
            "target": {"launch": {"command": ["python3", "train.py"]}},
            "profilers": {"nsys": nsys_spec or {}},
        },
        source=Path("unit.yml"),
    )


# --------------------------------------------------------------------------- parse


def test_the_real_push_pop_summary_is_read_without_a_style_column() -> None:
    summary = nsys.parse_summary(PUSHPOP.read_text())

    assert [row.name for row in summary.rows] == [
        ":decode",
        ":prefill",
        ":sam",
        ":clip",
        ":projector",
    ]
    sam = summary.rows[2]
    assert (sam.total_ns, sam.count, sam.avg_ns, sam.med_ns) == (
        401811376.0,
        4,
        100452844.0,
        22405077.0,
    )
    assert (sam.min_ns, sam.max_ns, sam.style) == (17208883.0, 339792339.0, None)
    assert summary.malformed_rows == 0 and not summary.cut


def test_parse_reads_the_nvtx_summary_into_a_table_and_metrics(tmp_path: Path) -> None:
    shutil.copy(PUSHPOP, tmp_path / NVTX_CSV)

    result = nsys.parse(tmp_path, {}, campaign())

    # 2782360479 + 874354275 + 401811376 + 164658307 + 416739 ns over the five ranges
    assert result.metrics["nsys.nvtx.ranges"] == 5.0
    assert result.metrics["nsys.nvtx.instances"] == 14.0  # 1 + 1 + 4 + 4 + 4
    # 2782360479 / 4223601176 (nsys itself says 65.9)
    assert result.metrics["nsys.nvtx.top_range_pct"] == 65.88
    first, *_, last = result.tables[nsys.NVTX_TABLE]
    assert first == {
        "name": ":decode",
        "style": None,
        "count": 1,
        "total_ms": 2782.360479,
        "avg_us": 2782360.479,
        "med_us": 2782360.479,
        "min_us": 2782360.479,
        "max_us": 2782360.479,
        "pct": 65.88,
    }
    assert last["name"] == ":projector" and last["min_us"] == 71.229
    # The kernel summary is missing here, and said to be; the NVTX side adds no note.
    assert [n for n in result.data_quality if "NVTX" in n or "nvtx" in n] == []


def test_the_old_report_name_is_read_when_the_new_one_is_missing(tmp_path: Path) -> None:
    shutil.copy(PUSHPOP, tmp_path / "nsys-stats_nvtxsum.csv")

    result = nsys.parse(tmp_path, {}, campaign())

    assert result.metrics["nsys.nvtx.ranges"] == 5.0


def test_style_column_and_a_quoted_name_with_a_comma() -> None:
    summary = nsys.parse_summary(WRITTEN)

    assert [(row.name, row.style, row.count) for row in summary.rows] == [
        (":step", "PushPop", 3),
        ("load, decode", "StartEnd", 1),
    ]


def test_control_characters_in_range_names_are_made_visible_and_names_capped() -> None:
    # Written here: a range name is the program's own string and may hold anything.
    text = WRITTEN.replace(":step", "\x1b[31mred\x07").replace(
        '"load, decode"', "x" * (nsys.NAME_MAX + 50)
    )

    summary = nsys.parse_summary(text)

    assert summary.rows[0].name == "\u241b[31mred\u2407"
    assert summary.rows[1].name == "x" * nsys.NAME_MAX


def test_a_cut_nvtx_file_keeps_its_whole_rows_and_says_so(tmp_path: Path) -> None:
    text = PUSHPOP.read_text()
    (tmp_path / NVTX_CSV).write_text(text[: text.index(":projector") + 4])

    result = nsys.parse(tmp_path, {}, campaign())

    assert result.metrics["nsys.nvtx.ranges"] == 4.0
    assert "nsys nvtx_sum was cut: its last rows are missing" in result.data_quality


def test_no_nvtx_summary_gives_no_nvtx_metric(tmp_path: Path) -> None:
    result = nsys.parse(tmp_path, {}, campaign())

    assert not [key for key in result.metrics if key.startswith("nsys.nvtx")]
    assert nsys.NVTX_TABLE not in result.tables


# --------------------------------------------------------------------------- pytorch


def test_without_pytorch_the_argv_has_no_pytorch_flag_and_nothing_to_check() -> None:
    planned = nsys.plan(campaign(), facts(), None)

    assert not [arg for arg in planned.launch_argv if arg.startswith("--pytorch")]
    assert "flag_check" not in planned.options
    # nvtx is traced by default: a program's own ranges reach the summary.
    assert planned.launch_argv[planned.launch_argv.index("--trace") + 1] == "cuda,nvtx,osrt"


@pytest.mark.parametrize("mode", ["autograd-nvtx", "autograd-shapes-nvtx"])
def test_pytorch_adds_the_flag_and_the_device_check(mode: str) -> None:
    planned = nsys.plan(campaign({"pytorch": mode}), facts(), None)

    assert planned.launch_argv == [
        NSYS, "profile", "--output", "{workdir}/nsys-report", "--force-overwrite", "true",
        "--trace", "cuda,nvtx,osrt", f"--pytorch={mode}", "--duration", "30",
        "--", "python3", "train.py",
    ]  # fmt: skip
    assert planned.options["flag_check"] == {
        "flag": f"--pytorch={mode}",
        "help_argv": [NSYS, "profile", "--help"],
        "needle": "--pytorch",
    }


def test_pytorch_traces_nvtx_even_where_the_trace_list_leaves_it_out() -> None:
    planned = nsys.plan(campaign({"pytorch": "autograd-nvtx", "trace": ["cuda"]}), facts(), None)

    assert planned.launch_argv[planned.launch_argv.index("--trace") + 1] == "cuda,nvtx"


def test_pytorch_none_is_the_default_spelled_out() -> None:
    assert nsys.pytorch_flag(campaign({"pytorch": "none"}).profilers.nsys) is None  # type: ignore[arg-type]


def test_a_run_without_the_flag_says_why(tmp_path: Path) -> None:
    camp = campaign({"pytorch": "autograd-nvtx"})
    ran = nsys.plan(camp, facts(), None).launch_argv
    dropped = [arg for arg in ran if not arg.startswith("--pytorch")]

    with_flag = nsys.parse(tmp_path, {"argv": ran}, camp)
    without = nsys.parse(tmp_path, {"argv": dropped}, camp)
    not_started = nsys.parse(tmp_path, {"argv": []}, camp)

    note = nsys.PYTORCH_DROPPED.format(flag="--pytorch=autograd-nvtx")
    assert note not in with_flag.data_quality and note not in not_started.data_quality
    assert note in without.data_quality
    assert note.startswith("nsys ran without --pytorch=autograd-nvtx: the device's `nsys")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("autograd", "pytorch"),
        ("true", "pytorch"),
        ("[autograd-nvtx]", "pytorch"),
        ("functions-trace", "pytorch"),
    ],
)
def test_a_bad_pytorch_value_names_the_file_and_key(tmp_path: Path, value: str, says: str) -> None:
    text = (
        "name: t\nduration: 5s\ntarget: {launch: {command: [python3, t.py]}}\n"
        f"profilers:\n  nsys:\n    pytorch: {value}\n"
    )

    path, message = error_for(tmp_path, text)

    assert f"{path}:6:" in message and "profilers.nsys.pytorch" in message, message
    assert "autograd-nvtx" in message and "Traceback" not in message
