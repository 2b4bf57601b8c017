"""tcpdump: a bounded packet capture on one interface over the window, and its top talkers.

The device must have tcpdump installed (preflight looks for it); fleetprof pushes nothing
for it. Capturing needs root (CAP_NET_RAW and CAP_NET_ADMIN): like iotop, it runs only
where the remote user is root, and is skipped with the reason elsewhere. The runner starts

    tcpdump -i IFACE -s SNAPLEN -c PACKETS -w tcpdump.pcap -U --immediate-mode -Z root -n -- FILTER

in the session's workdir and sends it SIGINT at the deadline itself (``stop_at_deadline``);
tcpdump then writes what it holds and prints its counts on stderr ("N packets captured",
"N packets received by filter", "N packets dropped by kernel") and exits 0. Measured
(tcpdump 4.99.3, libpcap 1.10.3): without ``--immediate-mode`` libpcap hands packets over in
blocks with a 1 s timeout, and a SIGINT right after traffic loses them (0 of 50 captured);
``-Z root`` keeps the file root's (Debian's build drops to the user ``tcpdump`` after
opening the interface and chowns the file to it).

The byte cap is a packet cap: tcpdump's own ``-C`` rotates files instead of stopping, so
``-c`` is the smaller of ``max_packets`` and what fits in ``max_mb`` at ``snaplen`` bytes a
packet (a pcap record is its 16-byte header and at most snaplen bytes): the file cannot
outgrow the cap, and tcpdump ends by itself when it is reached. The runner's output cap is
set to the same bound, a backstop.

After it stopped, a post step (``fleetprof_device.pcap_summary``, the runner's own Python,
stdlib only) reads the pcap on the device and writes ``tcpdump.json``: the totals and the
top conversations and addresses. The controller reads that JSON only, never the pcap;
the pcap itself comes back in the archive, for Wireshark.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

from fleetprof_device.contract import DEVICE_PYTHON_ARG, STOP_AT_DEADLINE_OPTION
from fleetprof_device.pcap_summary import MAX_TOP, SCHEMA, post_argv
from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import TcpdumpSpec
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse, read_capped
from orchestrator.profilers.strace import traced_seconds
from orchestrator.values import visible

NAME = "tcpdump"
TOOL = None  # installed on the device by its package manager, not pushed from the cache
LAUNCHER = False
LAUNCH_ONLY = False
OUTPUT = "tcpdump.json"  # what the post step writes from the pcap; what parse() reads
PCAP = "tcpdump.pcap"  # the capture itself: kept in the run directory, never parsed here
PACKAGE = "tcpdump"  # the same name in Debian, Ubuntu, Fedora, EL, Alpine, Arch
PCAP_HEADER_BYTES = 24
RECORD_HEADER_BYTES = 16
MIB = 1024 * 1024
MAX_JSON_BYTES = 1 * MIB  # the summary: MAX_TOP conversations and addresses, a few KiB
TALKERS = "tcpdump.talkers"
HOSTS = "tcpdump.hosts"

NOT_INSTALLED = (
    "tcpdump is not installed: install the tcpdump package (fleetprof's tools role does so "
    "with become when `fleetprof_tools_install_packages: true`)"
)
NOT_ROOT = (
    "tcpdump needs root (CAP_NET_RAW and CAP_NET_ADMIN) to capture packets, and the remote "
    "user is not root: connect as root to capture"
)
NO_PACKETS = "tcpdump captured no packet in the window (the interface and filter saw none)"

# tcpdump's closing counts on stderr (bounded digits: untrusted text).
_COUNT_RE = {
    key: re.compile(rf"^\s*(\d{{1,15}}) packets? {words}\s*$", re.MULTILINE)
    for key, words in (
        ("captured", "captured"),
        ("received", "received by filter"),
        ("dropped", "dropped by kernel"),
        ("dropped_interface", "dropped by interface"),
    )
}
_PROTO_RE = re.compile(r"[a-z0-9-]{1,20}")


def skip_reason(facts: HostFacts) -> str | None:
    """Why this host cannot capture packets, decided before anything runs."""
    if not facts.tools.get(NAME):
        return NOT_INSTALLED
    if not facts.is_root:
        return NOT_ROOT
    return None


def packet_limit(spec: TcpdumpSpec) -> int:
    """tcpdump's -c: max_packets, or fewer where max_mb holds fewer records of snaplen."""
    fits = (spec.max_mb * MIB - PCAP_HEADER_BYTES) // (RECORD_HEADER_BYTES + spec.snaplen)
    return max(1, min(spec.max_packets, fits))


