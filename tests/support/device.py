"""The device package (fleetprof_device) for tests: every module's names on one object,
as the runner's single file once had them."""

from __future__ import annotations

import importlib
import pkgutil
from types import SimpleNamespace

import fleetprof_device


def device_namespace() -> SimpleNamespace:
    """One object with the names of every fleetprof_device module, for reading and calling
    (to change a module's global, monkeypatch that module itself)."""
    names: dict[str, object] = {}
    for info in pkgutil.iter_modules(fleetprof_device.__path__):
        if info.name != "__main__":
            module = importlib.import_module(f"fleetprof_device.{info.name}")
            for name, value in vars(module).items():
                if not name.startswith("__"):
                    names.setdefault(name, value)
    return SimpleNamespace(**names)
