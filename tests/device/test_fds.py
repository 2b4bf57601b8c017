"""The open-files sampler's pure parts (fleetprof_device/fds.py) on real /proc text: the
TCP/UDP tables below were read on a Linux 6.x box from /proc/self/net/{tcp,tcp6,udp,udp6}
while one Python process held a listening socket on 127.0.0.1:35013, a client connected
to it and the accepted end, a listening socket on [::1]:40841, a UDP socket bound to
127.0.0.1:34263, one connected to it, and one bound to [::1]:59784 (inodes 6490972 to
6490978, in that order, from os.fstat). Python 3.8 syntax: these run on the device's
oldest Python."""

import os
import socket
import tempfile

from fleetprof_device import fds
from fleetprof_device.contract import OPEN_FILES_MAX_PATH_CHARS

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:88C5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6490972 1 000000006e4485bf 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 306 1 000000000851d824 100 0 0 10 0
   2: 0100007F:EC74 0100007F:83F3 06 00000000:00000000 03:000001D8 00000000     0        0 0 3 00000000c0c4211f
  26: 0100007F:EA6C 0100007F:88C5 01 00000000:00000000 00:00000000 00000000     0        0 6490973 2 000000008d333086 20 0 0 10 -1
  40: 0100007F:88C5 0100007F:EA6C 01 00000000:00000000 00:00000000 00000000     0        0 6490974 1 000000005bfcfb59 20 0 0 10 -1
"""  # noqa: E501
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:9F89 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6490975 1 0000000094f01f19 100 0 0 10 0
"""  # noqa: E501
UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 3154: 0100007F:85D7 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 6490976 2 000000002cc48c6d 0
 9498: 0100007F:DE9F 0100007F:85D7 01 00000000:00000000 00:00000000 00000000     0        0 6490977 2 000000004dcf6ece 0
"""  # noqa: E501
UDP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
12291: 00000000000000000000000001000000:E988 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 6490978 2 000000006c0a22e7 0
"""  # noqa: E501
MINE = set(range(6490972, 6490979))


def test_tcp_states_of_the_process_sockets_only():
    states, listening, found = fds.parse_net(TCP, "tcp", MINE)
    # Port 2024 (inode 306) is another process's; TIME_WAIT sockets have no inode (0).
    assert states == {"LISTEN": 1, "ESTABLISHED": 2}
    assert listening == ["tcp 127.0.0.1:35013"]
    assert found == {6490972, 6490973, 6490974}


def test_ipv6_and_udp_tables():
    assert fds.parse_net(TCP6, "tcp6", MINE) == (
        {"LISTEN": 1},
        ["tcp6 [0:0:0:0:0:0:0:1]:40841"],
        {6490975},
    )
    states, listening, found = fds.parse_net(UDP, "udp", MINE)
    assert states == {"UNCONNECTED": 1, "CONNECTED": 1}
    assert listening == ["udp 127.0.0.1:34263"] and found == {6490976, 6490977}
    assert fds.parse_net(UDP6, "udp6", MINE)[:2] == (
        {"UNCONNECTED": 1},
        ["udp6 [0:0:0:0:0:0:0:1]:59784"],
    )


def test_a_socket_is_counted_once_and_garbage_lines_are_skipped():
    garbage = TCP + "   9: nonsense\n  10: 0100007F:0001 00000000:0000 ZZ 0 0 0 0 0 6490972\n"
    states, _, found = fds.parse_net(garbage + TCP.splitlines()[1] + "\n", "tcp", MINE)
    assert states == {"LISTEN": 1, "ESTABLISHED": 2} and len(found) == 3
    assert fds.parse_net(TCP, "tcp", set()) == ({}, [], set())


def test_an_unknown_state_keeps_its_code():
    line = TCP.splitlines()[1].replace(" 0A ", " 1F ")
    assert fds.parse_net("header\n" + line, "tcp", MINE)[0] == {"STATE_1F": 1}


