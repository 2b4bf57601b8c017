"""py-spy's thread, process and native breakdown through report.json to the HTML page.

The hosts are parsed from real py-spy recordings (tests/fixtures/py-spy, see
test_pyspy_truth.py) the way the controller parses a run, then analysed and rendered.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from orchestrator.analysis.fleet import HostView, build_report
from orchestrator.report.html import render_html
from tests.support.pyspy import parse, truth

META = {
    "campaign": "truth",
    "run_id": "20261207-030000-abcd",
    "started_at": "2026-12-07T03:00:00+00:00",
    "duration_s": 6.0,
}
# The same program on two hosts, a threaded one and a native-heavy one on a third.
RECORDINGS = {
    "tree-1": "process-tree.subprocesses",
    "tree-2": "process-tree.subprocesses",
    "threads": "named-threads.threads",
    "zlib": "zlib-native.threads",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    hosts, profiles = [], {}
    for name, recording in RECORDINGS.items():
        result = parse(tmp_path_factory.mktemp(name), recording)
        view = HostView(name=name, hw_model="box", arch="x86_64", status="ok")
        view.metrics, view.tables = result.metrics, result.tables
        view.top_functions, view.flamegraph = result.top_functions, result.flamegraph
        view.data_quality = result.data_quality
        hosts.append(view)
        assert result.stacks is not None
        profiles[name] = result.stacks
    return build_report(META, hosts, profiles)


def host(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(h for h in report["hosts"] if h["name"] == name)


def test_report_json_has_each_hosts_threads_processes_and_libraries(
    report: dict[str, Any],
) -> None:
    threads = host(report, "threads")["tables"]["pyspy.threads"]
    assert [t["name"] for t in threads] == ["upload", "infer", "decode"]
    assert "pyspy.processes" not in host(report, "threads")["tables"]
    processes = host(report, "tree-1")["tables"]["pyspy.processes"]
    assert len(processes) == 3
    libraries = host(report, "zlib")["tables"]["pyspy.native"]
    assert libraries[0]["library"] == "libz.so.1"
    # top_functions keeps its meaning: the whole host.
    assert host(report, "tree-1")["top_functions"][0]["function"] == "hash_blocks"


def test_report_json_merges_processes_by_command_line_across_hosts(
    report: dict[str, Any],
) -> None:
    commands = report["processes"]
    assert len(commands) == 3
    assert all(c["hosts"] == ["tree-1", "tree-2"] and c["processes"] == 2 for c in commands)
    by_role = {c["command"].rsplit(" ", 1)[-1]: c for c in commands}
    assert by_role["hash"]["top_functions"][0]["function"] == "hash_blocks"
    assert by_role["sort"]["top_functions"][0]["function"] == "sort_numbers"


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def test_the_page_shows_the_breakdown_and_a_flame_graph_per_thread_and_process(
    report: dict[str, Any],
) -> None:
    page = render_html(report)
    parser = _Text()
    parser.feed(page)
    text = " ".join(" ".join(parser.parts).split())
    assert "Processes by command line" in text
    assert "Flame graph by process" in text and "Flame graph by thread" in text
    assert "Native libraries" in text and "libz.so.1" in text
    known = truth("process-tree.subprocesses")
    for pid in (known["parent"], *known["children"].values()):
        assert f"pid {pid}" in text
    ids = truth("named-threads.threads")["native_ids"]
    for name in ("upload", "infer", "decode"):
        assert f"{name} {ids[name]} · " in text  # the thread's flame graph, by name and id
    # Native frames are drawn blue, and say so in their tooltip.
    assert "libz.so.1 (unresolved) [native]" in page
    # One details element per thread and per process with a flame graph of its own:
    # 3 threads on "threads", 3 processes + 3 threads on each tree host, 3 commands.
    assert page.count('<details class="part">') == 3 + 2 * (3 + 3) + 3
