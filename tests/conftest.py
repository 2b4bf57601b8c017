"""The whole suite's rules. Under pytest-xdist (`make test` runs two workers with
``--dist loadgroup``, tests/README.md), the modules that bring up the SSH test fleet, run
real campaigns or processes, or measure timing assume a machine nobody else loads: they
are one work unit, so one worker runs them one after another while the other worker runs
the light modules beside them."""

from __future__ import annotations

from typing import Any

import pytest

# Folders whose modules are exclusive: the fleet, real campaigns, real processes and timing.
EXCLUSIVE_FOLDERS = ("tests/fleet/", "tests/integration/", "tests/process/")
# Modules there that need neither the fleet nor a quiet machine: they run no campaign on
# a reachable host and assert nothing about time.
SHARED_MODULES = frozenset(
    {
        "tests/integration/test_bad_input.py",
        "tests/integration/test_plain_output.py",
        "tests/integration/test_report_chromium.py",
    }
)
EXCLUSIVE_UNIT = "exclusive"


def exclusive(module: str) -> bool:
    """Whether the module (a path from the repository's root) must not overlap another
    exclusive module."""
    return module.startswith(EXCLUSIVE_FOLDERS) and module not in SHARED_MODULES


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``, by module: every exclusive module in one work unit (in
    collection order), every other module a unit of its own. xdist's own loadgroup reads
    an ``xdist_group`` mark through a nodeid suffix that pytest 9 no longer keeps."""
    if config.getoption("dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ExclusiveUnit(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return EXCLUSIVE_UNIT if exclusive(module) else module

    return ExclusiveUnit(config, log)
