"""What the tool cache deals in: its errors, its records, and the device architectures
(with the platform tags of py-spy's wheels and the ELF machine of each)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PYSPY_VERSION = "0.4.3"
PYSPY = "py-spy"
PYSPY_DIST = "py_spy"  # the project's name as wheel filenames spell it

# Platform tags py-spy's Linux wheels carry, per architecture. The wheels are tagged
# py2.py3-none, so the Python version pip is told about does not matter.
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "x86_64": ("manylinux_2_5_x86_64", "manylinux1_x86_64"),
    "aarch64": ("manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "armv7l": ("manylinux_2_17_armv7l", "manylinux2014_armv7l"),
    "i686": ("manylinux_2_5_i686", "manylinux1_i686"),
}
SUPPORTED_ARCHES: tuple[str, ...] = tuple(PLATFORM_TAGS)

# ELF e_machine of each architecture: a last check that the wheel holds the right binary.
ELF_MACHINE = {"x86_64": 62, "aarch64": 183, "armv7l": 40, "i686": 3}

# ansible_architecture / uname -m spellings -> the names used here.
_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x86-64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "armv7": "armv7l",
    "armhf": "armv7l",
    "armv7hl": "armv7l",
    # A 32-bit userland on an ARMv8 kernel reports armv8l; it runs armv7 binaries.
    "armv8l": "armv7l",
    "i386": "i686",
    "i486": "i686",
    "i586": "i686",
    "x86": "i686",
}


class ToolCacheError(Exception):
    """A tool could not be fetched or verified; the message says what and how to fix it."""


class ToolUnavailable(ToolCacheError):
    """No build of the tool exists for an architecture; the message is the reason."""


class Unreachable(ToolCacheError):
    """The index or its files could not be reached: the offline case."""


@dataclass(frozen=True)
class CachedTool:
    """A verified tool binary in the controller's cache."""

    name: str
    version: str
    arch: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class PipIndex:
    """The package index pip is configured with, and how to reach it."""

    url: str
    cert: str | None = None
    proxy: str | None = None


@dataclass(frozen=True)
class PublishedFile:
    """One file of a project as the index lists it."""

    filename: str
    url: str
    sha256: str | None


Log = Callable[[str], None]


def normalize_arch(arch: str) -> str:
    """Map an ``ansible_architecture`` / ``uname -m`` value to the cache's name for it.

    Unknown architectures come back lowercased and otherwise unchanged.
    """
    name = arch.strip().lower()
    return _ARCH_ALIASES.get(name, name)
