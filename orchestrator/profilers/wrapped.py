"""What the profilers that wrap a launched Python command with a tool from the program's
own environment share (memray, line-profiler): when they cannot run, decided at plan time,
and the plan that wraps the command.

The command ``PY [options] SCRIPT|-m MODULE ...`` becomes ``PY [options] -m TOOL ...
SCRIPT|-m MODULE ...`` (the runner still starts it: ``in_target``). The controller cannot
know whether the device's Python has the tool: ``options["module"]`` has the runner ask it
before T0 (fleetprof_device/module_check.py), and skip the profiler with the reason, the
command unwrapped, where it cannot import it. One tracer per process: another profiler
inside the program (cprofile, tracemalloc, the other wrapper) or one that starts the
command (nsys, ncu; py-spy where it may not attach) rules it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetprof_device.contract import TRACEMALLOC
from orchestrator.campaign.model import Campaign
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers.base import ProfileResult, begin_parse_text, is_python
from orchestrator.profilers.cprofile import split_command
from orchestrator.values import load_json, visible

_NOT_PYTHON = (
    "the command does not run a Python interpreter ({}): {product} profiles only a command "
    "such as `python3 app.py` or `python3 -m package`"
)
_NO_SCRIPT = (
    "the Python command runs no script or module: {product} needs `python3 SCRIPT` or "
    "`python3 -m MODULE` (not -c, -i or standard input)"
)
_NOT_ONE_LAUNCHER = (
    "only one profiler can start the command and {} does: {product} runs inside the program "
    "it would start; profile with {product} in a campaign of its own"
)
_ONE_TRACER = (
    "{} traces inside the same program (one tracer per process: {product} would count its "
    "work): profile with {product} in a campaign of its own"
)
_NOT_ATTACHABLE = (
    "py-spy must start the command on this host (it may not attach: {}) and {product} runs "
    "inside the command: profile with {product} in a campaign of its own"
)


AMBIGUOUS = (
    "{tool} would take the script's argument {} for an abbreviation of its own options "
    "and stop: run the program as `python3 -m MODULE ...` ({tool} leaves the arguments "
    "after -m alone), or spell the argument out"
)


@dataclass(frozen=True)
class Reasons:
    """A wrapping profiler's skip reasons, its product name filled in."""

    no_attach: str
    not_python: str
    no_script: str
    not_one_launcher: str
    one_tracer: str
    not_attachable: str

    @classmethod
    def of(cls, product: str, no_attach: str) -> Reasons:
        def fill(text: str) -> str:
            return text.replace("{product}", product)

        return cls(
            no_attach,
            fill(_NOT_PYTHON),
            fill(_NO_SCRIPT),
            fill(_NOT_ONE_LAUNCHER),
            fill(_ONE_TRACER),
            fill(_NOT_ATTACHABLE),
        )


def skip_reason(campaign: Campaign, facts: HostFacts, name: str, why: Reasons) -> str | None:
    """Why this host cannot run the wrapping profiler ``name``, decided before anything
    runs (whether the device's Python has the tool is decided on the device)."""
    launch = campaign.target.launch
    if campaign.target.mode != "launch" or launch is None:
        return why.no_attach
    command = list(launch.command)
    if not command or not is_python(command[0]):
        return why.not_python.replace("{}", repr(command[0] if command else ""))
    if isinstance(split_command(command), str):
        return why.no_script
    # Imported here: the registry imports every profiler module.
    from orchestrator import profilers as registry

    enabled = list(campaign.profilers.enabled)
    for other in enabled[: enabled.index(name)] if name in enabled else []:
        if registry.launch_only(other):
            return why.not_one_launcher.replace("{}", other)
    for other in enabled:
        # tracemalloc's hook (not a launcher) would run in the wrapped program.
        in_program = other == TRACEMALLOC or (other != name and registry.inside_target(other))
        if in_program and not registry.launch_only(other):
            return why.one_tracer.replace("{}", other)
    attachers = [
        other
        for other in enabled
        if other != name and registry.is_launcher(other) and not registry.launch_only(other)
    ]
    if attachers and not facts.can_attach:
        return why.not_attachable.replace("{}", facts.attach_reason or "ptrace is restricted")
    return None


