"""pytest fixtures for the test fleet.

``fleet_factory`` (one test) and ``module_fleet_factory`` (one module) bring fleets up
and tear every one of them down at teardown, whatever happened in the test. Where this
machine cannot run a fleet, they skip the test with the reason. To use them elsewhere,
import them into that directory's ``conftest.py``::

    from tests.fleet.fixtures import fleet_factory  # re-exported fixture
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.fleet import Fleet, FleetUnavailable, ModelSpec, fleet_unavailable

#: Why no fleet can run here (None: it can); CPU quotas are checked per fleet.
UNAVAILABLE = fleet_unavailable(need_cpu=False)

#: Marks a test that needs the real fleet: skipped, with the reason, where none can run.
requires_fleet = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")


class FleetFactory:
    """Brings fleets up (``Fleet.up``'s arguments) and remembers them for teardown."""

    def __init__(self) -> None:
        self.fleets: list[Fleet] = []

    def __call__(
        self,
        models: Mapping[str, ModelSpec | Mapping[str, Any] | int],
        *,
        seed_tools: bool = True,
        **kwargs: Any,
    ) -> Fleet:
        """``seed_tools``: the hosts already have the controller's device package and
        py-spy, as a fleet profiled before does (preflight then finds the package in
        place, provision only checks py-spy's sha256 on each device). What a first
        campaign pushes to fresh devices is tested with ``seed_tools=False``
        (tests/integration/test_fleet.py) and by the tools role's molecule scenario. It
        saves every fleet test the first run's pushes: a second facts call, the copies, and
        a longer lead (20-40 s on hosts with a quarter of a core on CI)."""
        try:
            fleet = Fleet.up(models, **kwargs)
        except FleetUnavailable as exc:
            pytest.skip(str(exc))
        self.fleets.append(fleet)
        if seed_tools:
            seed_pyspy(fleet)
            seed_device_package(fleet)
        return fleet

    def down_all(self) -> None:
        errors = []
        while self.fleets:
            fleet = self.fleets.pop()
            try:
                fleet.down()
            except Exception as exc:
                errors.append(f"{fleet.id}: {exc}")
        if errors:
            raise RuntimeError("test fleets not torn down:\n" + "\n".join(errors))


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt meanwhile, so teardown and atexit still run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def seed_pyspy(fleet: Fleet) -> None:
    """Copy the controller's cached py-spy where fleetprof would push it on each host."""
    import platform

    from orchestrator import toolcache
    from orchestrator.profilers.pyspy import device_path
    from tests.support.factories import host_facts

    tool = toolcache.ensure_pyspy(platform.machine())
    home = str(Path.home())
    dest = device_path(host_facts(home=home), tool.version)
    fleet.seed_file(Path(tool.path), dest)


def seed_device_package(fleet: Fleet) -> None:
    """Copy this controller's device package (zipapp) where preflight would push it."""
    from orchestrator import device_bundle

    bundle = device_bundle.build()
    fleet.seed_file(bundle.src, f"{Path.home()}/{bundle.path}", mode=0o600)


def _factory() -> Iterator[FleetFactory]:
    if UNAVAILABLE is not None:
        pytest.skip(UNAVAILABLE)
    factory = FleetFactory()
    with _sigterm_interrupts():
        try:
            yield factory
        finally:
            factory.down_all()


@pytest.fixture
def fleet_factory() -> Iterator[FleetFactory]:
    """``fleet_factory({"model-a": 3, "model-b": {"count": 3, "cpu": 0.3}}) -> Fleet``."""
    yield from _factory()


@pytest.fixture(scope="module")
def module_fleet_factory() -> Iterator[FleetFactory]:
    """Like ``fleet_factory``, with the fleets shared by one test module."""
    yield from _factory()
