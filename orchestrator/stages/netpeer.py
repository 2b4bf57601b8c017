"""Where the network probe's peer listens and for whom (``target.probe: [network]``): the
controller runs fleetprof_device/netserve.py's PeerServer while the session play runs.

It listens on the addresses the devices reach the controller on (each device's
``controller_address`` fact: where its SSH connection came from; 127.0.0.1 for a device
reached without SSH), on a port the kernel picks, for the inventory hosts' addresses and
the loopback, and gives each device a token of its own (docs/security.md).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterable
from typing import Any

from fleetprof_device.contract import NET_PEER_PORT, NET_TOKEN_CHARS
from fleetprof_device.netserve import IpAddress, PeerServer, ip_or_none

LOOPBACK = "127.0.0.1"
NetPeer = PeerServer


def resolve(names: Iterable[str]) -> set[IpAddress]:
    """Every address the inventory's host addresses (or names) resolve to."""
    found: set[IpAddress] = set()
    for name in names:
        direct = ip_or_none(name)
        if direct is not None:
            found.add(direct)
            continue
        with contextlib.suppress(OSError, UnicodeError):
            for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP):
                if (address := ip_or_none(str(info[4][0]).split("%")[0])) is not None:
                    found.add(address)
    return found


def start_peer(
    controller_addresses: dict[str, str | None], inventory_addresses: Iterable[str]
) -> tuple[NetPeer, dict[str, dict[str, Any]]]:
    """A listening peer and each host's ``target.probe_peer``: {"host", "port", "token"},
    or {"error": why not} where the controller cannot listen on the host's address.
    ``controller_addresses``: per host, where its SSH connection came from (None: the
    device was reached without SSH, on this machine)."""
    peer = NetPeer(resolve(inventory_addresses))
    plans: dict[str, dict[str, Any]] = {}
    for host, seen in controller_addresses.items():
        address = str(ip_or_none(seen) or LOOPBACK)
        try:
            port = peer.listen(address)
        except OSError as exc:
            plans[host] = {
                "error": f"the controller cannot listen on {address}, the address this device "
                f"reaches it on: {exc.strerror or exc}"
            }
            continue
        plans[host] = {"host": address, "port": port, "token": peer.token_for(host)}
    return peer, plans


def device_peer_targets(peer_host: str, address_of: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The target fields when an inventory host is the others' peer (target.network_peer):
    it serves on NET_PEER_PORT for the others' addresses and tokens; each other host
    measures against its inventory address. Not in the session (unreachable, skipped, not
    in the inventory): every other host's network benchmark fails with that reason."""
    others = [host for host in address_of if host != peer_host]
    if peer_host not in address_of:
        reason = f"the peer host {peer_host} is not in this session (not in the inventory, "
        reason += "unreachable or skipped)"
        return {host: {"probe_peer": {"error": reason}} for host in others}
    tokens = {secrets.token_hex(NET_TOKEN_CHARS // 2): host for host in others}
    allowed = sorted(str(a) for a in resolve(address_of[host] for host in others))
    targets: dict[str, dict[str, Any]] = {
        host: {"probe_peer": {"host": address_of[peer_host], "port": NET_PEER_PORT, "token": token}}
        for token, host in tokens.items()
    }
    targets[peer_host] = {
        "serve_peer": {"port": NET_PEER_PORT, "tokens": tokens, "allowed": allowed}
    }
    return targets
