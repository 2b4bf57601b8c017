"""A real test fleet: emulated edge devices, each a real sshd in its own namespaces and cgroup.

See README.md in this directory. In short::

    from tests.fleet import Fleet, fleet_unavailable

    with Fleet.up({"model-a": 3, "model-b": {"count": 3, "cpu": 0.3}}) as fleet:
        subprocess.run(["ansible", "-i", str(fleet.inventory), "all", "-m", "ping"])
        fleet.run("model-a-1", ["uname", "-a"])
"""

from tests.fleet.errors import FleetError, FleetUnavailable, HostTimeout, HostUnreachable
from tests.fleet.harness import Fleet, reap_orphans
from tests.fleet.hosts import FleetHost, ModelSpec, Process, RunResult
from tests.fleet.prereqs import fleet_unavailable

__all__ = [
    "Fleet",
    "FleetError",
    "FleetHost",
    "FleetUnavailable",
    "HostTimeout",
    "HostUnreachable",
    "ModelSpec",
    "Process",
    "RunResult",
    "fleet_unavailable",
    "reap_orphans",
]
