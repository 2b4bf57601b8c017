"""The test fleet's own tests get its fixtures and the ``fleet`` marker."""

from __future__ import annotations

import pytest

from tests.fleet.fixtures import fleet_factory, module_fleet_factory

__all__ = ["fleet_factory", "module_fleet_factory"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fleet: needs the real test fleet (root, sshd, namespaces, cgroups)"
    )