def pcap_bound(spec: TcpdumpSpec) -> int:
    """The largest pcap tcpdump can write under ``packet_limit`` (never over max_mb)."""
    return PCAP_HEADER_BYTES + packet_limit(spec) * (RECORD_HEADER_BYTES + spec.snaplen)


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.tcpdump or TcpdumpSpec()
    outputs = [PCAP, OUTPUT]
    # The runner caps every output at max_bytes: the pcap's bound, and room for the JSON.
    max_bytes = max(pcap_bound(spec), MAX_JSON_BYTES)
    reason = skip_reason(facts)
    if reason is not None:
        install = {"install_package": PACKAGE} if reason == NOT_INSTALLED else {}
        return ProfilerPlan.skipped(NAME, reason, outputs, max_bytes, options=install)
    argv = [
        facts.tools[NAME],
        "-i",
        spec.interface,
        "-s",
        str(spec.snaplen),
        "-c",
        str(packet_limit(spec)),
        "-w",
        PCAP,  # the runner starts it in the session's workdir
        "-U",  # each packet written as it comes: a kill leaves whole records
        "--immediate-mode",  # no 1 s batches: the SIGINT at the deadline loses nothing
        "-Z",
        "root",  # keep the file root's: no drop to the user `tcpdump`
        "-n",
        "--",
        *([spec.filter] if spec.filter else []),  # one element: tcpdump joins its words
    ]
    return ProfilerPlan.planned(
        NAME,
        argv,
        outputs,
        max_bytes,
        options={STOP_AT_DEADLINE_OPTION: True},
        post_argv=[post_argv(DEVICE_PYTHON_ARG, PCAP, OUTPUT, spec.top)],
    )


# -- parsing -------------------------------------------------------------------------------


def stderr_counts(text: str) -> dict[str, int]:
    """tcpdump's closing counts from its stderr: captured, received, dropped (by kernel),
    dropped_interface; a count it did not print is absent."""
    counts: dict[str, int] = {}
    for key, pattern in _COUNT_RE.items():
        found = pattern.findall(text)
        if found:
            counts[key] = int(found[-1])
    return counts


def _last_error(said: str) -> str:
    """tcpdump's own last complaint on stderr ("tcpdump: can't parse filter expression:
    syntax error", "tcpdump: eth9: No such device exists"), or ""."""
    lines = [line for line in said.splitlines() if line.startswith("tcpdump: ")]
    # What it says on every start (`-i any` adds the link type): not a complaint.
    chatter = ("tcpdump: listening on ", "tcpdump: data link type ")
    lines = [line for line in lines if not line.startswith(chatter)]
    return visible(lines[-1])[:300] if lines else ""


