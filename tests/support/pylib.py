"""A Python library directory for the test fleet's hosts, made of distributions installed
in the controller's venv (memray, line_profiler): the hosts share /usr with the
controller, so a library built for the same Python runs there, but they cannot see a venv
under a private directory (/tmp, /root, /opt, /var/tmp, /run: tests/fleet/README.md), where
a clean clone's venv may well be. The distributions and what they require (without
extras) are copied, file by file as each one's RECORD lists them."""

from __future__ import annotations

import re
import shutil
from importlib import metadata
from pathlib import Path

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _required(dist: metadata.Distribution) -> list[str]:
    """The names of the distributions ``dist`` requires, extras and other Pythons left out."""
    names = []
    for spec in dist.requires or []:
        name, _, marker = spec.partition(";")
        if "extra" in marker:
            continue
        if "python_version" in marker and "<" in marker and "3.11" not in marker:
            continue  # backports (tomli) for older Pythons
        found = _NAME.match(name.strip())
        if found:
            names.append(found.group(0))
    return names


def copy_distributions(names: list[str], dest: Path) -> list[str]:
    """Copy ``names`` and everything they require into ``dest`` (a site directory) ->
    the distributions copied."""
    todo, done = list(names), []
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in done:
            continue
        done.append(key)
        base = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            source = base / file
            if ".." in file.parts or file.parts[0] == "bin" or not source.is_file():
                continue
            target = dest / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        todo.extend(_required(dist))
    return done
