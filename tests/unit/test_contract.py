"""The device and the controller agree: they read the contract from one module
(fleetprof_device/contract.py), the campaign validator's bounds are the device's, and a
manifest the device code writes reads back on the controller."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device import arguments, contract
from fleetprof_device.errors import InvocationError
from orchestrator import models
from orchestrator.campaign import model as campaign_model
from orchestrator.campaign import validators as campaign_validators
from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign
from orchestrator.profilers import system
from orchestrator.stages import parse, probe
from orchestrator.stages.plan import make_plan, reschedule
from tests.support import factories
from tests.support.factories import host_facts
from tests.support.runner import SESSION_MODULE


def campaign(**overrides: Any) -> Campaign:
    """A one-second launch campaign with the system sampler (the factory's, other defaults)."""
    data: dict[str, Any] = {
        "duration": "1s",
        "target": {"launch": {"command": [sys.executable, "-c", "import time; time.sleep(5)"]}},
        "profilers": {"system": {"interval": "1s"}},
    }
    return factories.campaign(**{**data, **overrides})


def device_plan(interval: float) -> dict[str, Any]:
    made = make_plan(
        campaign(profilers={"system": {"interval": f"{interval}s"}}),
        host_facts(),
        "20261125-111500-ab12",
        {},
        time.time() + 60,
    )
    return json.loads(json.dumps(made.to_dict()))


def test_both_sides_use_the_contracts_names_and_versions() -> None:
    assert models.PLAN_SCHEMA is contract.PLAN_SCHEMA
    assert models.SessionPlan.__dataclass_fields__["schema"].default == contract.PLAN_SCHEMA
    assert probe.PROBE_FILE is contract.PROBE_FILE
    assert probe.PROBE_SCHEMA is contract.PROBE_SCHEMA
    assert campaign_model.PROBE_KINDS is contract.PROBE_KINDS
    assert campaign_model.DEFAULT_PROBE_REPEATS == contract.PROBE_REPS
    assert campaign_model.MAX_PROBE_REPEATS == contract.PROBE_MAX_REPS
    assert contract.PROBE_FILE in contract.RESERVED_FILES
    assert contract.MANIFEST_FILE in contract.RESERVED_FILES


def test_the_campaign_validator_takes_the_intervals_the_device_takes() -> None:
    assert campaign_validators.MIN_INTERVAL_S == contract.MIN_SAMPLE_INTERVAL_S
    assert campaign_validators.MAX_INTERVAL_S == contract.MAX_SAMPLE_INTERVAL_S
    for interval in (contract.MIN_SAMPLE_INTERVAL_S, contract.MAX_SAMPLE_INTERVAL_S):
        arguments.validate_plan(device_plan(interval))  # the controller's plan, on the device
    for interval in (contract.MIN_SAMPLE_INTERVAL_S / 2, contract.MAX_SAMPLE_INTERVAL_S * 2):
        with pytest.raises(CampaignError, match="sampling interval"):
            campaign(profilers={"system": {"interval": f"{interval}s"}})
        plan = device_plan(1.0)
        plan["profilers"][0]["options"]["interval_s"] = interval
        with pytest.raises(InvocationError, match="interval_s"):
            arguments.validate_plan(plan)


@pytest.mark.parametrize("kind", contract.PROBE_KINDS)
def test_every_probe_kind_the_campaign_takes_the_device_runs(kind: str) -> None:
    made = make_plan(
        campaign(target={"probe": [kind]}, profilers={}),
        host_facts(),
        "20261125-111500-ab12",
        {},
        time.time() + 60,
    )
    arguments.validate_plan(json.loads(json.dumps(made.to_dict())))


def test_a_manifest_the_device_writes_reads_back_on_the_controller(tmp_path: Path) -> None:
    spec = campaign()
    made = make_plan(spec, host_facts(home=str(tmp_path)), "20261125-111500-ab12", {}, 0.0)
    plan = reschedule(made, time.time() + 0.5).to_dict()
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"plan": plan}))

    done = subprocess.run(
        [sys.executable, str(SESSION_MODULE), str(args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    result = json.loads(done.stdout)
    assert done.returncode == 0, result
    with tarfile.open(result["archive"]) as tar:
        tar.extractall(tmp_path / "session", filter="data")
    manifest = json.loads((tmp_path / "session" / contract.MANIFEST_FILE).read_text())
    assert manifest == result["manifest"]
    assert manifest["schema"] == contract.MANIFEST_SCHEMA
    assert (manifest["campaign"], manifest["run_id"]) == (plan["campaign"], plan["run_id"])
    assert parse._manifest_status(manifest["status"]) == manifest["status"] == "ok"
    parsed = system.parse(tmp_path / "session", manifest["profilers"]["system"], spec)
    assert parsed.metrics, parsed


@pytest.mark.parametrize("top", [1, 500])
def test_a_cprofile_plan_the_controller_makes_the_device_accepts(top: int) -> None:
    made = make_plan(
        campaign(
            target={"launch": {"command": ["python3", "-u", "app.py"]}},
            profilers={"cprofile": {"top": top, "edges": 50}, "system": {}},
        ),
        host_facts(),
        "20261125-111500-ab12",
        {},
        time.time() + 60,
    )
    plan = json.loads(json.dumps(made.to_dict()))
    arguments.validate_plan(plan)
    entry = next(p for p in plan["profilers"] if p["name"] == "cprofile")
    assert entry["in_target"] is True and contract.DEVICE_PACKAGE_ARG in entry["post_argv"][0]
    assert plan["target"]["command"][:4] == ["python3", "-u", "-m", "cProfile"]
    assert plan["target"]["interrupt_s"] > 0
    entry["argv"] = ["x"]
    plan["target"]["interrupt_s"] = 61
    with pytest.raises(InvocationError) as error:
        arguments.validate_plan(plan)
    assert "a profiler inside the target takes no argv" in str(error.value)
    assert "target.interrupt_s must be a number of seconds from 0 to 60" in str(error.value)
