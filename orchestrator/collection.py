"""Build the Ansible collection ``fleetprof.fleet`` from the repository's own layout.

The repository stays the source (DESIGN.md, Layout): ``roles/fleetprof_*`` with each
module in the ``library/`` of the role that owns it, and ``playbooks/*.yml`` that find
their roles by path. The collection is staged from those files at build time, never
kept as a copy, and ``ansible-galaxy collection build`` packs the stage.

Why a stage instead of ``galaxy.yml`` at the root building the checkout in place (with
``build_ignore`` for the rest): a role inside a collection cannot carry its own modules.
ansible-core resolves a collection role's unqualified module names against the
collection's ``plugins/modules/``, not the role's ``library/`` (tried with 2.19: the
role is found, then "couldn't resolve module/action 'fleetprof_facts'"). So the modules
have to move to ``plugins/modules/`` in the collection while they stay beside their
roles here; an allow-list of what the collection holds also keeps the controller's
Python, the tests and every generated folder out of the tarball by construction. And a
``galaxy.yml`` at the repository root makes ansible-lint and molecule (ansible-compat)
take the whole checkout for a collection and install it on every run (hundreds of MB,
lint 37 s instead of 21 s): the collection's own files live in ``collection/``.

Staged (everything else is left out):

- ``collection/galaxy.yml``, ``collection/meta/runtime.yml`` and the collection's
  ``README.md``, from ``collection/``;
- ``playbooks/*.yml`` as they are: inside the collection their unqualified role names
  resolve to the collection's own roles (``ansible-playbook fleetprof.fleet.session``);
- ``roles/<role>/`` without ``library/`` and ``molecule/``;
- ``roles/<role>/library/<module>.py`` as ``plugins/modules/<module>.py``
  (``fleetprof.fleet.<module>``), which the roles' unqualified module names find first;
- ``roles/<role>/action_plugins/<action>.py`` as ``plugins/action/<action>.py``, for the
  same reason (the controller-side actions, e.g. the session role's
  ``fleetprof_session_end``).

``python -m orchestrator.collection [--output DIR]`` (``make collection``) writes
``DIR/fleetprof-fleet-<version>.tar.gz`` and prints its path.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from orchestrator.paths import REPO_ROOT

# The collection's own files (galaxy.yml, meta/runtime.yml, its README), in the repository.
COLLECTION_DIR = "collection"
GALAXY_FILE = "galaxy.yml"
RUNTIME_FILE = Path("meta") / "runtime.yml"
# What a role directory may bring into the collection (ansible's role layout), minus
# library/ and action_plugins/ (they go to PLUGIN_DIRS) and molecule/ (the role's tests).
ROLE_PARTS = ("defaults", "files", "handlers", "meta", "tasks", "templates", "vars")
# A role's plugin folder -> the collection's (where its unqualified names resolve).
PLUGIN_DIRS = {"library": "plugins/modules", "action_plugins": "plugins/action"}
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ruff_cache", ".mypy_cache")


class CollectionError(Exception):
    """The repository cannot be built into a collection; the message says which file."""


@dataclass(frozen=True)
class Metadata:
    namespace: str
    name: str
    version: str
    readme: str

    @property
    def fqcn(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def tarball(self) -> str:
        return f"{self.namespace}-{self.name}-{self.version}.tar.gz"


def read_metadata(root: Path = REPO_ROOT) -> Metadata:
    """galaxy.yml's identity of the collection, checked for what the build needs."""
    path = root / COLLECTION_DIR / GALAXY_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CollectionError(f"{path}: cannot read it: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise CollectionError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise CollectionError(f"{path}: expected a mapping of galaxy.yml keys")
    values: dict[str, str] = {}
    for key in ("namespace", "name", "version", "readme"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise CollectionError(f"{path}: {key}: expected a non-empty string, got {value!r}")
        values[key] = value.strip()
    return Metadata(**values)


def module_sources(root: Path = REPO_ROOT, folder: str = "library") -> dict[str, Path]:
    """Every role's modules (or plugins of the role folder ``folder``) by name; two roles
    may not own one name."""
    found: dict[str, Path] = {}
    for module in sorted(root.glob(f"roles/*/{folder}/*.py")):
        if module.stem in found:
            raise CollectionError(
                f"{module}: module {module.stem} is also in {found[module.stem]}; "
                f"a collection has one {PLUGIN_DIRS[folder]}/ for all its roles"
            )
        found[module.stem] = module
    return found


def stage(dest: Path, root: Path = REPO_ROOT) -> Metadata:
    """Lay the collection out under ``dest`` (which must not exist) from ``root``."""
    meta = read_metadata(root)
    own = root / COLLECTION_DIR
    for required in (GALAXY_FILE, str(RUNTIME_FILE), meta.readme):
        if not (own / required).is_file():
            raise CollectionError(f"{own / required}: missing; the collection needs it")
    dest.mkdir(parents=True)
    for name in (GALAXY_FILE, str(RUNTIME_FILE), meta.readme):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(own / name, dest / name)
    playbooks = sorted((root / "playbooks").glob("*.yml"))
    if not playbooks:
        raise CollectionError(f"{root / 'playbooks'}: no playbooks to package")
    (dest / "playbooks").mkdir()
    for playbook in playbooks:
        shutil.copyfile(playbook, dest / "playbooks" / playbook.name)
    for role in sorted(p for p in (root / "roles").glob("*") if p.is_dir()):
        for part in ROLE_PARTS:
            if (role / part).is_dir():
                shutil.copytree(role / part, dest / "roles" / role.name / part, ignore=IGNORED)
    for folder, plugins in PLUGIN_DIRS.items():
        sources = module_sources(root, folder)
        if sources or folder == "library":
            (dest / plugins).mkdir(parents=True)
        for name, source in sources.items():
            shutil.copyfile(source, dest / plugins / f"{name}.py")
    return meta


def build(output: Path, root: Path = REPO_ROOT) -> Path:
    """Stage the collection and pack it with ansible-galaxy; the tarball's path."""
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    command = str(galaxy) if galaxy.is_file() else "ansible-galaxy"
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fleetprof-collection-") as tmp:
        staged = Path(tmp) / "collection"
        meta = stage(staged, root)
        done = subprocess.run(
            [command, "collection", "build", str(staged), "--output-path", str(output), "--force"],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise CollectionError(
            f"ansible-galaxy collection build failed (rc {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-1000:]}"
        )
    tarball = output / meta.tarball
    if not tarball.is_file():
        raise CollectionError(f"ansible-galaxy reported success but wrote no {tarball}")
    return tarball


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.collection",
        description="Build the fleetprof.fleet Ansible collection from this repository.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO_ROOT / "dist",
        help="directory for the tarball (default: dist/ in the repository)",
    )
    args = parser.parse_args(argv)
    try:
        tarball = build(args.output)
    except CollectionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(tarball)
    return 0


if __name__ == "__main__":
    sys.exit(main())
