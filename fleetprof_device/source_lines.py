"""The source text of py-spy's hottest lines, read on the device after the window.

py-spy's raw output names a frame ``function (file:line)``, the file shortened to its
package part: ``pkg/sub/mod.py`` for a module of a package, a script's bare ``app.py``,
``json/decoder.py`` for the standard library. The controller cannot read the device's files;
the runner can, so once every profiler has stopped it reads, for the ``HOT_FUNCTIONS``
functions with the most self samples (the leaf of a stack), the ``HOT_LINES`` lines of each
with the most, those lines' text, and writes them as ``SOURCE_LINES_FILE``
(fleetprof_device/contract.py). The controller makes the same choice from the same output,
so it finds the text of every line it shows.

A shortened name is looked for under the target's working directory, the directories of
the scripts on its command line (and the package roots above them), its PYTHONPATH, its
interpreter's library and site-packages directories and the runner's own ``sys.path``.
Only a regular file named ``*.py`` is read (a target's code objects name whatever they
like; this runner may read more than the target's user), and a candidate counts only when
it defines the function (``def NAME`` / ``class NAME`` before the line) or the function is
a ``<module>``, ``<lambda>`` or the like. A file that is not found is left out: the report
then shows the line without its text.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import stat
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from .contract import (
    HOT_FUNCTIONS,
    HOT_LINES,
    SOURCE_FILE_MAX_BYTES,
    SOURCE_LINE_MAX_CHARS,
    SOURCE_LINES_FILE,
    SOURCE_LINES_MAX_BYTES,
    SOURCE_LINES_OPTION,
    SOURCE_LINES_SCHEMA,
)
from .files import write_json
from .procfs import os_error_text
from .profilers import ProfilerRun
from .runlog import RunnerLog
from .target import Target

FunctionKey = Tuple[str, str]
_FILE_LINE = re.compile(r"(.*):([0-9]{1,9})")
_SOURCE_SUFFIXES = (".py", ".pyw")
_MAX_ROOTS = 64
# Under an interpreter's prefix: the standard library and where packages are installed.
_LIBRARY_DIRS = ("lib/python3*", "lib/python3*/site-packages", "lib/python3/dist-packages")
_MAX_ARGS = 64
_PACKAGE_DEPTH = 16  # package directories climbed above a script to its root
# Reading stops (no text) this close to the hard deadline: the archive must still be packed.
_DEADLINE_MARGIN_S = 1.0
_CHECK_EVERY = 4096  # folded lines between two looks at the clock


def leaf_frame(stack: str) -> Optional[Tuple[str, str, int]]:
    """(function, file, line) of a folded stack's last frame, or None when it names no
    line. The split is orchestrator/analysis/stacks.py's parse_frame: at the first `` (``
    of a frame that ends with ``)``."""
    frame = stack.rsplit(";", 1)[-1]
    if not frame.endswith(")"):
        return None
    cut = frame.find(" (")
    if cut <= 0:
        return None
    match = _FILE_LINE.fullmatch(frame[cut + 2 : -1])
    if match is None or not match.group(1):
        return None
    return frame[:cut], match.group(1), int(match.group(2))


def hot_leaves(
    path: str, max_bytes: int, stop_at: float
) -> Optional[Dict[FunctionKey, Dict[int, int]]]:
    """Self samples by function and line from a folded file (its first ``max_bytes``);
    None when it cannot be read, or was not read by ``stop_at``."""
    counts: Dict[FunctionKey, Dict[int, int]] = {}
    read = 0
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle):
                read += len(raw)
                if read > max_bytes:
                    break
                if number % _CHECK_EVERY == 0 and time.time() >= stop_at:
                    return None
                stack, _, count_text = raw.decode("utf-8", "replace").rstrip().rpartition(" ")
                if not count_text.isdigit() or len(count_text) > 18:
                    continue
                leaf = leaf_frame(stack)
                if leaf is None:
                    continue
                lines = counts.setdefault((leaf[0], leaf[1]), {})
                lines[leaf[2]] = lines.get(leaf[2], 0) + int(count_text)
    except OSError:
        return None
    return counts


def hottest(
    counts: Dict[FunctionKey, Dict[int, int]], functions: int, lines: int
) -> List[Tuple[FunctionKey, List[int]]]:
    """The ``functions`` functions with the most self samples, each with its ``lines``
    hottest lines; ties by name, file and line (the controller's order)."""
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0][0], kv[0][1]))
    return [
        (key, sorted(by_line, key=lambda n: (-by_line[n], n))[:lines])
        for key, by_line in ranked[:functions]
    ]


