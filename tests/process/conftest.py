"""The runner tests' fixtures: workload processes killed at teardown, and py-spy."""

from __future__ import annotations

from tests.support.session import fleet, py_spy

__all__ = ["fleet", "py_spy"]