def test_addresses_decode_as_the_kernel_prints_them():
    assert fds.decode_address("0100007F:1F90") == "127.0.0.1:8080"
    assert fds.decode_address("00000000:07E8") == "0.0.0.0:2024"
    assert fds.decode_address("00000000000000000000000000000000:0016") == "[0:0:0:0:0:0:0:0]:22"
    assert fds.decode_address("0000000000000000FFFF00000100007F:0050") == (
        "[0:0:0:0:0:ffff:7f00:1]:80"
    )
    assert fds.decode_address("zz:1") is None and fds.decode_address("0100:1") is None


def test_links_are_classified_as_lsof_would():
    assert fds.classify("socket:[6490972]") == ("socket", None, 6490972)
    assert fds.classify("pipe:[6478932]") == ("pipe", None, None)
    assert fds.classify("anon_inode:[eventfd]") == ("anon_inode", None, None)
    assert fds.classify("anon_inode:inotify") == ("anon_inode", None, None)
    assert fds.classify("/dev/null") == ("device", "/dev/null", None)
    assert fds.classify("/dev/pts/3") == ("device", "/dev/pts/3", None)
    assert fds.classify("/dev/shm/sem.x") == ("file", "/dev/shm/sem.x", None)
    assert fds.classify("/tmp/x (deleted)") == ("file", "/tmp/x (deleted)", None)
    assert fds.classify("/memfd:buf (deleted)") == ("file", "/memfd:buf (deleted)", None)
    assert fds.classify("net:[4026531840]") == ("other", None, None)
    long = "/data/" + "d" * 500 + "/frame.bin"
    kind, path, _ = fds.classify(long)
    assert kind == "file" and path is not None and len(path) == OPEN_FILES_MAX_PATH_CHARS
    assert path.startswith("...") and path.endswith("/frame.bin")


def test_top_paths_most_first_then_by_name():
    counts = {"/b": 2, "/a": 2, "/c": 5, "/d": 1}
    assert fds.top_paths(counts, 3) == [["/c", 5], ["/a", 2], ["/b", 2]]


def test_options():
    assert fds.option_errors({}) == [] and fds.option_errors({"top_paths": 100}) == []
    for bad in (0, 101, True, "5", 2.0):
        assert fds.option_errors({"top_paths": bad}) == [
            "options.top_paths must be an integer from 1 to 100"
        ]


def test_a_table_larger_than_the_cap_is_cut_at_a_line():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tcp")
        with open(path, "w") as handle:
            handle.write(TCP)
        text, cut = fds.read_capped(path, 1 << 20)
        assert (text, cut) == (TCP, False)
        text, cut = fds.read_capped(path, 300)
        assert cut and text is not None and text.endswith("\n") and len(text) <= 300
        assert TCP.startswith(text)
        assert fds.read_capped(os.path.join(tmp, "missing"), 10) == (None, False)


def test_a_sample_of_this_process():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    reader, writer = os.pipe()
    sampler = fds.FdSampler(os.getpid(), {"top_paths": 3})
    try:
        record = sampler.sample({"t": 1.0})
    finally:
        sampler.close()
        server.close()
        os.close(reader)
        os.close(writer)
    assert record is not None and record["pid"] == os.getpid() and record["procs"] >= 1
    assert record["kinds"]["socket"] >= 1 and record["kinds"]["pipe"] >= 2
    assert record["sockets"]["tcp"]["LISTEN"] >= 1
    assert f"tcp 127.0.0.1:{port}" in record["listening"]
    assert record["total"] == sum(record["kinds"].values()) + record.get("cut", {}).get("unread", 0)
    assert len(record["paths"]) <= 3


def test_a_gone_target_ends_the_series():
    sampler = fds.FdSampler(2**22 + 12345, {})  # above pid_max's default: no such process
    try:
        assert sampler.sample({"t": 1.0}) is None
    finally:
        sampler.close()
