"""What every profiler module provides, and the values it returns.

A profiler is one module under ``orchestrator/profilers/`` with:

- ``NAME``: its key under ``profilers:`` in a campaign, and its name in plans, manifests
  and the report;
- ``TOOL``: the tool-cache entry it needs pushed to devices (``None`` when it needs none);
  a module with a ``TOOL`` also provides ``tool_home()`` and ``choose_tool(arch, log)``
  (:class:`ToolSource`);
- ``LAUNCHER``: it can start the command of a launch target (only one profiler may);
  ``LAUNCH_ONLY``: it cannot attach, it only profiles a command it starts; ``IN_TARGET``
  (optional, false by default): it runs inside the program the runner itself starts
  (cProfile changes the command), so what else lives in that program (tracemalloc's
  startup hook) runs beside it;
- ``OUTPUT``: the raw file, in the session directory, that its parser reads;
  ``INSPECT_SETTINGS`` (optional): stand-ins for the campaign settings that have no
  default and that its parse does not read, so that ``fleetprof inspect`` can parse a file
  without the run's campaign;
- ``plan(campaign, facts, tool) -> ProfilerPlan``: the exact argv for the device runner,
  or ``status="skipped"`` with the reason, decided before anything runs;
- ``tool_push(facts, tool) -> dict | None``: what provision copies for it;
- ``parse(session_dir, entry, campaign) -> ProfileResult``: its raw files (device output:
  untrusted) to normalized data.

``orchestrator/profilers/__init__.py`` lists them; nothing else knows their names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.analysis.lines import LineCounts
from orchestrator.analysis.stacks import StackProfile
from orchestrator.campaign.model import Campaign
from orchestrator.models import HostFacts, ProfilerPlan


@dataclass(frozen=True)
class ToolChoice:
    """What the controller's tool cache has for one tool on one architecture."""

    version: str
    src: str | None  # controller path of the binary; None when there is no build
    sha256: str | None
    problem: str | None  # why there is no binary (no build for the arch, download failed)


@dataclass
class ProfileResult:
    """What a profiler's parse() found. ``stacks`` (py-spy) feeds the fleet analysis and the
    exports; it is not part of report.json."""

    metrics: dict[str, float] = field(default_factory=dict)
    top_functions: list[dict[str, Any]] = field(default_factory=list)
    flamegraph: dict[str, Any] | None = None
    data_quality: list[str] = field(default_factory=list)
    # Per-profiler tables that are not scalars, by name (e.g. nsys's "gpu_kernels": the top
    # kernels by total time, one dict per row). Not metrics: nothing compares them across
    # hosts; they are kept for the report and the user's own tooling.
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Time series, downsampled (at most 200 points, evenly picked), flat and keyed
    # ``<source>.<name>``: each source (system, memory, iotop) has its own time axis
    # ``<source>.t`` (seconds from that source's first sample) and every other
    # ``<source>.*`` list has the same length as that axis; None where a sample lacks the
    # value (no rate for the first sample, the target not yet found).
    series: dict[str, list[float | None]] = field(default_factory=dict)
    # The repetitions behind a metric, by metric name (the probe's): a distribution that
    # the nightly check tests against the baseline's.
    samples: dict[str, list[float]] = field(default_factory=dict)
    stacks: StackProfile | None = None
    # py-spy's hot lines: report.json hosts[].hot_lines (orchestrator/analysis/lines.py).
    hot_lines: list[dict[str, Any]] = field(default_factory=list)
    # The self samples by function and line they were made from (``stacks``' line counts),
    # counted once here: the group view sums them. Not part of report.json.
    line_counts: LineCounts | None = None


class Profiler(Protocol):
    NAME: str
    TOOL: str | None
    LAUNCHER: bool  # can start the command of a launch target
    LAUNCH_ONLY: bool  # profiles only a command it starts itself (cannot attach)
    OUTPUT: str  # the raw file its parser reads (what `fleetprof inspect` feeds it)

    def plan(
        self, campaign: Campaign, facts: HostFacts, tool: ToolChoice | None
    ) -> ProfilerPlan: ...

    def tool_push(self, facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None: ...

    def parse(
        self, session_dir: Path, entry: dict[str, Any], campaign: Campaign
    ) -> ProfileResult: ...


class ToolSource(Protocol):
    """A profiler whose ``TOOL`` the controller's tool cache provides."""

    TOOL: str | None

    def tool_home(self) -> str: ...

    def choose_tool(self, arch: str, log: Callable[[str], None] | None) -> ToolChoice: ...


def read_capped(path: Path, max_bytes: int) -> tuple[str, bool]:
    """A device's text output, cut at ``max_bytes``, and whether it was cut. Bytes that
    are not UTF-8 are replaced: the device is not trusted to write clean text."""
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    return data[:max_bytes].decode("utf-8", errors="replace"), len(data) > max_bytes


def begin_parse(session_dir: Path, output: str) -> tuple[ProfileResult, Path | None]:
    """The opening of every parse(): a fresh result, and the path of the raw ``output``
    in the session directory (None when the device sent none: nothing to parse)."""
    path = session_dir / output
    return ProfileResult(), (path if path.is_file() else None)


def begin_parse_text(
    session_dir: Path, output: str, max_bytes: int, what: str
) -> tuple[ProfileResult, str | None, bool]:
    """``begin_parse`` for a text output: the result, the text cut at ``max_bytes`` (None
    when absent, or unreadable: then the result says so, naming ``what``), and whether it
    was cut."""
    result = ProfileResult()
    read = _read_output(session_dir / output, max_bytes, what, result)
    if read is None:
        return result, None, False
    return result, read[0], read[1]


def _read_output(
    path: Path, max_bytes: int, what: str, result: ProfileResult
) -> tuple[str, bool] | None:
    """``read_capped`` for a profiler's parse(): None when the file is absent, or when it
    cannot be read (then ``result`` says so, naming ``what``)."""
    try:
        if not path.is_file():
            return None
        return read_capped(path, max_bytes)
    except OSError as error:
        result.data_quality.append(f"{what} could not be read: {error}")
        return None


def launcher_taken(campaign: Campaign, name: str) -> str | None:
    """Why ``name`` cannot start the command: a launcher listed before it already does."""
    # Imported here: the registry imports every profiler module, and they import this one.
    from orchestrator.profilers import is_launcher

    for other in campaign.profilers.enabled:
        if other == name:
            return None
        if is_launcher(other):
            return (
                f"only one profiler can start the command and {other} does: profile with "
                f"{name} in a campaign of its own"
            )
    return None


# -- skip reasons several profilers give (each module keeps its own constant: the texts
# are quoted in docs/troubleshooting.md) -------------------------------------------------


# CPython's interpreters by name: python, python3, python3.11, python3.11d, python3.8m,
# python3.11-dbg (a path to one counts): the profilers that run inside a launched Python
# program (cprofile, tracemalloc) recognise its command by this one rule.
PYTHON_RE = re.compile(r"python(\d+(\.\d+)?)?(-dbg|[dmu]*)")


def is_python(program: str) -> bool:
    """Whether a command's first word names a Python interpreter."""
    return PYTHON_RE.fullmatch(os.path.basename(program)) is not None


def needs_launch(product: str) -> str:
    """Why a ``LAUNCH_ONLY`` profiler is skipped for an attach or probe target."""
    return (
        f"{product} cannot attach to a running process: it profiles only a command it "
        "starts itself (use `target: launch`)"
    )


def no_nvidia_driver(consequence: str) -> str:
    """Why an NVIDIA profiler is skipped on a host without the driver."""
    return f"no NVIDIA driver on this host: {consequence}"
