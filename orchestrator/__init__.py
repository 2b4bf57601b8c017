"""fleetprof: agentless, Ansible-driven profiling of device fleets."""

__version__ = "0.1.0"
