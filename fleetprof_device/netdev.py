"""Interface counters from /proc/net/dev for the system sampler: per interface, received and
sent bytes, packets, errors and drops (the contract's NET_DEV_FIELDS, in that order).

The file's two header lines are skipped; each other line is ``name: 16 numbers`` (8
receive, 8 transmit columns: bytes packets errs drop fifo frame compressed multicast, then
bytes packets errs drop fifo colls carrier compressed). The counters are the network
namespace's of the reading process: the runner's.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from .contract import NET_IFACE_NAME_MAX, NET_MAX_IFACES

# Columns of a /proc/net/dev line (after the name) that NET_DEV_FIELDS takes, in its order.
_COLUMNS = (0, 1, 2, 3, 8, 9, 10, 11)


def parse_net_dev(text: Optional[str]) -> Dict[str, List[int]]:
    """{interface: [rx_bytes, rx_packets, rx_errors, rx_drops, tx_bytes, ...]}; lines that
    do not parse are skipped, and interfaces past NET_MAX_IFACES are left out."""
    found: Dict[str, List[int]] = {}
    for line in (text or "").splitlines():
        name, colon, rest = line.partition(":")
        name = name.strip()
        if not colon or not name or "|" in name or len(name) > NET_IFACE_NAME_MAX:
            continue
        fields = rest.split()
        if len(fields) < 16 or not all(f.isdigit() for f in fields[:16]):
            continue
        if name not in found:
            found[name] = [int(fields[i]) for i in _COLUMNS]
            if len(found) >= NET_MAX_IFACES:
                break
    return found
