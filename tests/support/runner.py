"""The device-side Ansible modules (stdlib only), by file, and one way to load them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from tests.support.paths import REPO

# Run as Ansible runs them (``python3 MODULE ARGS_FILE``) or loaded with load_device_module.
SESSION_MODULE = REPO / "roles" / "fleetprof_session" / "library" / "fleetprof_session.py"
FACTS_MODULE = REPO / "roles" / "fleetprof_preflight" / "library" / "fleetprof_facts.py"


def load_device_module(path: Path) -> ModuleType:
    """The module at ``path``, freshly executed under its file's name."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
