"""strace (orchestrator/profilers/strace.py): its plan, the ptrace rule beside py-spy, and
its parser fed real `strace -c -f` summaries (tests/fixtures/strace, SOURCES.md) and
garbage; the syscall matrix in report.json, report.html and summary.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device import arguments
from fleetprof_device.contract import STOP_AT_DEADLINE_OPTION
from fleetprof_device.errors import InvocationError
from orchestrator.analysis.directions import BOTH, LOWER, SKIP, direction, rule_for
from orchestrator.analysis.fleet import HostView, build_report
from orchestrator.profilers import strace
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from orchestrator.stages.plan import make_plan
from tests.support.factories import TOOL, campaign, host_facts
from tests.support.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "strace"
STRACE = "/usr/bin/strace"
LAUNCH = {"launch": {"command": ["python3", "app.py"]}}
META = {"campaign": "c", "run_id": "r", "started_at": "t", "duration_s": 2.0, "mode": "attach"}


def facts(**overrides: Any):
    return host_facts(**{"tools": {"strace": STRACE}, **overrides})


def plans(profilers: dict[str, Any], target: dict[str, Any] | None = None, **fact: Any):
    chosen = campaign(profilers=profilers, **({"target": target} if target else {}))
    plan = make_plan(chosen, facts(**fact), "r", TOOL, t0=0.0)
    return {p.name: p for p in plan.profilers}, plan


# -- plan ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [None, LAUNCH])
def test_strace_attaches_by_pid_counts_follows_and_stops_at_the_deadline(target) -> None:
    by_name, plan = plans({"strace": {}}, target)
    entry = by_name["strace"]
    assert entry.status == "planned"
    assert entry.argv == [STRACE, "-c", "-f", "-w", "-o", "strace.txt", "-p", "{pid}"]
    assert entry.options == {STOP_AT_DEADLINE_OPTION: True}
    assert entry.outputs == ["strace.txt"] and not entry.launch_argv
    assert plan.tools == {} and not plan.target.via_profiler


def test_the_device_accepts_the_plan_and_only_a_boolean_stop_at_deadline() -> None:
    _, made = plans({"strace": {}, "system": {}}, LAUNCH)
    plan = json.loads(json.dumps(made.to_dict()))
    arguments.validate_plan(plan)
    entry = next(p for p in plan["profilers"] if p["name"] == "strace")
    entry["options"][STOP_AT_DEADLINE_OPTION] = "yes"
    with pytest.raises(InvocationError) as error:
        arguments.validate_plan(plan)
    assert "options.stop_at_deadline must be true or false" in str(error.value)


def test_time_system_drops_w() -> None:
    by_name, _ = plans({"strace": {"time": "system"}})
    assert "-w" not in by_name["strace"].argv and "-c" in by_name["strace"].argv


def test_missing_strace_is_skipped_with_the_package_to_install() -> None:
    by_name, _ = plans({"strace": {}}, tools={})
    assert by_name["strace"].status == "skipped"
    assert by_name["strace"].reason == strace.NOT_INSTALLED
    assert by_name["strace"].options == {"install_package": "strace"}


@pytest.mark.parametrize("target", [None, LAUNCH])
def test_no_ptrace_permission_skips_strace_even_for_a_launched_program(target) -> None:
    by_name, _ = plans(
        {"strace": {}}, target, ptrace_scope=1, can_attach=False, attach_reason="scope 1"
    )
    assert by_name["strace"].status == "skipped"
    assert by_name["strace"].reason == strace.NOT_PERMITTED.format(1)
    assert "ptrace_scope=1 and no CAP_SYS_PTRACE" in str(by_name["strace"].reason)


def test_ptrace_scope_3_skips_strace_even_for_root() -> None:
    by_name, _ = plans({"strace": {}}, LAUNCH, ptrace_scope=3, can_attach=False, is_root=True)
    assert by_name["strace"].reason == strace.NO_PTRACE


def test_a_probe_target_has_no_process_to_trace() -> None:
    by_name, _ = plans({"strace": {}}, {"probe": ["cpu"]})
    assert by_name["strace"].reason == strace.NO_PROCESS


def test_a_blocking_pyspy_runs_and_strace_is_skipped_with_the_reason() -> None:
    by_name, _ = plans({"py-spy": {}, "strace": {}})
    assert by_name["py-spy"].status == "planned"
    assert by_name["strace"].status == "skipped"
    assert by_name["strace"].reason == strace.NOT_BESIDE_BLOCKING_PYSPY
    # The same whichever is listed first.
    by_name, _ = plans({"strace": {}, "py-spy": {}})
    assert (by_name["py-spy"].status, by_name["strace"].status) == ("planned", "skipped")


def test_a_nonblocking_pyspy_runs_beside_strace() -> None:
    by_name, _ = plans({"py-spy": {"nonblocking": True}, "strace": {}})
    assert by_name["py-spy"].status == by_name["strace"].status == "planned"
    assert "--nonblocking" in by_name["py-spy"].argv


def test_a_pyspy_the_host_skips_leaves_strace_alone() -> None:
    # ptrace_scope=1 in launch mode: py-spy starts the command (it may not attach); strace
    # is skipped for its own reason, not py-spy's.
    by_name, _ = plans({"py-spy": {}, "strace": {}}, LAUNCH, ptrace_scope=1, can_attach=False)
    assert by_name["strace"].reason == strace.NOT_PERMITTED.format(1)
    # No py-spy binary for the host: py-spy is skipped, strace runs.
    chosen = campaign(profilers={"py-spy": {}, "strace": {}})
    plan = make_plan(chosen, facts(), "r", {}, t0=0.0)
    by_name = {p.name: p for p in plan.profilers}
    assert (by_name["py-spy"].status, by_name["strace"].status) == ("skipped", "planned")


# -- parser: real output ------------------------------------------------------------------------


def test_real_summary_with_errors_and_wall_time() -> None:
    out = strace.parse_text((FIXTURES / "c-f-w.txt").read_text())
    assert out.total_line and out.malformed_lines == 0 and out.dropped_rows == 0
    rows = {s.name: s for s in out.rows}
    assert list(rows) == ["clock_nanosleep", "futex", "getppid", "pwrite64", "newfstatat"]
    assert (rows["getppid"].calls, rows["getppid"].errors) == (10258, 0)
    assert (rows["futex"].calls, rows["futex"].errors, rows["futex"].seconds) == (
        5496,
        503,
        0.530216,
    )
    assert rows["newfstatat"].errors == rows["newfstatat"].calls == 1311  # ENOENT, every one
    # The sums are strace's own total row: 28634 calls, 1814 errors, 2.801771 s.
    assert sum(s.calls for s in out.rows) == 28634
    assert sum(s.errors for s in out.rows) == 1814
    assert sum(s.seconds for s in out.rows) == pytest.approx(2.801771, abs=1e-5)  # rounded rows
    assert rows["clock_nanosleep"].time_pct == pytest.approx(52.29, abs=0.01)
    assert rows["clock_nanosleep"].usecs_per_call == pytest.approx(1116, abs=1)


def test_real_summary_of_system_time_parses_alike() -> None:
    out = strace.parse_text((FIXTURES / "c-f.txt").read_text())
    assert out.total_line and out.malformed_lines == 0
    assert sum(s.calls for s in out.rows) == 22239 and sum(s.errors for s in out.rows) == 1689


def test_real_summary_with_children_followed() -> None:
    out = strace.parse_text((FIXTURES / "c-f-w.children.txt").read_text())
    rows = {s.name: s for s in out.rows}
    assert len(rows) == 27 and out.malformed_lines == 0
    assert rows["execve"].calls == 30 and rows["execve"].errors == 28  # PATH search for sleep
    assert rows["vfork"].calls == 2 and rows["wait4"].calls == 2
    assert sum(s.calls for s in out.rows) == 105652


def test_an_idle_target_leaves_an_empty_file_and_a_note(tmp_path: Path) -> None:
    assert (FIXTURES / "c-f-w.idle.txt").read_bytes() == b""
    (tmp_path / "strace.txt").write_bytes(b"")
    result = strace.parse(tmp_path, {}, campaign())
    assert result.metrics == {} and result.data_quality == [strace.NO_CALLS]


def test_parse_gives_the_table_and_metrics_over_the_time_attached(tmp_path: Path) -> None:
    (tmp_path / "strace.txt").write_bytes((FIXTURES / "c-f-w.txt").read_bytes())
    entry = {"started_at_device": 100.0, "stopped_at_device": 102.0}
    result = strace.parse(tmp_path, entry, campaign())
    m = result.metrics
    assert result.data_quality == []
    assert m["strace.calls"] == 28634 and m["strace.errors"] == 1814
    assert m["strace.calls_per_s"] == pytest.approx(28634 / 2.0)
    assert m["strace.error_pct"] == pytest.approx(100 * 1814 / 28634, abs=0.001)
    assert m["strace.time_s"] == pytest.approx(2.801771)
    assert m["strace.syscalls"] == 5 and m["strace.traced_s"] == 2.0
    assert m["strace.syscall.getppid.calls_per_s"] == pytest.approx(10258 / 2.0)
    assert m["strace.syscall.futex.usecs_per_call"] == pytest.approx(
        1e6 * 0.530216 / 5496, abs=0.001
    )
    per_syscall = {k for k in m if k.startswith("strace.syscall.")}
    assert len(per_syscall) == 2 * strace.METRIC_SYSCALLS
    table = result.tables[strace.TABLE]
    assert table[0] == {
        "syscall": "clock_nanosleep",
        "calls": 1312,
        "calls_per_s": 656.0,
        "errors": 0,
        "seconds": 1.465124,
        "usecs_per_call": pytest.approx(1116.710, abs=0.001),
        "time_pct": 52.29,
    }


def test_not_permitted_on_the_device_is_a_note(tmp_path: Path) -> None:
    (tmp_path / "strace.txt").write_bytes(b"")
    said = "strace: attach: ptrace(PTRACE_SEIZE, 13749): Operation not permitted"
    result = strace.parse(tmp_path, {"stderr_tail": said}, campaign())
    assert result.data_quality == [strace.NOT_PERMITTED_ON_DEVICE]
    # No file at all (exit before -o was opened): the same note, nothing else.
    result = strace.parse(tmp_path / "none", {"stderr_tail": said}, campaign())
    assert result.data_quality == [strace.NOT_PERMITTED_ON_DEVICE]


# -- parser: untrusted text ----------------------------------------------------------------------


def test_garbage_markup_and_odd_names_are_malformed_lines_never_rows() -> None:
    text = (FIXTURES / "c-f-w.txt").read_text()
    text += "\x00\xff garbage\n 1.0 0.1 1 5 <script>alert(1)</script>\n"
    text += " 1.0 0.1 1 5 2 a.b\n 1.0 0.1 1 -5 x\n 1e9 1 1 1 1 y\n" + "9" * 5000 + "\n"
    out = strace.parse_text(text)
    assert {s.name for s in out.rows} == {
        "clock_nanosleep",
        "futex",
        "getppid",
        "pwrite64",
        "newfstatat",
    }
    assert out.malformed_lines == 6


def test_numbers_too_long_to_be_counts_are_malformed_not_a_crash() -> None:
    digits = "9" * 5000
    text = f" 1.0 0.1 1 {digits} 0 read\n {digits}.0 0.1 1 5 0 write\n 1.0 0.1 1 5 {digits} x\n"
    out = strace.parse_text(text + " 1.0 0.5 1 999999999999999 0 ok\n")
    assert [s.name for s in out.rows] == ["ok"] and out.malformed_lines == 3


def test_rows_are_capped_and_a_cut_table_says_so(tmp_path: Path) -> None:
    rows = "".join(f"  0.00 0.000001 1 1 0 sys{i}\n" for i in range(strace.MAX_ROWS + 50))
    out = strace.parse_text(rows)
    assert len(out.rows) == strace.MAX_ROWS and out.dropped_rows == 50 and not out.total_line
    (tmp_path / "strace.txt").write_text(rows)
    result = strace.parse(tmp_path, {}, campaign())
    assert any("more than 1000 syscalls" in n for n in result.data_quality)
    assert any("no total row" in n for n in result.data_quality)


def test_a_file_over_the_cap_is_read_to_the_cap(tmp_path: Path) -> None:
    line = b"  0.00 0.000001 1 1 0 getpid\n"
    (tmp_path / "strace.txt").write_bytes(line * (strace.MAX_BYTES // len(line) + 100))
    result = strace.parse(tmp_path, {}, campaign())
    assert f"strace output was cut at {strace.MAX_BYTES} bytes" in result.data_quality
    assert result.metrics["strace.syscalls"] == 1


def test_tables_of_two_modes_are_summed_by_name() -> None:
    text = (
        "System call usage summary for 32 bit mode:\n"
        "% time     seconds  usecs/call     calls    errors syscall\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        "100.00    0.000010           5         2         1 read\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        "100.00    0.000010           5         2         1 total\n"
        "System call usage summary for 64 bit mode:\n"
        "% time     seconds  usecs/call     calls    errors syscall\n"
        "100.00    0.000030          10         3           read\n"
        "100.00    0.000030          10         3           total\n"
    )
    [read] = strace.parse_text(text).rows
    assert (read.calls, read.errors, read.seconds) == (5, 1, pytest.approx(0.00004))
    assert read.usecs_per_call == pytest.approx(8.0)


# -- across hosts -------------------------------------------------------------------------------


def _host(name: str, model: str, per_s: dict[str, float]) -> HostView:
    rows = [{"syscall": s, "calls_per_s": v} for s, v in per_s.items()]
    return HostView(name, model, "x86_64", "ok", tables={strace.TABLE: rows})


def test_the_syscall_matrix_in_report_json_html_and_markdown() -> None:
    hosts = [
        _host("a", "pi", {"futex": 100.0, "read": 5.0}),
        _host("b", "pi", {"futex": 90.0, "<b>x": 1.0}),
        _host("c", "orin", {"epoll_wait": 300.0}),
    ]
    report = build_report(META, hosts)
    matrix = report["strace_syscall_matrix"]
    assert matrix["hosts"] == ["c", "a", "b"] or matrix["hosts"] == ["a", "b", "c"]
    names = [f["function"] for f in matrix["functions"]]
    assert names[:2] == ["epoll_wait", "futex"] and all(
        f["file"] is None for f in matrix["functions"]
    )
    column = matrix["hosts"].index("a")
    assert matrix["cells"][names.index("futex")][column] == 100.0
    assert matrix["cells"][names.index("epoll_wait")][column] is None
    html = render_html(report)
    assert "strace: system calls across hosts" in html and 'id="strace-matrix"' in html
    assert "<b>x" not in html and "&lt;b&gt;x" in html
    md = render_markdown(report)
    assert "## strace: system calls per host" in md
    assert "| syscall |" in md and "| futex |" in md


def test_each_hosts_syscall_table_in_report_html(tmp_path: Path) -> None:
    (tmp_path / "strace.txt").write_bytes((FIXTURES / "c-f-w.txt").read_bytes())
    parsed = strace.parse(
        tmp_path, {"started_at_device": 0.0, "stopped_at_device": 2.0}, campaign()
    )
    rows = [*parsed.tables[strace.TABLE], {"syscall": "<i>\x1b", "calls": "many"}]
    host = HostView("a", "pi", "x86_64", "ok", tables={strace.TABLE: rows})
    html = render_html(build_report(META, [host]))
    part = html.split("<h3>System calls", 1)[1].split("</table>", 1)[0]
    assert part.index("clock_nanosleep") < part.index("getppid")
    getppid = part.split("<code>getppid</code>", 1)[1].split("</tr>", 1)[0]
    assert '<td class="num">10,258</td><td class="num">5,129.0</td>' in getppid
    assert "<i>" not in part and "&lt;i&gt;" in part and "\x1b" not in part


def test_no_strace_table_no_matrix() -> None:
    report = build_report(META, [HostView("a", "pi", "x86_64", "ok")])
    assert "strace_syscall_matrix" not in report


def test_the_directions_of_its_metrics() -> None:
    assert direction("strace.traced_s") == SKIP
    assert direction("strace.errors") == direction("strace.error_pct") == LOWER
    for name in ("strace.calls_per_s", "strace.syscall.futex.calls_per_s"):
        assert (direction(name), rule_for(name).floor) == (BOTH, 100.0)
    assert rule_for("strace.syscall.read.usecs_per_call").floor == 5.0
