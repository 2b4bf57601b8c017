"""A device plan for a profiler that wraps a launched Python command (memray,
line-profiler), as the controller would make it: its plan entry and the wrapped command."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

from orchestrator.models import WORKDIR_ARG, ProfilerPlan
from tests.support.session import make_plan


def has_module(python: str, module: str) -> bool:
    """Whether ``python`` imports ``module``."""
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


def wrapped_plan(
    tmp_path: Path, planned: ProfilerPlan, command: list[str], window: float
) -> dict[str, Any]:
    """The runner's plan: ``planned`` alone, ``command`` wrapped as stages/plan.py does."""
    assert planned.status == "planned", planned.reason
    plan = make_plan(
        tmp_path, {"mode": "launch"}, [dataclasses.asdict(planned)], window=window, lead=1.0
    )
    wrap = [arg.replace(WORKDIR_ARG, plan["workdir"]) for arg in planned.target_wrap]
    plan["target"].update(
        command=wrap + command[planned.options["replaces"] :],
        interrupt_s=planned.options["interrupt_s"],
    )
    return plan
