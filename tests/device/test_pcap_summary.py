"""The packet capture converter on the device (Python 3.8 syntax): real pcaps tcpdump wrote
on loopback (tests/fixtures/SOURCES.md: Ethernet, Linux cooked SLL and SLL2, nanosecond
timestamps), the same capture in big-endian order, cut short, garbage, pcapng, absent."""

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from fleetprof_device import pcap_summary

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "tcpdump"
# What traffic.py sent: (protocol, destination port, packets, IP packet bytes each: IP and
# transport headers and payload, no link header).
UDP4 = ("udp", 45678, 10, 20 + 8 + 100)
UDP6 = ("udp", 45679, 5, 40 + 8 + 300)
LINK_HEADER = {"lo-mixed": 14, "lo-nano": 14, "any-sll": 16, "any-sll2": 20}


def summary(name, top=20):
    document, error = pcap_summary.convert(str(FIXTURES / (name + ".pcap")), top)
    assert error is None, error
    return document


def flow(document, src, proto, port):
    found = [
        t
        for t in document["talkers"]
        if t["src"] == src and t["proto"] == proto and t["dport"] == port
    ]
    assert len(found) == 1, document["talkers"]
    return found[0]


@pytest.mark.parametrize("name", sorted(LINK_HEADER))
def test_every_link_type_gives_the_traffic_that_was_sent(name):
    document = summary(name)
    link = LINK_HEADER[name]
    assert document["schema"] == pcap_summary.SCHEMA
    assert document["packets"] == 23 and document["non_ip_packets"] == 0
    assert document["snaplen"] == 96 and not document["truncated"]
    udp4 = flow(document, "127.0.0.1", "udp", 45678)
    assert (udp4["dst"], udp4["packets"], udp4["bytes"]) == ("127.0.0.1", 10, 10 * (link + 128))
    udp6 = flow(document, "::1", "udp", 45679)
    assert (udp6["dst"], udp6["packets"], udp6["bytes"]) == ("::1", 5, 5 * (link + 348))
    # The TCP connection: 5 segments to the server (SYN, ACK, 5000 bytes, FIN, ACK) and 3
    # back (SYN-ACK, ACK, FIN-ACK) to the client's ephemeral port.
    to_server = flow(document, "127.0.0.1", "tcp", 45680)
    assert to_server["packets"] == 5 and to_server["bytes"] > 5000
    back = [t for t in document["talkers"] if t["proto"] == "tcp" and t["dport"] != 45680]
    assert len(back) == 1 and back[0]["packets"] == 3
    # The original length, not the 96 bytes kept: more than the file holds.
    assert document["bytes"] == sum(t["bytes"] for t in document["talkers"])
    assert document["bytes"] > document["captured_bytes"]
    assert document["talkers"][0] == to_server  # the most bytes first
    hosts = {h["address"]: h for h in document["hosts"]}
    assert set(hosts) == {"127.0.0.1", "::1"}
    assert hosts["::1"]["packets_sent"] == hosts["::1"]["packets_received"] == 5
    assert hosts["127.0.0.1"]["packets_sent"] == 18
    assert 0.0 < document["duration_s"] < 5.0


def test_nanosecond_and_microsecond_files_agree():
    micro, nano = summary("lo-mixed"), summary("lo-nano")
    assert micro["talkers"][:3] == nano["talkers"][:3]
    assert isinstance(nano["first_ts"], float) and nano["first_ts"] > 1.7e9


def big_endian(data):
    """A little-endian pcap rewritten in big-endian order: each header field swapped."""
    out = io.BytesIO()
    out.write(struct.pack(">IHHiIII", *struct.unpack("<IHHiIII", data[:24])))
    at = 24
    while at < len(data):
        head = struct.unpack("<IIII", data[at : at + 16])
        out.write(struct.pack(">IIII", *head))
        out.write(data[at + 16 : at + 16 + head[2]])
        at += 16 + head[2]
    return out.getvalue()


def test_a_big_endian_file_reads_alike(tmp_path):
    data = (FIXTURES / "lo-mixed.pcap").read_bytes()
    swapped = tmp_path / "be.pcap"
    swapped.write_bytes(big_endian(data))
    assert swapped.read_bytes()[:4] == b"\xa1\xb2\xc3\xd4"
    document, error = pcap_summary.convert(str(swapped), 20)
    assert error is None
    plain = summary("lo-mixed")
    assert document["talkers"] == plain["talkers"] and document["first_ts"] == plain["first_ts"]