def _package_root(directory: str) -> str:
    """The first directory above ``directory`` (itself included) without __init__.py:
    the root py-spy shortens a package's file names against."""
    for _ in range(_PACKAGE_DEPTH):
        if not os.path.isfile(os.path.join(directory, "__init__.py")):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def _interpreters(exes: List[str], argv: List[str], path: Optional[str]) -> List[str]:
    """The target's Python interpreter, as absolute paths: the executable it ran, its
    command's first word when that is a python (looked up in PATH) or a script whose
    ``#!`` line names one."""
    found = [exe for exe in exes if os.path.isabs(exe)]
    program = shutil.which(argv[0], path=path) if argv else None
    if program is None:
        return found
    if "python" in os.path.basename(program):
        return [*found, os.path.abspath(program)]
    with contextlib.suppress(OSError), open(program, "rb") as handle:
        first = handle.readline(256).decode("utf-8", "replace")
        words = first[2:].split() if first.startswith("#!") else []
        if words and "python" in os.path.basename(words[0]) and os.path.isabs(words[0]):
            found.append(words[0])
        elif len(words) > 1 and os.path.basename(words[0]) == "env" and "python" in words[1]:
            which = shutil.which(words[1], path=path)
            if which:
                found.append(which)
    return found


def _pythonpath(env: Dict[str, str], pid: Optional[int]) -> List[str]:
    """The target's PYTHONPATH: the plan's, and the live process's (when readable)."""
    paths = env.get("PYTHONPATH", "").split(":")
    if pid:
        with contextlib.suppress(OSError), open("/proc/%d/environ" % pid, "rb") as handle:
            for entry in handle.read(1 << 20).split(b"\0"):
                if entry.startswith(b"PYTHONPATH="):
                    paths += entry[11:].decode("utf-8", "replace").split(":")
    return [p for p in paths if p]


def search_roots(
    cmdline: Optional[List[str]],
    cwds: Iterable[Optional[str]],
    env: Optional[Dict[str, str]] = None,
    exes: Iterable[Optional[str]] = (),
    pid: Optional[int] = None,
) -> List[str]:
    """Directories a shortened file name may be relative to, most likely first: the
    target's working directories ``cwds``, its scripts' directories and package roots,
    its PYTHONPATH, the library directories of its interpreter (``exes``: the executable
    it ran, when known; ``pid``: the live process, for its environment)."""
    env = env or {}
    workdirs = [c for c in cwds if c]
    roots: List[str] = list(workdirs)
    argv = [str(a) for a in (cmdline or [])[:_MAX_ARGS]]
    for arg in argv:
        if not arg.endswith(_SOURCE_SUFFIXES):
            continue
        for base in workdirs or [os.getcwd()]:
            script = os.path.join(base, arg)
            if os.path.isfile(script):
                directory = os.path.dirname(os.path.abspath(script))
                roots.extend([directory, _package_root(directory)])
                break
    roots.extend(_pythonpath(env, pid))
    interpreters = _interpreters([e for e in exes if e], argv, env.get("PATH"))
    for interpreter in interpreters:
        # A virtual environment's python is a link: its own prefix has the site-packages,
        # the linked interpreter's the standard library.
        for path in (interpreter, os.path.realpath(interpreter)):
            prefix = os.path.dirname(os.path.dirname(path))
            for pattern in _LIBRARY_DIRS:
                roots.extend(sorted(glob.glob(os.path.join(prefix, pattern))))
    runner = os.path.realpath(sys.executable)
    if not interpreters or any(os.path.realpath(i) == runner for i in interpreters):
        # The runner's own library only for a target on the same interpreter (or an
        # unknown one): another Python's json/decoder.py is another text.
        roots.extend(p for p in sys.path if p and os.path.isdir(p))
    distinct: List[str] = []
    for root in roots:
        if os.path.isabs(root) and root not in distinct:
            distinct.append(root)
    return distinct[:_MAX_ROOTS]


def _defines(name: str) -> Optional[re.Pattern[str]]:
    """What a file must hold for py-spy's function ``name`` to be in it (None: anything)."""
    last = name.rsplit(".", 1)[-1]
    if not last or last.startswith("<"):
        return None
    return re.compile(r"\s*(?:async\s+def|def|class)\s+%s\b" % re.escape(last))


