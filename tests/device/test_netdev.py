"""/proc/net/dev as the system sampler reads it: real text captured on this machine, and
the lines a kernel can write that are not interfaces (Python 3.8 syntax: these run on
the device's oldest Python)."""

import os

from fleetprof_device.contract import NET_DEV_FIELDS, NET_MAX_IFACES
from fleetprof_device.netdev import parse_net_dev

FIXTURE = os.path.join(
    os.path.dirname(__file__), os.pardir, "fixtures", "netdev", "proc-net-dev.txt"
)


def test_the_real_file_gives_each_interface_its_eight_counters() -> None:
    with open(FIXTURE) as handle:
        found = parse_net_dev(handle.read())
    assert sorted(found) == ["eth0", "ifb0", "ifb1", "lo"]
    eth0 = dict(zip(NET_DEV_FIELDS, found["eth0"]))
    assert eth0 == {
        "rx_bytes": 6564639563,
        "rx_packets": 200882,
        "rx_errors": 0,
        "rx_drops": 0,
        "tx_bytes": 14180846,
        "tx_packets": 120913,
        "tx_errors": 0,
        "tx_drops": 0,
    }
    # Loopback: each byte received once and sent once.
    assert found["lo"][0] == found["lo"][4] == 9098723806


def test_columns_past_bytes_are_told_apart_and_a_name_may_touch_its_numbers() -> None:
    text = (
        "Inter-|   Receive  |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
        "wlan0:123456789012 7 1 2 3 4 5 6 987 8 9 10 11 12 13 14\n"
    )
    assert parse_net_dev(text) == {"wlan0": [123456789012, 7, 1, 2, 987, 8, 9, 10]}


def test_garbage_short_and_overlong_lines_are_skipped() -> None:
    text = "\n".join(
        [
            "eth0: 1 2 3",  # too few columns
            "eth1: 1 2 3 4 5 6 7 8 9 10 11 12 13 x 15 16",  # not a number
            "averyveryverylongname0: " + " ".join(["1"] * 16),  # longer than IFNAMSIZ
            "no colon at all " + " ".join(["1"] * 16),
            ": " + " ".join(["1"] * 16),  # no name
            "eth2: " + " ".join(["-1"] * 16),  # negative
            "ok0: " + " ".join(["2"] * 16),
        ]
    )
    assert parse_net_dev(text) == {"ok0": [2] * 8}
    assert parse_net_dev(None) == {}
    assert parse_net_dev("") == {}


def test_at_most_the_contract_s_number_of_interfaces() -> None:
    text = "\n".join(f"veth{i}: " + " ".join(["1"] * 16) for i in range(100))
    found = parse_net_dev(text)
    assert len(found) == NET_MAX_IFACES
    assert "veth0" in found and f"veth{NET_MAX_IFACES}" not in found
