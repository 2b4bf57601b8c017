"""A packet capture (``tcpdump -w``: a pcap file) -> its top talkers as small JSON, on the
device.

The controller never parses pcap: the runner runs this module after tcpdump stopped (a
post step, ``BOOTSTRAP``), with the device's own Python and the standard library only.
It reads the classic pcap format (both byte orders, micro- and nanosecond timestamps), the
link types tcpdump writes on Linux (Ethernet, with VLAN tags; Linux cooked SLL and SLL2,
what ``-i any`` gives; raw IP), IPv4 and IPv6 (extension headers skipped), and the TCP and
UDP ports. It sums packets and bytes (each packet's length on the wire, not the part
captured: a snaplen of 96 keeps the headers only) per conversation (source, destination,
protocol, destination port) and per address, and keeps the ``top`` of each by bytes.

A file cut short (tcpdump killed, the runner's size cap) ends in a partial record: it is
counted (``truncated``), not an error. A file that is not a pcap writes ``error``.
"""

from __future__ import annotations

import os
import platform
import socket
import struct
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

from .contract import DEVICE_PACKAGE_ARG
from .converters import converter_main

SCHEMA = "fleetprof.pcap/1"
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from fleetprof_device.pcap_summary import main; sys.exit(main(sys.argv[2:]))"
)
MAX_TOP = 100
MAX_PCAP_BYTES = 512 * 1024 * 1024  # read no further: the rest is left out (said so)
MAX_PACKETS = 5_000_000
MAX_FLOWS = 50_000  # distinct conversations (and addresses) tracked; the rest: "other"
MAX_RECORD_BYTES = 262_144 + 4096  # a record's captured length past this: not a pcap

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
LINKTYPES = {
    LINKTYPE_NULL: "null",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_RAW: "raw",
    LINKTYPE_LINUX_SLL: "linux-sll",
    LINKTYPE_LINUX_SLL2: "linux-sll2",
}
# magic (as read little-endian) -> (struct byte order, timestamp fraction per second)
_MAGICS = {
    0xA1B2C3D4: ("<", 1e6),
    0xD4C3B2A1: (">", 1e6),
    0xA1B23C4D: ("<", 1e9),
    0x4D3CB2A1: (">", 1e9),
}
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
_VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
_IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options: walked past
_IPV6_FRAGMENT = 44
PROTOCOLS = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 58: "icmpv6", 132: "sctp"}
_PORTED = (6, 17, 132)  # TCP, UDP, SCTP: the destination port is the 16 bits at offset 2

Flow = Tuple[str, str, str, Optional[int]]


def post_argv(python: str, pcap: str, output: str, top: int) -> List[str]:
    """The post step that summarizes ``pcap`` into ``output`` with ``python``."""
    return [python, "-c", BOOTSTRAP, DEVICE_PACKAGE_ARG, pcap, output, str(top)]


