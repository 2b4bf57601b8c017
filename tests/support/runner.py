"""The device side for tests: the thin Ansible modules by file (run as Ansible runs them,
``python3 MODULE ARGS_FILE``) and the device package's names on one object."""

from __future__ import annotations

import importlib
import pkgutil
from types import SimpleNamespace

import fleetprof_device
from tests.support.paths import REPO

SESSION_MODULE = REPO / "roles" / "fleetprof_session" / "library" / "fleetprof_session.py"
FACTS_MODULE = REPO / "roles" / "fleetprof_preflight" / "library" / "fleetprof_facts.py"


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
