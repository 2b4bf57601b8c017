"""Where the documentation's commands run: a copy of the repository's files, never the
repository itself, with the example inventory's devices played by the test fleet.

The substitutions, all of them (each keeps a command inside the sandbox; the text the
documentation shows is otherwise run as it stands, through ``bash -c``):

1. ``inventory/example-fleet.yml`` in the copy is rewritten: the same host names, groups
   and group variables, with each host's connection variables (address, port, user, key,
   known_hosts) taken from a test-fleet host. A command that says
   ``-i inventory/example-fleet.yml`` therefore reaches the test fleet.
2. ``fleetprof schedule install|list|remove`` without ``--unit-dir`` or ``--cron-file``
   get ``--cron-file <sandbox>/.sandbox/crontab``: what a real install would write to
   systemd or /etc/cron.d lands in a file of the sandbox, and nothing is activated.
3. Absolute paths under ``/var/lib/node_exporter/`` (the textfile collector's directory
   the docs write Prometheus files to) point into ``<sandbox>/.sandbox/node_exporter/``.
4. ``HOME`` is ``<sandbox>/.sandbox/home``, so what a command writes to ``~`` (shell
   completion files, ``--user`` schedules, Ansible's local temporary files) stays in the
   sandbox; ``FLEETPROF_CACHE_DIR`` keeps the controller's py-spy tool cache, which lives
   under the real home and would otherwise be downloaded again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLE_INVENTORY = Path("inventory/example-fleet.yml")
# The fleet variables that say how to reach a host; everything else comes from the example.
CONNECTION_VARS = (
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_ssh_private_key_file",
    "ansible_ssh_common_args",
    "ansible_python_interpreter",
)
_SCHEDULE_RE = re.compile(r"\bfleetprof schedule (install|list|remove)\b")
_NODE_EXPORTER = "/var/lib/node_exporter/"


def copy_repository(repo: Path, dest: Path) -> Path:
    """The repository's files (tracked, and new ones git does not ignore) copied to
    ``dest``; its venv linked, so ``.venv/bin/fleetprof`` works there as documented."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in sorted(set(filter(None, listed.split("\0")))):
        source = repo / name
        if not source.is_file() or source.is_symlink():
            continue  # deleted in the working tree, or a link (none are expected)
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    if (repo / ".venv").is_dir():
        (dest / ".venv").symlink_to(repo / ".venv")
    return dest


def example_hosts(example: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(host, group) of every host in the example inventory, in file order."""
    found: list[tuple[str, str]] = []

    def walk(group: str, node: Mapping[str, Any]) -> None:
        for host in node.get("hosts") or {}:
            found.append((str(host), group))
        for child, sub in (node.get("children") or {}).items():
            walk(str(child), sub or {})

    walk("all", example.get("all") or {})
    return found


def map_inventory(example: Mapping[str, Any], fleet_inventory: Mapping[str, Any]) -> dict[str, Any]:
    """The example inventory with each of its hosts reached like one fleet host.

    Example hosts are matched to fleet hosts by ``fleetprof_hw_model``: the fleet is
    brought up with one model per example group, named as that group's model. Host-level
    connection variables win over the example's group variables (``ansible_user: pi``)."""
    fleet_by_model: dict[str, list[dict[str, Any]]] = {}
    for _, host_vars in _fleet_hosts(fleet_inventory):
        fleet_by_model.setdefault(str(host_vars.get("fleetprof_hw_model")), []).append(host_vars)
    mapped = yaml.safe_load(yaml.safe_dump(dict(example)))

    def walk(node: dict[str, Any], inherited: dict[str, Any]) -> None:
        here = {**inherited, **(node.get("vars") or {})}
        hosts = node.get("hosts") or {}
        for name in list(hosts):
            model = str({**here, **(hosts[name] or {})}.get("fleetprof_hw_model"))
            pool = fleet_by_model.get(model)
            if not pool:
                raise ValueError(f"no test-fleet host left for {name} (model {model})")
            source = pool.pop(0)
            hosts[name] = {
                **(hosts[name] or {}),
                **{key: source[key] for key in CONNECTION_VARS if key in source},
            }
        for child in (node.get("children") or {}).values():
            if child is not None:
                walk(child, here)

    walk(mapped["all"], {})
    return dict(mapped)


def _fleet_hosts(inventory: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Mapping[str, Any]) -> None:
        for name, host_vars in (node.get("hosts") or {}).items():
            found.append((str(name), dict(host_vars or {})))
        for child in (node.get("children") or {}).values():
            walk(child or {})

    walk(inventory.get("all") or {})
    return found


def example_models(example: Mapping[str, Any]) -> dict[str, int]:
    """Hardware model -> how many example hosts have it: the test fleet to bring up."""
    counts: dict[str, int] = {}

    def walk(node: Mapping[str, Any], inherited: dict[str, Any]) -> None:
        here = {**inherited, **(node.get("vars") or {})}
        for host_vars in (node.get("hosts") or {}).values():
            model = str({**here, **(host_vars or {})}.get("fleetprof_hw_model", "unknown"))
            counts[model] = counts.get(model, 0) + 1
        for child in (node.get("children") or {}).values():
            walk(child or {}, here)

    walk(example.get("all") or {}, {})
    return counts


@dataclass(frozen=True)
class Sandbox:
    root: Path  # the repository copy: every command's working directory
    venv_bin: Path
    # SSH's control sockets: a short path (sockets are limited to 107 bytes, and the
    # sandbox home is deep in pytest's temporary directory).
    control_dir: Path

    @property
    def private(self) -> Path:
        """Where the substituted paths point (crontab, node_exporter's directory)."""
        return self.root / ".sandbox"

    @property
    def crontab(self) -> Path:
        return self.private / "crontab"

    def command_text(self, text: str) -> str:
        """The documented command with the substitutions of this module's docstring."""
        if "--unit-dir" not in text and "--cron-file" not in text:
            text = _SCHEDULE_RE.sub(lambda m: f"{m.group(0)} --cron-file {self.crontab}", text)
        return text.replace(_NODE_EXPORTER, f"{self.private}/node_exporter/")

    @property
    def home(self) -> Path:
        return self.private / "home"

    def environment(self) -> dict[str, str]:
        from orchestrator import toolcache

        path = os.pathsep.join([str(self.venv_bin), os.environ.get("PATH", "")])
        return {
            **os.environ,
            "PATH": path,
            "HOME": str(self.home),
            "FLEETPROF_CACHE_DIR": str(toolcache.cache_dir()),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "NO_COLOR": "1",
            "COLUMNS": "120",
            # Ansible's ad-hoc commands in the docs read the copy's ansible.cfg, as an
            # operator's would from the repository root.
            "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"),
        }

    def run(self, text: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", self.command_text(text)],
            cwd=self.root,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def prepare(self) -> None:
        (self.private / "node_exporter" / "textfile").mkdir(parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
