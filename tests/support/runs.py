"""A run directory as ``prepare`` leaves it, for the stage tests."""

from __future__ import annotations

from pathlib import Path

from orchestrator.campaign.loader import load_campaign
from orchestrator.stages.plan import make_plan
from orchestrator.stages.rundir import RunDir, write_json
from tests.support.factories import host_facts
from tests.support.paths import REPO


def prepared_run(tmp_path: Path, hosts: list[str]) -> RunDir:
    """A run directory as prepare leaves it: run.json, and a runnable plan and status
    "planned" for every host."""
    campaign = load_campaign(CAMPAIGN)
    run = RunDir.create(tmp_path / "reports", campaign.name, "20261125-120000-abcd")
    write_json(run.path / "run.json", {"campaign": campaign.name, "hosts": hosts})
    for host in hosts:
        plan = make_plan(campaign, host_facts(host=host), run.run_id, {}, t0=1000.0)
        assert plan.runnable
        run.write_plan(plan)
        run.write_status(host, "plan", "planned", None)
    return run


CAMPAIGN = REPO / "campaigns" / "nightly-variability.yml"
