"""The collection and the execution environment say what pyproject.toml says, and the
collection is staged from the repository's own files (orchestrator/collection.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.collection import CollectionError, read_metadata, stage
from tests.support.paths import REPO


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((REPO / relative).read_text())


def requirement_name(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", spec.strip())
    assert match, spec
    return match.group(0).lower().replace("_", "-")


def test_galaxy_version_is_pyprojects() -> None:
    assert load_yaml("collection/galaxy.yml")["version"] == pyproject()["version"]


def test_the_checkout_itself_is_not_a_collection() -> None:
    # ansible-lint and molecule install a root with galaxy.yml as a collection, every run.
    assert not (REPO / "galaxy.yml").exists(), "galaxy.yml belongs in collection/"


def test_required_ansible_is_pyprojects_ansible_core_floor() -> None:
    [core] = [d for d in pyproject()["dependencies"] if requirement_name(d) == "ansible-core"]
    floor = core.split(">=", 1)[1]
    assert load_yaml("collection/meta/runtime.yml")["requires_ansible"] == f">={floor}.0"


def test_the_execution_environment_installs_exactly_pyprojects_dependencies() -> None:
    ee = load_yaml("execution-environment.yml")
    deps = ee["dependencies"]
    listed = [
        line.strip()
        for line in (REPO / deps["python"]).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    installed = [deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"]]
    assert sorted(installed + listed) == sorted(pyproject()["dependencies"])


def test_the_execution_environment_takes_the_tarball_make_collection_builds() -> None:
    tarball = read_metadata().tarball
    ee = load_yaml("execution-environment.yml")
    [build_file] = ee["additional_build_files"]
    assert build_file["src"] == f"dist/{tarball}"
    [collection] = load_yaml(ee["dependencies"]["galaxy"])["collections"]
    assert collection == {"name": f"{build_file['dest']}/{tarball}", "type": "file"}


def test_the_stage_holds_the_repositorys_files_with_the_modules_as_plugins(
    tmp_path: Path,
) -> None:
    staged = tmp_path / "collection"
    meta = stage(staged)
    assert meta.fqcn == "fleetprof.fleet"
    for playbook in (REPO / "playbooks").glob("*.yml"):
        assert (staged / "playbooks" / playbook.name).read_bytes() == playbook.read_bytes()
    modules = sorted(p.name for p in (REPO / "roles").glob("*/library/*.py"))
    assert modules, "the roles own modules"
    assert sorted(p.name for p in (staged / "plugins" / "modules").iterdir()) == modules
    for module in (REPO / "roles").glob("*/library/*.py"):
        assert (staged / "plugins" / "modules" / module.name).read_bytes() == module.read_bytes()
    actions = sorted((REPO / "roles").glob("*/action_plugins/*.py"))
    assert actions, "the session role has its controller-side action"
    assert sorted(p.name for p in (staged / "plugins" / "action").iterdir()) == sorted(
        p.name for p in actions
    )
    for action in actions:
        assert (staged / "plugins" / "action" / action.name).read_bytes() == action.read_bytes()
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
    assert sorted(p.name for p in (staged / "roles").iterdir()) == roles
    for task_file in (REPO / "roles").glob("*/tasks/*.yml"):
        copied = staged / task_file.relative_to(REPO)
        assert copied.read_bytes() == task_file.read_bytes()
    left_out = {"library", "action_plugins", "molecule", "__pycache__", ".ruff_cache"}
    assert not [p for p in staged.rglob("*") if p.name in left_out]
    assert not [p for p in staged.rglob("*.pyc")]


def test_two_roles_owning_one_module_name_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    names = ("collection/galaxy.yml", "collection/README.md", "collection/meta/runtime.yml")
    for name in (*names, "playbooks/site.yml"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((REPO / name).read_bytes())
    for role in ("one", "two"):
        (root / "roles" / role / "library").mkdir(parents=True)
        (root / "roles" / role / "library" / "same.py").write_text("")
    with pytest.raises(CollectionError, match="module same is also in"):
        stage(tmp_path / "out", root)


def test_a_galaxy_yml_without_a_version_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "collection").mkdir()
    (tmp_path / "collection" / "galaxy.yml").write_text(
        "namespace: fleetprof\nname: fleet\nreadme: README.md\n"
    )
    with pytest.raises(CollectionError, match=r"galaxy\.yml: version: expected a non-empty"):
        read_metadata(tmp_path)