def _count(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15
    return value if ok else None


def _address(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _talker(row: Any) -> dict[str, Any] | None:
    """One conversation of the device's JSON, checked (device data: untrusted)."""
    if not isinstance(row, dict):
        return None
    src, dst = _address(row.get("src")), _address(row.get("dst"))
    proto, port = row.get("proto"), row.get("dport")
    packets, size = _count(row.get("packets")), _count(row.get("bytes"))
    if src is None or dst is None or packets is None or size is None:
        return None
    if not isinstance(proto, str) or not _PROTO_RE.fullmatch(proto):
        return None
    if port is not None and (_count(port) is None or port > 65535):
        return None
    return {
        "src": src,
        "dst": dst,
        "proto": proto,
        "dport": port,
        "packets": packets,
        "bytes": size,
    }


def _host(row: Any) -> dict[str, Any] | None:
    if not isinstance(row, dict) or _address(row.get("address")) is None:
        return None
    keys = ("packets_sent", "bytes_sent", "packets_received", "bytes_received")
    counts = {key: _count(row.get(key)) for key in keys}
    if any(value is None for value in counts.values()):
        return None
    return {"address": _address(row.get("address")), **counts}


def read_summary(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """tcpdump.json -> (the document, None), or (None, why it cannot be used)."""
    text, capped = read_capped(path, MAX_JSON_BYTES)
    if capped:
        return None, f"the capture summary is over {MAX_JSON_BYTES} bytes: not read"
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None, "the capture summary is not JSON"
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        return None, f"the capture summary is not a {SCHEMA} document"
    error = document.get("error")
    if error is not None:
        return None, "the device could not read the capture: " + visible(str(error))[:300]
    return document, None


def _rows(document: dict[str, Any], key: str, check: Any) -> tuple[list[dict[str, Any]], int]:
    raw = document.get(key)
    raw = raw[:MAX_TOP] if isinstance(raw, list) else []
    rows = [row for row in (check(r) for r in raw) if row is not None]
    return rows, len(raw) - len(rows)


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """tcpdump.json (and tcpdump's stderr counts) -> totals, rates and the top talkers
    (docs/metrics.md, "tcpdump")."""
    spec = campaign.profilers.tcpdump or TcpdumpSpec()
    result, path = begin_parse(session_dir, OUTPUT)
    said = entry.get("stderr_tail")
    counts = stderr_counts(said) if isinstance(said, str) else {}
    if "dropped" in counts:
        result.metrics["tcpdump.dropped"] = float(counts["dropped"])
        if counts["dropped"]:
            result.data_quality.append(
                f"the kernel dropped {counts['dropped']} packets tcpdump did not read in time: "
                "the capture and its counts are short of the traffic"
            )
    if path is None:
        return result
    try:
        document, problem = read_summary(path)
    except OSError as error:
        document, problem = None, f"the capture summary could not be read: {error}"
    if document is None:
        result.data_quality.append(problem or "the capture summary is unusable")
        if isinstance(said, str) and _last_error(said):
            result.data_quality.append("tcpdump said: " + _last_error(said))
        return result
    packets, size = _count(document.get("packets")), _count(document.get("bytes"))
    if packets is None or size is None:
        result.data_quality.append("the capture summary has no packet or byte count")
        return result
    seconds = traced_seconds(entry, campaign)
    result.metrics["tcpdump.packets"] = float(packets)
    result.metrics["tcpdump.bytes"] = float(size)
    result.metrics["tcpdump.packets_per_s"] = round(packets / seconds, 3)
    result.metrics["tcpdump.bytes_per_s"] = round(size / seconds, 1)
    result.metrics["tcpdump.captured_s"] = round(seconds, 3)
    _notes(result, document, packets, spec)
    talkers, bad_talkers = _rows(document, "talkers", _talker)
    hosts, bad_hosts = _rows(document, "hosts", _host)
    if bad_talkers or bad_hosts:
        result.data_quality.append(
            f"{bad_talkers + bad_hosts} malformed rows in the capture summary were left out"
        )
    for key, metric in (("talkers_total", "tcpdump.talkers"), ("hosts_total", "tcpdump.hosts")):
        total = _count(document.get(key))
        if total is not None:
            result.metrics[metric] = float(total)
    if talkers:
        result.tables[TALKERS] = [
            dict(row, bytes_pct=round(100.0 * row["bytes"] / size, 2) if size else 0.0)
            for row in talkers
        ]
    if hosts:
        result.tables[HOSTS] = hosts
    return result


def _notes(
    result: ProfileResult, document: dict[str, Any], packets: int, spec: TcpdumpSpec
) -> None:
    """What the reader must know about the capture's coverage."""
    limit = packet_limit(spec)
    if packets == 0:
        result.data_quality.append(NO_PACKETS)
    elif packets >= limit:
        result.data_quality.append(
            f"tcpdump stopped at its cap of {limit} packets (max_packets, max_mb at snaplen "
            f"{spec.snaplen}) before the deadline: the capture covers the start of the window"
        )
    if document.get("truncated") is True:
        result.data_quality.append(
            "the capture ends in a partial packet (tcpdump killed, or the file cut): it was "
            "left out"
        )
    if document.get("capped") is True:
        result.data_quality.append(
            "the capture was larger than the device reads: summarized in part"
        )