def test_a_file_cut_mid_packet_keeps_the_whole_packets_and_says_so(tmp_path):
    data = (FIXTURES / "lo-mixed.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    # 24-byte header, then 10 UDP records of 16 + 96 bytes: cut inside the 11th record.
    cut.write_bytes(data[: 24 + 10 * 112 + 40])
    document, error = pcap_summary.convert(str(cut), 20)
    assert error is None and document["truncated"] is True
    assert document["packets"] == 10 and document["talkers"][0]["packets"] == 10
    cut.write_bytes(data[: 24 + 10 * 112 + 7])  # inside a record header
    document, _ = pcap_summary.convert(str(cut), 20)
    assert document["truncated"] is True and document["packets"] == 10


def test_a_header_only_capture_has_nothing_and_no_error(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes((FIXTURES / "lo-mixed.pcap").read_bytes()[:24])
    document, error = pcap_summary.convert(str(empty), 20)
    assert error is None
    assert document["packets"] == 0 and document["talkers"] == [] and document["hosts"] == []
    assert document["duration_s"] == 0.0


@pytest.mark.parametrize(
    "data, says",
    [
        (b"", "shorter than a pcap header"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a pcap file"),
        (b"\x0a\x0d\x0d\x0a" + b"\x00" * 40, "pcapng"),
    ],
)
def test_garbage_is_an_error_in_the_document(tmp_path, data, says):
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    document, error = pcap_summary.convert(str(path), 20)
    assert error is not None and says in error and document["error"] == error
    assert "talkers" not in document


def test_a_record_claiming_a_huge_length_is_not_read_as_a_pcap(tmp_path):
    data = bytearray((FIXTURES / "lo-mixed.pcap").read_bytes())
    struct.pack_into("<I", data, 24 + 8, 0x7FFFFFFF)  # the first record's captured length
    path = tmp_path / "huge.pcap"
    path.write_bytes(bytes(data))
    _, error = pcap_summary.convert(str(path), 20)
    assert error is not None and "claims" in error


def test_random_bytes_after_a_valid_header_never_raise(tmp_path):
    header = (FIXTURES / "lo-mixed.pcap").read_bytes()[:24]
    seed = 12345
    for index in range(30):
        body = bytearray()
        for _ in range(300 + index * 37):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            body.append(seed >> 16 & 0xFF)
        path = tmp_path / f"r{index}.pcap"
        path.write_bytes(header + bytes(body))
        document, error = pcap_summary.convert(str(path), 20)
        assert error is None or document.get("error") == error


def test_unknown_link_types_count_packets_but_no_talkers(tmp_path):
    data = bytearray((FIXTURES / "lo-mixed.pcap").read_bytes())
    struct.pack_into("<I", data, 20, 147)  # LINKTYPE_USER0
    path = tmp_path / "user.pcap"
    path.write_bytes(bytes(data))
    document, error = pcap_summary.convert(str(path), 20)
    assert error is None
    assert document["packets"] == 23 and document["non_ip_packets"] == 23
    assert document["talkers"] == [] and document["linktype_name"] is None


def test_top_keeps_the_most_bytes_and_is_capped():
    assert [t["dport"] for t in summary("lo-mixed", top=2)["talkers"]] == [45680, 45679]
    assert summary("lo-mixed", top=10**6)["top"] == pcap_summary.MAX_TOP


def test_the_post_step_runs_from_the_package_and_writes_json(tmp_path):
    output = tmp_path / "tcpdump.json"
    argv = pcap_summary.post_argv(sys.executable, str(FIXTURES / "any-sll2.pcap"), str(output), 5)
    argv = [str(ROOT) if a == "{device_package}" else a for a in argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    document = json.loads(output.read_text())
    assert document["linktype_name"] == "linux-sll2" and len(document["talkers"]) == 4
    missing = subprocess.run(
        [*argv[:4], str(tmp_path / "absent.pcap"), str(output), "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "absent.pcap" in json.loads(output.read_text())["error"]
