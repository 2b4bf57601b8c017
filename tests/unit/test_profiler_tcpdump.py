"""tcpdump (profilers.tcpdump): the plan (argv, caps, root, the filter as one argv element
after `--`), the campaign's checks of interface and filter, the parser of the device's
summary (made here by the device converter from real loopback captures,
tests/fixtures/SOURCES.md) and of tcpdump's closing counts, and the report's parts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device import arguments, pcap_summary
from fleetprof_device.contract import DEVICE_PYTHON_ARG, STOP_AT_DEADLINE_OPTION
from orchestrator.campaign.messages import CampaignError
from orchestrator.profilers import tcpdump
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from orchestrator.report.talkers import talker_markdown, talker_views
from orchestrator.stages.plan import make_plan
from tests.support.factories import TOOL, campaign, host_facts
from tests.support.paths import REPO
from tests.support.reports import PWN_SCRIPT, fleet_report, start_tags

FIXTURES = REPO / "tests" / "fixtures" / "tcpdump"
TCPDUMP = "/usr/bin/tcpdump"
# What tcpdump 4.99.3 printed on stderr for lo-mixed.pcap (SIGINT after the traffic).
STDERR = (
    "tcpdump: listening on lo, link-type EN10MB (Ethernet), snapshot length 96 bytes\n"
    "23 packets captured\n46 packets received by filter\n0 packets dropped by kernel\n"
)


def facts(**overrides: Any):
    return host_facts(**{"tools": {"tcpdump": TCPDUMP}, "is_root": True, **overrides})


def planned(settings: dict[str, Any] | None = None, **fact: Any):
    chosen = campaign(profilers={"tcpdump": settings or {}})
    plan = make_plan(chosen, facts(**fact), "r", TOOL, t0=0.0)
    return {p.name: p for p in plan.profilers}["tcpdump"], plan


# -- plan ------------------------------------------------------------------------------------


def test_the_default_capture_is_headers_only_capped_and_stopped_at_the_deadline() -> None:
    entry, _ = planned()
    assert entry.status == "planned"
    assert entry.argv == [
        TCPDUMP,
        *("-i", "any", "-s", "96", "-c", "10000", "-w", "tcpdump.pcap", "-U"),
        *("--immediate-mode", "-Z", "root", "-n", "--"),
    ]
    assert entry.outputs == ["tcpdump.pcap", "tcpdump.json"]
    assert entry.options == {STOP_AT_DEADLINE_OPTION: True}
    assert entry.post_argv == [
        pcap_summary.post_argv(DEVICE_PYTHON_ARG, "tcpdump.pcap", "tcpdump.json", 20)
    ]
    # 24 + 10000 * (16 + 96) bytes at most: the runner's cap is that, or the JSON's room.
    assert entry.max_bytes == max(24 + 10000 * 112, tcpdump.MAX_JSON_BYTES)


def test_the_filter_is_one_argv_element_after_the_double_dash() -> None:
    entry, _ = planned({"filter": "udp  port 53 or (tcp[13] & 2 != 0)", "interface": "eth0"})
    assert entry.argv[2] == "eth0"
    assert entry.argv[-2:] == ["--", "udp port 53 or (tcp[13] & 2 != 0)"]


def test_max_mb_lowers_the_packet_count_so_the_file_fits() -> None:
    entry, _ = planned({"max_mb": 1, "snaplen": 1500, "max_packets": 100000})
    count = int(entry.argv[entry.argv.index("-c") + 1])
    assert count == (1024 * 1024 - 24) // (16 + 1500) == 691
    assert 24 + count * (16 + 1500) <= 1024 * 1024
    spec = campaign(profilers={"tcpdump": {"max_mb": 1, "snaplen": 1500}}).profilers.tcpdump
    assert spec is not None and tcpdump.pcap_bound(spec) <= 1024 * 1024


def test_the_device_accepts_the_plan() -> None:
    _, made = planned()
    plan = json.loads(json.dumps(made.to_dict()))
    arguments.validate_plan(plan)


def test_missing_tcpdump_is_skipped_with_the_package_to_install() -> None:
    entry, _ = planned(tools={})
    assert entry.status == "skipped" and entry.reason == tcpdump.NOT_INSTALLED
    assert entry.options == {"install_package": "tcpdump"}


def test_a_remote_user_that_is_not_root_is_skipped_with_the_reason() -> None:
    entry, _ = planned(is_root=False)
    assert entry.status == "skipped" and entry.reason == tcpdump.NOT_ROOT


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"filter": "port 53; rm -rf /"}, "a capture filter"),
        ({"filter": "host $(id)"}, "a capture filter"),
        ({"filter": "port 53\nor port 1"}, "a capture filter"),
        ({"filter": "'port 53'"}, "a capture filter"),
        ({"filter": "x" * 257}, "a capture filter"),
        ({"filter": "   "}, "a capture filter"),
        ({"interface": "-w/tmp/x"}, "a network interface name"),
        ({"interface": "averyverylongname0"}, "a network interface name"),
        ({"max_packets": 0}, "an integer from 1 to 1000000"),
        ({"max_mb": 500}, "an integer from 1 to 200"),
        ({"snaplen": 10}, "an integer from 64 to 65535"),
        ({"top": 0}, "an integer from 1 to 100"),
    ],
)
def test_the_campaign_refuses_odd_filters_interfaces_and_caps(
    settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(CampaignError) as error:
        campaign(profilers={"tcpdump": settings})
    assert says in str(error.value)


# -- parse -----------------------------------------------------------------------------------


def session_with(tmp_path: Path, document: dict[str, Any] | str) -> Path:
    text = document if isinstance(document, str) else json.dumps(document)
    (tmp_path / tcpdump.OUTPUT).write_text(text)
    return tmp_path


def real_summary(name: str = "lo-mixed") -> dict[str, Any]:
    document, error = pcap_summary.convert(str(FIXTURES / f"{name}.pcap"), 20)
    assert error is None
    return document


ENTRY = {"stderr_tail": STDERR, "started_at_device": 100.0, "stopped_at_device": 102.0}


def test_parse_gives_totals_rates_and_the_top_talkers(tmp_path: Path) -> None:
    chosen = campaign(profilers={"tcpdump": {}})
    result = tcpdump.parse(session_with(tmp_path, real_summary()), ENTRY, chosen)
    assert result.data_quality == []
    assert result.metrics == {
        "tcpdump.dropped": 0.0,
        "tcpdump.packets": 23.0,
        "tcpdump.bytes": 8774.0,
        "tcpdump.packets_per_s": 11.5,
        "tcpdump.bytes_per_s": 4387.0,
        "tcpdump.captured_s": 2.0,
        "tcpdump.talkers": 4.0,
        "tcpdump.hosts": 2.0,
    }
    top = result.tables[tcpdump.TALKERS][0]
    assert top == {
        "src": "127.0.0.1",
        "dst": "127.0.0.1",
        "proto": "tcp",
        "dport": 45680,
        "packets": 5,
        "bytes": 5338,
        "bytes_pct": 60.84,
    }
    assert [h["address"] for h in result.tables[tcpdump.HOSTS]] == ["127.0.0.1", "::1"]


def test_stderr_counts_of_real_tcpdump_output() -> None:
    assert tcpdump.stderr_counts(STDERR) == {"captured": 23, "received": 46, "dropped": 0}
    said = "1 packet captured\n9 packets received by filter\n4 packets dropped by kernel\n"
    said += "2 packets dropped by interface\n"
    assert tcpdump.stderr_counts(said) == {
        "captured": 1,
        "received": 9,
        "dropped": 4,
        "dropped_interface": 2,
    }
    assert tcpdump.stderr_counts("9" * 40 + " packets dropped by kernel\n") == {}


def test_kernel_drops_and_the_packet_cap_are_notes(tmp_path: Path) -> None:
    chosen = campaign(profilers={"tcpdump": {"max_packets": 23}})
    entry = dict(ENTRY, stderr_tail=STDERR.replace("0 packets dropped", "7 packets dropped"))
    result = tcpdump.parse(session_with(tmp_path, real_summary()), entry, chosen)
    assert result.metrics["tcpdump.dropped"] == 7.0
    notes = " | ".join(result.data_quality)
    assert "the kernel dropped 7 packets" in notes and "its cap of 23 packets" in notes


def test_a_cut_capture_and_an_empty_one_say_so(tmp_path: Path) -> None:
    chosen = campaign(profilers={"tcpdump": {}})
    cut = dict(real_summary(), truncated=True)
    result = tcpdump.parse(session_with(tmp_path, cut), ENTRY, chosen)
    assert any("partial packet" in n for n in result.data_quality)
    empty = dict(real_summary(), packets=0, bytes=0, talkers=[], hosts=[])
    result = tcpdump.parse(session_with(tmp_path, empty), ENTRY, chosen)
    assert result.data_quality == [tcpdump.NO_PACKETS]
    assert tcpdump.TALKERS not in result.tables


@pytest.mark.parametrize(
    "text, says",
    [
        ("not json", "not JSON"),
        ('{"schema": "other/1"}', "not a fleetprof.pcap/1 document"),
        ('{"schema": "fleetprof.pcap/1", "error": "x.pcap: not a pcap\\u001b[2J"}', "not a pcap"),
        ('{"schema": "fleetprof.pcap/1", "packets": "many"}', "no packet or byte count"),
    ],
)
def test_an_unusable_summary_is_a_note_never_a_crash(tmp_path: Path, text: str, says: str) -> None:
    chosen = campaign(profilers={"tcpdump": {}})
    result = tcpdump.parse(session_with(tmp_path, text), {}, chosen)
    assert len(result.data_quality) == 1 and says in result.data_quality[0]
    assert "\x1b" not in result.data_quality[0] and "tcpdump.packets" not in result.metrics


def test_malformed_rows_are_left_out_and_counted(tmp_path: Path) -> None:
    chosen = campaign(profilers={"tcpdump": {}})
    document = real_summary()
    good = document["talkers"][0]
    document["talkers"] = [
        good,
        dict(good, src=PWN_SCRIPT),
        dict(good, proto="<b>"),
        dict(good, dport=70000),
        dict(good, packets=True),
        dict(good, bytes=10**30),
        "row",
    ]
    document["hosts"].append({"address": "not-an-ip", "packets_sent": 1})
    result = tcpdump.parse(session_with(tmp_path, document), ENTRY, chosen)
    assert result.tables[tcpdump.TALKERS] == [dict(good, bytes_pct=60.84)]
    assert "7 malformed rows in the capture summary were left out" in result.data_quality


def test_no_summary_but_stderr_counts_keeps_the_drops(tmp_path: Path) -> None:
    result = tcpdump.parse(tmp_path, ENTRY, campaign(profilers={"tcpdump": {}}))
    assert result.metrics == {"tcpdump.dropped": 0.0}


# -- report ----------------------------------------------------------------------------------


def with_talkers(tmp_path: Path) -> dict[str, Any]:
    """The parser's tables of a real capture, one address made hostile here (report.json
    may be edited: the views check it again and the renderers escape it)."""
    chosen = campaign(profilers={"tcpdump": {}})
    result = tcpdump.parse(session_with(tmp_path, real_summary()), ENTRY, chosen)
    report = fleet_report()
    host = report["hosts"][0]
    talkers = [dict(result.tables[tcpdump.TALKERS][0], src=PWN_SCRIPT + "\x1b[2J")]
    host.setdefault("tables", {})[tcpdump.TALKERS] = talkers + result.tables[tcpdump.TALKERS][1:]
    host["tables"][tcpdump.HOSTS] = result.tables[tcpdump.HOSTS]
    host.setdefault("metrics", {}).update(result.metrics)
    return report


def test_the_html_part_lists_talkers_escaped(tmp_path: Path) -> None:
    page = render_html(with_talkers(tmp_path))
    assert page.count("<h3>Packet capture") == 1
    assert "<code>::1</code>" in page and ">45,680<" not in page and ">45680<" in page
    assert ">5,338<" in page and ">60.8<" in page
    assert "<script>document.title" not in page and "\x1b" not in page
    assert len([t for t in start_tags(page) if t[0] == "script"]) == 1


def test_summary_md_lists_each_hosts_top_talkers(tmp_path: Path) -> None:
    text = render_markdown(with_talkers(tmp_path))
    section = text.split("## Top talkers per host (tcpdump)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| edge-01")]
    assert len(rows) == 4
    assert "&lt;script&gt;" in rows[0] and "<script>" not in rows[0] and "\x1b" not in rows[0]
    assert rows[1].endswith("| ::1 | ::1 | udp | 45679 | 5 | 1,810 | 20.6 |")


def test_no_capture_no_part() -> None:
    report = fleet_report()
    assert "Packet capture" not in render_html(report)
    assert talker_markdown(report["hosts"]) == []
    assert talker_views({}, {}) == {}


def test_no_capture_quotes_tcpdumps_own_complaint(tmp_path: Path) -> None:
    # What tcpdump 4.99.3 printed for `-i eth9` (no such interface) before exiting 1.
    said = "tcpdump: eth9: No such device exists\n(No such device exists)\n"
    said = "tcpdump: data link type LINUX_SLL2\n" + said  # what `-i any` says first
    error = {"schema": "fleetprof.pcap/1", "error": "tcpdump.pcap: [Errno 2] No such file"}
    result = tcpdump.parse(session_with(tmp_path, error), {"stderr_tail": said}, campaign())
    assert result.data_quality == [
        "the device could not read the capture: tcpdump.pcap: [Errno 2] No such file",
        "tcpdump said: tcpdump: eth9: No such device exists",
    ]
