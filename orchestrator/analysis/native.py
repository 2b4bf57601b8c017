"""Native frames in py-spy's stacks: their kind, their library, and unresolved addresses.

With ``--native`` py-spy merges the C/C++ frames of a thread into its Python stack. A
native frame it could symbolize reads ``deflate (libz.so.1.2.13)`` (the library) or
``zlib_compress_impl (zlibmodule.c:374)`` (debug information); one it could not reads
``0x7f5131628e03 (libz.so.1.2.13)``, or ``0x7f51316 (?)`` when it did not even know the
binary. Each address of a library is a different instruction of the same unnamed code:
counted apart, a library that takes a third of the time shows as dozens of small rows.
So :func:`fold_unresolved` turns every unresolved address into one frame per library,
``libz.so.1 (unresolved)`` (named by its soname), and a run of them (unnamed code
calling unnamed code of the same library) into a single frame.
"""

from __future__ import annotations

import re
from typing import Literal

FrameKind = Literal["python", "native"]

UNRESOLVED = "(unresolved)"
UNKNOWN_LIBRARY = "[unknown]"
_UNRESOLVED_SUFFIX = " " + UNRESOLVED
# py-spy's text for a native frame without a symbol: the address, then the binary.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{1,16} \((?P<library>.*)\)")
# Python source (and the interpreter's own pseudo-files such as <frozen importlib...>).
_PYTHON_SUFFIXES = (".py", ".pyw")
# A native frame's binary: a shared library, the interpreter, the kernel's [vdso].
_BINARY = re.compile(
    r"(\.so(\.[0-9]+)*\Z|\.so\.|\.dll\Z|\.dylib\Z|\.pyd\Z|\A\[[a-z]+\]\Z"
    r"|\A(lib)?python[0-9.]*[dmu]*(\.so.*)?\Z)",
    re.I,
)
# A shared library's full version after its soname's major: libz.so.1(.2.13).
_VERSIONED = re.compile(r"(\.so\.[0-9]+)(?:\.[0-9]+)+\Z")
# A native frame's file that is a source file (debug information), not a binary.
_SOURCE = re.compile(
    r"\.(c|h|cc|cpp|cxx|hpp|hh|hxx|inl|rs|go|pyx|pxd|pxi|f|f90|cu|cuh|m|mm|s)\Z", re.I
)


def library_name(file: str) -> str:
    """A binary as a library is known across hosts: its file name, a shared library by
    its soname's major version (``libz.so.1.2.13`` and ``libz.so.1.2.11`` are
    ``libz.so.1``), so two OS releases' copies are one row when hosts are compared."""
    base = file.rsplit("/", 1)[-1]
    return _VERSIONED.sub(r"\1", base)


def unresolved_name(library: str) -> str:
    """The one frame text for ``library``'s unresolved addresses."""
    name = library_name(library) if library not in ("", "?") else UNKNOWN_LIBRARY
    return f"{name or UNKNOWN_LIBRARY}{_UNRESOLVED_SUFFIX}"


def is_unresolved(function: str, file: str | None) -> bool:
    return file is None and function.endswith(_UNRESOLVED_SUFFIX)


def library_of(function: str, file: str | None) -> str | None:
    """The binary a native frame belongs to (``libz.so.1.2.13``), None for Python frames
    and for native frames that name a source file rather than a binary."""
    if is_unresolved(function, file):
        return function[: -len(_UNRESOLVED_SUFFIX)]
    if file is None or not _BINARY.search(file.rsplit("/", 1)[-1]):
        return None
    return library_name(file)


def frame_kind(function: str, file: str | None) -> FrameKind:
    """``native`` for compiled code, ``python`` for the rest.

    py-spy writes a native frame with its binary (``deflate (libz.so.1.2.13)``, the
    interpreter ``python3.11``, ``[vdso]``) or, from debug information, its C/C++ source
    (``zlib_compress_impl (zlibmodule.c:374)``); unresolved addresses are folded per
    library. Every other frame is Python code: a ``.py`` file, a ``<frozen ...>`` or
    ``<string>`` pseudo-file, or a script without an extension (``/usr/bin/gunicorn``).
    """
    if file is None:
        return "native" if function.endswith(_UNRESOLVED_SUFFIX) else "python"
    if file.endswith(_PYTHON_SUFFIXES) or file.startswith("<"):
        return "python"
    base = file.rsplit("/", 1)[-1]
    return "native" if _BINARY.search(base) or _SOURCE.search(base) else "python"


def fold_unresolved(parts: list[str]) -> list[str]:
    """Frame texts with every unresolved address replaced by its library's one frame, and
    runs of the same library's unresolved frames made one (the caller only calls this when
    a frame starts with ``0x``: Python names cannot)."""
    folded: list[str] = []
    for part in parts:
        if part.startswith("0x"):
            match = _ADDRESS.fullmatch(part)
            if match is not None:
                part = unresolved_name(match["library"])
                if folded and folded[-1] == part:
                    continue
        folded.append(part)
    return folded