def ambiguous_argument(rest: list[str], options: tuple[str, ...]) -> str | None:
    """The first argument of a script (not ``-m MODULE``) that the tool, parsing its own
    ``options`` with argparse, would read as an ambiguous abbreviation of two or more of
    them (memray's ``--n``: ``--native``, ``--no-compress``), if any: it would stop there."""
    if not rest or rest[0] == "-m":
        return None
    for argument in rest[1:]:
        name = argument.split("=", 1)[0]
        if not name.startswith("--") or name in options or len(name) < 3:
            continue
        if len([option for option in options if option.startswith(name)]) > 1:
            return argument
    return None


def interpreter_or_skipped(
    campaign: Campaign,
    facts: HostFacts,
    name: str,
    why: Reasons,
    tool_options: tuple[tuple[str, ...], str],
    outputs: list[str],
    max_bytes: int,
) -> list[str] | ProfilerPlan:
    """The command's interpreter and its options (what the wrap replaces), or the plan
    that skips ``name`` with the reason. ``tool_options``: the tool's long options and the
    reason (``{}`` the argument) when a script argument abbreviates two of them."""
    reason = skip_reason(campaign, facts, name, why)
    launch = campaign.target.launch
    split = split_command(list(launch.command)) if launch is not None else why.no_attach
    if reason is not None or isinstance(split, str):
        return ProfilerPlan.skipped(name, reason or str(split), outputs, max_bytes)
    interpreter, rest = split
    options, ambiguous_reason = tool_options
    ambiguous = ambiguous_argument(rest, options)
    if ambiguous is not None:
        reason = ambiguous_reason.replace("{}", repr(ambiguous))
        return ProfilerPlan.skipped(name, reason, outputs, max_bytes)
    return interpreter


def in_program_env(campaign: Campaign, argv: list[str]) -> list[str]:
    """A post step run with the program's own environment variables (``env NAME=VALUE
    ... argv``): the tool the converter imports may be found only through them
    (PYTHONPATH)."""
    launch = campaign.target.launch
    variables = sorted(launch.env.items()) if launch is not None else []
    return ["env", *(f"{name}={value}" for name, value in variables), *argv] if variables else argv


def wrap_plan(
    name: str,
    interpreter: list[str],
    tool: list[str],
    module: str,
    outputs: list[str],
    max_bytes: int,
    interrupt_s: float,
    post_argv: list[list[str]],
) -> ProfilerPlan:
    """The plan that runs the command as ``interpreter + tool + the rest``; the runner
    checks ``interpreter`` imports ``module`` first, and unwraps the command where not."""
    wrap = [*interpreter, *tool]
    return ProfilerPlan(
        name=name,
        status="planned",
        reason=None,
        argv=[],
        launch_argv=[],
        outputs=outputs,
        max_bytes=max_bytes,
        options={
            "interrupt_s": interrupt_s,
            "replaces": len(interpreter),
            "module": module,
            "wrap": len(wrap),
        },
        post_argv=post_argv,
        in_target=True,
        target_wrap=wrap,
    )


def read_document(
    session_dir: Path,
    entry: dict[str, Any],
    output: str,
    max_bytes: int,
    schema: str,
    who: str,
    what: str,
) -> tuple[ProfileResult, dict[str, Any] | None]:
    """The opening of a wrapping profiler's parse(): a fresh result, and the device's JSON
    document ``output`` when there is one to read (None, the result saying why, when it is
    absent while the profiler ran, cut at ``max_bytes``, not JSON, not ``schema``, or the
    device's converter could not read ``what``, the tool's own file)."""
    result, text, cut = begin_parse_text(session_dir, output, max_bytes, output)
    notes = result.data_quality
    if text is None:
        if entry.get("status") not in (None, "skipped"):
            notes.append(
                f"{who}: no {output} came back: the program wrote no {what}, or the device "
                f"could not convert it (see the manifest's {who} entry)"
            )
        return result, None
    if cut:
        notes.append(f"{who}: {output} is over {max_bytes} bytes: not read")
        return result, None
    try:
        document = load_json(text)
    except ValueError as bad:
        notes.append(f"{who}: {output} is not valid JSON ({str(bad)[:200]}): not read")
        return result, None
    if not isinstance(document, dict) or document.get("schema") != schema:
        notes.append(f"{who}: {output} is not a {schema} document: not read")
        return result, None
    failure = document.get("error")
    if failure:
        said = visible(str(failure)[:500])
        notes.append(f"{who}: the {what} could not be read on the device: {said}")
        return result, None
    return result, document