def _network_payload(linktype: int, data: bytes) -> Tuple[Optional[int], int]:
    """(ethertype, offset of the network header), or (None, 0) when not IP."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None, 0
        ethertype, offset = struct.unpack_from("!H", data, 12)[0], 14
        while ethertype in _VLAN_TYPES and len(data) >= offset + 4:
            ethertype, offset = struct.unpack_from("!H", data, offset + 2)[0], offset + 4
        return ethertype, offset
    if linktype == LINKTYPE_LINUX_SLL:
        return (struct.unpack_from("!H", data, 14)[0], 16) if len(data) >= 16 else (None, 0)
    if linktype == LINKTYPE_LINUX_SLL2:
        return (struct.unpack_from("!H", data, 0)[0], 20) if len(data) >= 20 else (None, 0)
    if linktype == LINKTYPE_RAW and data:
        version = data[0] >> 4
        return {4: ETHERTYPE_IPV4, 6: ETHERTYPE_IPV6}.get(version), 0
    if linktype == LINKTYPE_NULL and len(data) >= 4:
        family = struct.unpack_from("=I", data, 0)[0]  # the writer's byte order: either
        if family in (2, 0x02000000):
            return ETHERTYPE_IPV4, 4
        if family in (10, 24, 28, 30, 0x0A000000, 0x18000000, 0x1C000000, 0x1E000000):
            return ETHERTYPE_IPV6, 4
    return None, 0


def _port(data: bytes, offset: int) -> Optional[int]:
    return struct.unpack_from("!H", data, offset + 2)[0] if len(data) >= offset + 4 else None


def flow_of(linktype: int, data: bytes) -> Optional[Flow]:
    """One captured packet -> (source, destination, protocol, destination port), or None
    when it is not IP or too short to say."""
    ethertype, offset = _network_payload(linktype, data)
    if ethertype == ETHERTYPE_IPV4 and len(data) >= offset + 20 and data[offset] >> 4 == 4:
        header = (data[offset] & 0x0F) * 4
        proto = data[offset + 9]
        src = socket.inet_ntop(socket.AF_INET, data[offset + 12 : offset + 16])
        dst = socket.inet_ntop(socket.AF_INET, data[offset + 16 : offset + 20])
        fragment = struct.unpack_from("!H", data, offset + 6)[0] & 0x1FFF
        port = _port(data, offset + header) if proto in _PORTED and not fragment else None
        return src, dst, PROTOCOLS.get(proto, "ip-proto-%d" % proto), port
    if ethertype == ETHERTYPE_IPV6 and len(data) >= offset + 40 and data[offset] >> 4 == 6:
        proto = data[offset + 6]
        src = socket.inet_ntop(socket.AF_INET6, data[offset + 8 : offset + 24])
        dst = socket.inet_ntop(socket.AF_INET6, data[offset + 24 : offset + 40])
        at, later_fragment = offset + 40, False
        for _ in range(8):
            if proto in _IPV6_EXTENSIONS and len(data) >= at + 2:
                proto, at = data[at], at + 8 * (data[at + 1] + 1)
            elif proto == _IPV6_FRAGMENT and len(data) >= at + 8:
                later_fragment = struct.unpack_from("!H", data, at + 2)[0] >> 3 != 0
                proto, at = data[at], at + 8
            else:
                break
        port = _port(data, at) if proto in _PORTED and not later_fragment else None
        return src, dst, PROTOCOLS.get(proto, "ip-proto-%d" % proto), port
    return None


class Totals:
    """Packets and bytes per conversation and per address, bounded in distinct keys."""

    def __init__(self) -> None:
        self.flows: Dict[Flow, List[int]] = {}
        self.hosts: Dict[str, List[int]] = {}  # address -> [sent pkts, bytes, recv pkts, bytes]
        self.other = [0, 0]  # conversations past MAX_FLOWS
        self.other_hosts = [0, 0]

    def add(self, flow: Flow, length: int) -> None:
        counts = self.flows.get(flow)
        if counts is None and len(self.flows) < MAX_FLOWS:
            counts = self.flows[flow] = [0, 0]
        if counts is None:
            self.other[0] += 1
            self.other[1] += length
        else:
            counts[0] += 1
            counts[1] += length
        for address, side in ((flow[0], 0), (flow[1], 2)):
            row = self.hosts.get(address)
            if row is None and len(self.hosts) < MAX_FLOWS:
                row = self.hosts[address] = [0, 0, 0, 0]
            if row is None:
                self.other_hosts[0] += 1
                self.other_hosts[1] += length
            else:
                row[side] += 1
                row[side + 1] += length


def read_header(handle: BinaryIO) -> Tuple[str, float, int, int]:
    """The global header -> (byte order, fraction per second, snaplen, link type)."""
    header = handle.read(24)
    if len(header) < 24:
        raise ValueError("the file is shorter than a pcap header (%d bytes)" % len(header))
    magic = struct.unpack("<I", header[:4])[0]
    if magic not in _MAGICS:
        if header[:4] == b"\x0a\x0d\x0d\x0a":
            raise ValueError("the file is pcapng, not pcap (tcpdump -w writes pcap)")
        raise ValueError("not a pcap file (magic %08x)" % magic)
    order, fraction = _MAGICS[magic]
    _major, _minor, _zone, _sigfigs, snaplen, linktype = struct.unpack(order + "HHiIII", header[4:])
    return order, fraction, snaplen, linktype & 0x0FFFFFFF


def summarize(handle: BinaryIO, top: int) -> Dict[str, Any]:
    """A pcap stream -> the JSON document (ValueError when it is not a pcap)."""
    top = max(1, min(top, MAX_TOP))
    order, fraction, snaplen, linktype = read_header(handle)
    record = struct.Struct(order + "IIII")
    totals = Totals()
    packets = wire_bytes = captured = non_ip = 0
    first: Optional[float] = None
    last: Optional[float] = None
    truncated = capped = False
    read = 24
    while True:
        head = handle.read(16)
        if not head:
            break
        if len(head) < 16:
            truncated = True
            break
        seconds, part, caplen, length = record.unpack(head)
        if caplen > MAX_RECORD_BYTES:
            raise ValueError("record %d claims %d captured bytes: not a pcap" % (packets, caplen))
        data = handle.read(caplen)
        if len(data) < caplen:
            truncated = True
            break
        read += 16 + caplen
        if packets >= MAX_PACKETS or read > MAX_PCAP_BYTES:
            capped = True
            break
        stamp = seconds + part / fraction
        first = stamp if first is None else min(first, stamp)
        last = stamp if last is None else max(last, stamp)
        packets += 1
        wire_bytes += length
        captured += caplen
        flow = flow_of(linktype, data)
        if flow is None:
            non_ip += 1
        else:
            totals.add(flow, length)
    return _document(
        totals,
        top,
        {
            "linktype": linktype,
            "linktype_name": LINKTYPES.get(linktype),
            "snaplen": snaplen,
            "packets": packets,
            "bytes": wire_bytes,
            "captured_bytes": captured,
            "non_ip_packets": non_ip,
            "first_ts": first,
            "last_ts": last,
            "duration_s": round(last - first, 6) if first is not None and last is not None else 0.0,
            "truncated": truncated,
            "capped": capped,
        },
    )


def _document(totals: Totals, top: int, head: Dict[str, Any]) -> Dict[str, Any]:
    flows = sorted(totals.flows.items(), key=lambda kv: (-kv[1][1], -kv[1][0], str(kv[0])))
    hosts = sorted(totals.hosts.items(), key=lambda kv: (-(kv[1][1] + kv[1][3]), -kv[1][0], kv[0]))
    return {
        "schema": SCHEMA,
        "python": platform.python_version(),
        **head,
        "top": top,
        "talkers_total": len(totals.flows),
        "talkers": [
            {
                "src": src,
                "dst": dst,
                "proto": proto,
                "dport": port,
                "packets": counts[0],
                "bytes": counts[1],
            }
            for (src, dst, proto, port), counts in flows[:top]
        ],
        "other_talkers": {"packets": totals.other[0], "bytes": totals.other[1]},
        "hosts_total": len(totals.hosts),
        "hosts": [
            {
                "address": address,
                "packets_sent": row[0],
                "bytes_sent": row[1],
                "packets_received": row[2],
                "bytes_received": row[3],
            }
            for address, row in hosts[:top]
        ],
    }


def convert(path: str, top: int) -> Tuple[Dict[str, Any], Optional[str]]:
    """(document, None), or (a document holding ``error``, the error)."""
    try:
        with open(path, "rb") as handle:
            return summarize(handle, top), None
    except (OSError, ValueError, struct.error) as exc:
        why = "%s: %s" % (os.path.basename(path), str(exc)[:300] or type(exc).__name__)
        return {"schema": SCHEMA, "python": platform.python_version(), "error": why}, why


def main(argv: List[str]) -> int:
    """PCAP OUTPUT TOP -> 0, or 1 (OUTPUT then says why; so does stderr)."""
    return converter_main(argv, convert, "pcap_summary", "packet capture")
