"""Reaching a host as Ansible does: SSH as root with the fleet key, host key checked."""

from __future__ import annotations

import logging
import select
import time
from pathlib import Path

import paramiko

from tests.fleet.errors import FleetError, HostTimeout, HostUnreachable
from tests.fleet.hosts import USER, FleetHost, RunResult

# Expected timeouts (a frozen host) make paramiko's transport thread log tracebacks; they
# surface as HostTimeout here, so keep them off stderr when logging is not configured.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def load_key(path: Path) -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def connect(
    host: FleetHost, known_hosts: Path, key: paramiko.PKey, timeout: float
) -> paramiko.SSHClient:
    """An SSH session to ``host`` as Ansible gets it: its key checked against known_hosts.

    HostTimeout when it does not answer within ``timeout`` (frozen), HostUnreachable when
    nothing listens (dead), FleetError for anything else (a wrong host key, say).
    """
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    started = time.monotonic()
    where = f"{host.name} ({host.address}:{host.port})"
    try:
        client.connect(
            host.address,
            port=host.port,
            username=USER,
            pkey=key,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except TimeoutError as exc:
        client.close()
        raise HostTimeout(f"{where} did not answer within {timeout:g} s") from exc
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise FleetError(f"{where}: host key does not match {known_hosts}") from exc
    except paramiko.SSHException as exc:
        client.close()
        # A TCP connection that never gets a banner: the listener is there but hung.
        if time.monotonic() - started >= timeout * 0.9 or "banner" in str(exc):
            raise HostTimeout(f"{where} did not answer within {timeout:g} s") from exc
        raise FleetError(f"{where}: SSH failed: {exc}") from exc
    except OSError as exc:
        client.close()
        raise HostUnreachable(f"{where} is unreachable: {exc}") from exc
    return client


def execute(client: paramiko.SSHClient, command: str, deadline: float) -> RunResult:
    """Run the shell ``command`` in a new channel; TimeoutError past ``deadline``."""
    transport = client.get_transport()
    assert transport is not None
    channel = transport.open_session(timeout=max(0.1, deadline - time.monotonic()))
    channel.exec_command(command)
    channel.shutdown_write()
    out, err = bytearray(), bytearray()
    while True:
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        done = channel.closed or (channel.exit_status_ready() and channel.eof_received)
        if done and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(command)
        select.select([channel], [], [], min(remaining, 0.02))
    rc = channel.exit_status if channel.exit_status_ready() else -1
    return RunResult(rc, out.decode(errors="replace"), err.decode(errors="replace"))
