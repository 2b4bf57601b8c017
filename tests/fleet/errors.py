"""The errors of the test fleet."""

from __future__ import annotations


class FleetError(RuntimeError):
    """The fleet (or one host of it) could not be brought up, reached or torn down."""


class FleetUnavailable(FleetError):
    """This machine cannot run the test fleet (see ``fleet_unavailable``)."""


class HostTimeout(FleetError, TimeoutError):
    """A host did not answer in time (a frozen host does exactly this)."""


class HostUnreachable(FleetError, ConnectionError):
    """Nothing answers at a host's address (a killed host does exactly this)."""