def read_lines(
    path: str, wanted: Set[int], defines: Dict[str, Optional[re.Pattern[str]]]
) -> Optional[Tuple[Dict[int, str], Dict[str, int]]]:
    """The ``wanted`` lines of a ``*.py`` regular file (stripped, cut) and where each
    function of ``defines`` (name -> pattern) is first defined; None when the file cannot
    be read."""
    real = os.path.realpath(path)
    if not real.endswith(_SOURCE_SUFFIXES) or not wanted:
        return None
    found: Dict[int, str] = {}
    defined: Dict[str, int] = {}
    last = max(wanted)
    try:
        with open(real, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            read = 0
            for number, raw in enumerate(handle, start=1):
                read += len(raw)
                if number > last or read > SOURCE_FILE_MAX_BYTES:
                    break
                text = raw.decode("utf-8", "replace")
                for name, pattern in defines.items():
                    if pattern is not None and name not in defined and pattern.match(text):
                        defined[name] = number
                if number in wanted:
                    found[number] = text.strip()[:SOURCE_LINE_MAX_CHARS]
    except OSError:
        return None
    return found, defined


def _resolve(
    name: str, roots: List[str], functions: List[Tuple[str, List[int]]]
) -> Optional[Tuple[str, Dict[int, str]]]:
    """The first candidate file for py-spy's ``name`` that defines each of its
    ``functions`` (name, hot lines) before that function's lines, and the lines' text."""
    defines = dict((function, _defines(function)) for function, _ in functions)
    wanted = set(n for _, numbers in functions for n in numbers)
    candidates = [name] if os.path.isabs(name) else [os.path.join(r, name) for r in roots]
    for candidate in candidates:
        if not os.path.isfile(candidate):
            continue
        read = read_lines(candidate, wanted, defines)
        if read is None:
            continue
        text, defined = read
        if all(
            defines[function] is None or defined.get(function, 0) in range(1, min(numbers) + 1)
            for function, numbers in functions
        ):
            return os.path.realpath(candidate), text
    return None


def source_lines(
    folded: str,
    max_bytes: int,
    roots: List[str],
    stop_at: float,
    functions: int = HOT_FUNCTIONS,
    lines: int = HOT_LINES,
) -> Optional[Dict[str, Any]]:
    """The document ``SOURCE_LINES_FILE`` holds for the py-spy output ``folded``, or None
    when there is nothing to say (no output, no line, no time)."""
    counts = hot_leaves(folded, max_bytes, stop_at)
    if not counts:
        return None
    by_file: Dict[str, List[Tuple[str, List[int]]]] = {}
    for (function, name), numbers in hottest(counts, functions, lines):
        by_file.setdefault(name, []).append((function, numbers))
    files: Dict[str, Any] = {}
    missing: List[str] = []
    size = 0
    for name, hot in by_file.items():
        if time.time() >= stop_at:
            missing.append(name)
            continue
        found = _resolve(name, roots, hot)
        if found is None:
            missing.append(name)
            continue
        path, text = found
        size += len(path) + sum(len(t) + 12 for t in text.values())
        if size > SOURCE_LINES_MAX_BYTES:
            missing.append(name)
            continue
        files[name] = {"path": path, "lines": dict((str(n), t) for n, t in sorted(text.items()))}
    return {"schema": SOURCE_LINES_SCHEMA, "files": files, "missing": missing}


def wanted_output(spec: Dict[str, Any]) -> Optional[str]:
    """The output whose hot lines a profiler's plan asks the runner to read, or None."""
    options = spec.get("options")
    outputs = spec.get("outputs") or []
    if isinstance(options, dict) and options.get(SOURCE_LINES_OPTION) is True and outputs:
        return str(outputs[0])
    return None


def after_window(
    profilers: List[ProfilerRun], target: Target, workdir: str, stop_at: float, log: RunnerLog
) -> None:
    """For each started profiler whose plan asks for it, ``SOURCE_LINES_FILE`` in the
    workdir (``stop_at``: the hard deadline). A failure costs the text only: it is logged."""
    for prof in profilers:
        output = wanted_output(prof.spec)
        if output is None or prof.child is None:
            continue
        started = time.time()
        seen = target.seen
        roots = search_roots(
            target.cmdline,
            [seen.get("cwd"), target.spec.get("cwd") if target.mode == "launch" else None, workdir],
            target.spec.get("env") or {},
            [seen.get("exe")],
            target.pid,
        )
        try:
            document = source_lines(
                os.path.join(workdir, output),
                int(prof.spec.get("max_bytes") or 0),
                roots,
                stop_at - _DEADLINE_MARGIN_S,
            )
            if document is None:
                log(
                    "%s: source lines: none (no sampled line in %s, or no time)"
                    % (prof.name, output)
                )
                continue
            write_json(os.path.join(workdir, SOURCE_LINES_FILE), document)
        except (OSError, ValueError) as exc:
            log("%s: source lines: not written: %s" % (prof.name, os_error_text(exc)))
            continue
        log(
            "%s: source lines: %d files read, %d not found, in %.2f s"
            % (prof.name, len(document["files"]), len(document["missing"]), time.time() - started)
        )
