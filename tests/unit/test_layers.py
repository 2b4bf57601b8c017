"""The rooms of the code and what each may import (docs/architecture.md, "What may import
what"): a change that makes a pure room reach for an edge, or the device code for the
controller, fails here instead of in a review."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO

# the rooms that run or show things: a pure room imports none of them
RUNNING = frozenset({"stages", "check", "report", "cli", "schedule"})
# room -> the rooms (orchestrator subpackages or top modules) it must not import
FORBIDDEN: dict[str, frozenset[str]] = {
    # the leaves: shared models and helpers
    "values": frozenset({"*"}),
    "atomic": frozenset({"*"}),
    "paths": frozenset({"*"}),
    "models": frozenset({"*"}),
    # pure rooms: no stage, no edge
    "analysis": RUNNING | {"campaign", "profilers"},
    "campaign": RUNNING | {"profilers", "analysis"},
    "toolcache": RUNNING | {"campaign"},
    "profilers": RUNNING,
    # renderers read results, they do not run anything
    "report": frozenset({"cli", "schedule", "toolcache"}),
    "schedule": frozenset({"stages", "check", "report", "cli", "profilers", "analysis"}),
    "stages": frozenset({"cli", "schedule"}),
    "check": frozenset({"cli", "schedule"}),
}
# modules of a room that other rooms must not import (the room's own runners)
PRIVATE: dict[str, str] = {
    "orchestrator.stages.flow": "stages",  # only check/run.py drives a whole campaign too
    "orchestrator.check.run": "check",
}
PRIVATE_ALLOWED = {("orchestrator.stages.flow", "check"), ("orchestrator.stages.flow", "cli")}
PRIVATE_ALLOWED |= {("orchestrator.check.run", "cli")}
LEAVES = frozenset({"values", "atomic", "paths", "models"})


def python_files(folder: str) -> Iterator[Path]:
    """The Python files under ``folder``, or those a glob such as ``roles/*/library`` names."""
    if "*" in folder:
        yield from sorted(REPO.glob(f"{folder}/*.py"))
    else:
        yield from sorted((REPO / folder).rglob("*.py"))


def imported(path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports (``from orchestrator import x`` counts as x), with its line."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "orchestrator" or len(parts) < 2:
        return None
    return parts[1]


def own_room(path: Path) -> str:
    relative = path.relative_to(REPO / "orchestrator")
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_room_imports_only_what_it_may() -> None:
    wrong: list[str] = []
    for path in python_files("orchestrator"):
        mine = own_room(path)
        forbidden = FORBIDDEN.get(mine, frozenset())
        for module, line in imported(path):
            theirs = room_of(module)
            if theirs is None or theirs == mine:
                continue
            if module in PRIVATE and (module, mine) not in PRIVATE_ALLOWED:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {module}")
            if "*" in forbidden and theirs not in LEAVES and theirs != "__version__":
                wrong.append(f"{path.relative_to(REPO)}:{line} (a leaf) imports {module}")
            elif theirs in forbidden:
                wrong.append(f"{path.relative_to(REPO)}:{line} ({mine}) imports {module}")
    assert not wrong, "\n".join(wrong)


def test_nothing_but_the_command_line_imports_it() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for folder in ("orchestrator", "benchmarks", "examples")
        for path in python_files(folder)
        if folder != "orchestrator" or own_room(path) != "cli"
        for module, line in imported(path)
        if module == "orchestrator.cli" or module.startswith("orchestrator.cli.")
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_ansible_edge_calls_ansible_runner() -> None:
    callers = {
        str(path.relative_to(REPO))
        for path in python_files("orchestrator")
        for module, _ in imported(path)
        if module.split(".")[0] == "ansible_runner"
    }
    assert callers == {"orchestrator/stages/ansible.py"}


@pytest.mark.parametrize("folder", ["fleetprof_device", "roles/*/library"])
def test_the_device_code_imports_the_standard_library_only(folder: str) -> None:
    """The device runs stdlib Python: no controller, no third-party package (the thin
    Ansible modules import the device package, which the zipapp carries)."""
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in python_files(folder)
        for module, line in imported(path)
        if module.split(".")[0] not in sys.stdlib_module_names
        and module.split(".")[0] not in {"fleetprof_device", "__future__"}
    ]
    assert not wrong, "\n".join(wrong)


def test_the_roles_action_plugins_import_ansible_and_the_standard_library_only() -> None:
    """The roles' action plugins run inside ansible-playbook on the controller, in AWX's
    execution environment too, where only the collection is installed: no fleetprof
    package, nothing Ansible does not bring."""
    plugins = list(python_files("roles/*/action_plugins"))
    assert plugins, "the session role has an action plugin"
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in plugins
        for module, line in imported(path)
        if module.split(".")[0] not in sys.stdlib_module_names
        and module.split(".")[0] not in {"ansible", "__future__"}
    ]
    assert not wrong, "\n".join(wrong)
    # Every role file is one or the other: a new kind of Python in roles/ gets a rule.
    every = set(REPO.glob("roles/**/*.py"))
    assert every == set(plugins) | set(python_files("roles/*/library")), every


def test_every_room_says_its_job() -> None:
    """Each folder's __init__.py opens with a docstring (its job, in a line or two)."""
    silent = [
        str(init.relative_to(REPO))
        for folder in ("orchestrator", "fleetprof_device")
        for init in (REPO / folder).rglob("__init__.py")
        if not ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    ]
    assert not silent, silent
