"""Inventory loading: any Ansible inventory source, read by Ansible itself.

The product reaches devices only through ansible-runner; here Ansible's own inventory
code answers which hosts a campaign selects, so ``-i`` accepts whatever
``ansible-playbook -i`` does (a file, a directory, a plugin config, ``host1,host2,``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.paths import REPO_ROOT
from orchestrator.stages.rundir import host_name_problem

DEFAULT_INVENTORY = REPO_ROOT / "inventory" / "localhost.yml"
HW_MODEL_VAR = "fleetprof_hw_model"
# compare.group_by values that come from the hosts' facts, not from an inventory variable.
FACT_KEYS = ("hw_model", "arch")


class InventoryError(Exception):
    """Bad inventory input; the message names the source and what is wrong."""


@dataclass(frozen=True)
class Inventory:
    source: str  # what ansible-runner gets as -i: an absolute path or a host list
    hosts: list[str]
    # Hostvar fleetprof_hw_model where the inventory sets it: known even for a host
    # that is never reached.
    hw_models: dict[str, str] = field(default_factory=dict)
    # compare.group_by's inventory variable and each host's value of it (hosts without
    # it are left out): what the report groups by when it is not hw_model or arch.
    group_by: str | None = None
    group_values: dict[str, str] = field(default_factory=dict)


def _is_host_list(source: str) -> bool:
    return "," in source and not Path(source).exists()


def resolve_source(source: str | None) -> str:
    if source is None:
        return str(DEFAULT_INVENTORY)
    if _is_host_list(source):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise InventoryError(f"{source}: inventory not found")
    if path.is_file() and not os.access(path, os.R_OK):
        raise InventoryError(f"{source}: inventory is not readable")
    return str(path.resolve())


def load_inventory(
    source: str | None, pattern: str, limit: str | None = None, *, group_by: str | None = None
) -> Inventory:
    """Hosts selected by ``pattern`` (the campaign's ``hosts``) and ``limit`` (``-l``);
    with ``group_by`` (an inventory variable), each host's value of it."""
    resolved = resolve_source(source)
    from ansible import constants
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.display import Display

    # A source no plugin can parse must be an error here, not a warning and zero hosts.
    constants.INVENTORY_UNPARSED_IS_FAILED = True
    shown = source or str(DEFAULT_INVENTORY)
    display = Display()
    warnings: list[str] = []
    originals = display.warning, display.error_as_warning

    def keep(msg: object, exception: BaseException | None = None, *_: object, **__: object) -> None:
        warnings.append(f"{msg}: {exception}" if exception is not None else str(msg))

    # Ansible prints each plugin's complaint; collect them for one clear message instead.
    display.warning = keep
    display.error_as_warning = keep
    try:
        manager = InventoryManager(loader=DataLoader(), sources=[resolved])
        # What Ansible said while reading the source (a group it skipped, say): why a
        # pattern may match nothing.
        parse_warnings = list(warnings)
        selected = _select(manager, shown, pattern, limit)
        hosts = [host.name for host in selected]
        hw_models = _var_values(manager, selected, HW_MODEL_VAR)
        grouped = group_by if group_by and group_by not in FACT_KEYS else None
        group_values = _var_values(manager, selected, grouped) if grouped else {}
    except AnsibleError:
        raise InventoryError(f"{shown}: {_parse_failure(resolved, warnings)}") from None
    finally:
        display.warning, display.error_as_warning = originals
    for host in hosts:
        problem = host_name_problem(host)
        if problem is not None:
            raise InventoryError(
                f"{shown}: host {host!r} cannot be profiled under that name: {problem} "
                "(each host's results go to a directory of that name; name the host "
                "differently and give its address in ansible_host)"
            )
    if not hosts:
        what = f"hosts pattern {pattern!r}" + (f" with limit {limit!r}" if limit else "")
        why = f" (Ansible: {parse_warnings[0].splitlines()[0]})" if parse_warnings else ""
        raise InventoryError(f"{shown}: {what} matches no hosts{why}")
    return Inventory(
        source=resolved,
        hosts=hosts,
        hw_models=hw_models,
        group_by=grouped,
        group_values=group_values,
    )


def _select(manager: Any, shown: str, pattern: str, limit: str | None) -> list[Any]:
    """The hosts ``pattern`` and ``limit`` select. A pattern Ansible cannot read is bad
    input and said so; Ansible raises AnsibleError (``~(``, ``all[99]``) or, for an
    operator with nothing after it (``web:&``, ``!``), IndexError."""
    from ansible.errors import AnsibleError

    what, value = "limit", limit
    try:
        if limit:
            manager.subset(limit)
            manager.get_hosts()  # Ansible reads a limit when it first applies it
        what, value = "hosts pattern", pattern
        return list(manager.get_hosts(pattern=pattern))
    except (AnsibleError, IndexError) as err:
        reason = (str(err).splitlines() or [""])[0]
        if isinstance(err, IndexError) or not reason:
            reason = "a ':', '&' or '!' with no group or host after it"
        raise InventoryError(
            f"{shown}: {what} {value!r} is not a valid Ansible host pattern: {reason}"
        ) from None


def group_values(inventory: Inventory, group_by: str) -> dict[str, str]:
    """Each host's value of the inventory variable ``group_by`` ({} for hw_model and
    arch, which come from the facts). Read again from the inventory's source when it was
    loaded without it; a source that cannot be read again gives {} (every host then
    groups as "unknown"), never an error this late in a run."""
    if group_by in FACT_KEYS:
        return {}
    if inventory.group_by == group_by:
        return dict(inventory.group_values)
    return host_var_values(inventory.source, inventory.hosts, group_by)


def host_var_values(source: str, hosts: list[str], var: str) -> dict[str, str]:
    """``var`` for each of ``hosts`` in the inventory ``source`` (hosts without it, or
    with a value that is not a plain scalar, are left out)."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    try:
        manager = InventoryManager(loader=DataLoader(), sources=[source])
        found = [h for name in hosts if (h := manager.get_host(name)) is not None]
        return _var_values(manager, found, var)
    except (AnsibleError, OSError):
        return {}


def _var_values(manager: Any, hosts: list[Any], var: str) -> dict[str, str]:
    """A host's value of ``var`` as the inventory sets it (host, group and all vars).
    Templated values (``{{ ... }}``) are left out: they need facts the controller does
    not have before preflight."""
    from ansible.vars.manager import VariableManager

    variables = VariableManager(loader=manager._loader, inventory=manager)
    values = {}
    for host in hosts:
        value = variables.get_vars(host=host, include_hostvars=False).get(var)
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, int | float):
            value = str(value)
        if isinstance(value, str) and value and "{{" not in value:
            values[host.name] = str(value)
    return values


def _parse_failure(source: str, warnings: list[str]) -> str:
    """The most telling of Ansible's per-plugin complaints about a source."""
    if source.endswith((".yml", ".yaml")):
        try:
            yaml.safe_load(Path(source).read_text(errors="replace"))
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            return f"YAML syntax error at {where}{err.problem or err}"
        except yaml.YAMLError as err:
            return f"YAML syntax error: {err}"
    preferred = "'yaml'" if source.endswith((".yml", ".yaml", ".json")) else "'ini'"
    failures = [w for w in warnings if w.startswith("Failed to parse")]
    chosen = next((w for w in failures if preferred in w), failures[0] if failures else "")
    lines = [line.strip() for line in chosen.splitlines() if line.strip()]
    if not lines:
        return "cannot be parsed as an Ansible inventory"
    origin = next((line for line in lines if line.startswith("Origin:")), "")
    return lines[0] + (f" ({origin})" if origin else "")
