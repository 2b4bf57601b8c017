"""A campaign's device-side stages run by ansible-playbook or AWX instead of fleetprof.

The controller keeps what needs its Python and its history: it *prepares* a run (load,
preflight, plan: the run directory with every host's ``plan.json``, and the extra
variables ``playbooks/site.yml`` needs), and afterwards *ingests* it (unpacks what the
collect play fetched, exactly as ``fleetprof run`` does, then parse, analyze, render and
the history). In between, ``site.yml`` runs provision, session and collect on the
devices, choosing the common start T0 itself just before the session (docs/awx.md).

Stages still talk only through the run directory: a host the playbook did not collect
keeps a status ``fleetprof collect RUN_DIR`` resumes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator import device_bundle
from orchestrator.campaign.model import Campaign
from orchestrator.models import HostStatus
from orchestrator.stages.flow import CampaignRun, build_outputs, record_history
from orchestrator.stages.plan import effective_lead
from orchestrator.stages.rundir import RunDir, read_json, write_text

EXTRAVARS_FILE = "extravars.yml"
RUN_DIR_VAR = "fleetprof_run_dir"
NOT_COLLECTED = (
    "no session archive came back from the site playbook (its output, or the AWX job's, "
    "says why); `fleetprof collect RUN_DIR` fetches it if the device still holds it"
)


class StagesError(Exception):
    """Bad input to prepare or ingest; the message names the file and the key."""


@dataclass(frozen=True)
class Prepared:
    run: RunDir
    planned: list[str]  # hosts with a runnable plan: what site.yml runs on
    dropped: list[str]  # hosts that failed preflight or have nothing to run
    lead_s: float
    extravars: dict[str, Any]
    extravars_file: Path


def site_extravars(run: RunDir, hosts: list[str], lead_s: float) -> dict[str, Any]:
    """The extra variables playbooks/site.yml needs, as `fleetprof run` passes them."""
    return {
        RUN_DIR_VAR: str(run.path.resolve()),
        "fleetprof_hosts": ",".join(hosts),
        "fleetprof_lead_s": round(lead_s, 3),
        **device_bundle.extravars(),
    }


def extravars_text(extravars: dict[str, Any]) -> str:
    header = (
        "# Extra variables for playbooks/site.yml (fleetprof.fleet.site), written by\n"
        "# `fleetprof stages prepare`: ansible-playbook -e @THIS_FILE, or an AWX job\n"
        "# template's extra variables. Then: fleetprof stages ingest RUN_DIR.\n"
    )
    return header + yaml.safe_dump(extravars, sort_keys=False, default_flow_style=False)


def prepare(flow: CampaignRun, vars_out: Path | None = None) -> Prepared:
    """Load, preflight and plan; write the run directory and site.yml's extra variables
    (``RUN_DIR/extravars.yml``, and ``vars_out`` when given). Nothing is pushed or run."""
    flow.begin()
    hosts = list(flow.inventory.hosts)
    if not flow.cancel.is_set():
        flow.facts.update(flow.preflight())
    if flow.active and not flow.cancel.is_set():
        flow.plan(flow.facts, flow.tools(flow.facts))
    planned = list(flow.active) if not flow.cancel.is_set() else []
    lead = effective_lead(flow.campaign.start.lead_s, [flow.facts[h] for h in planned])
    extravars = site_extravars(flow.run, planned, lead)
    text = extravars_text(extravars)
    target = flow.run.path / EXTRAVARS_FILE
    write_text(target, text)
    if vars_out is not None:
        write_text(vars_out, text)
    return Prepared(
        run=flow.run,
        planned=planned,
        dropped=[h for h in hosts if h not in planned],
        lead_s=lead,
        extravars=extravars,
        extravars_file=target,
    )


def resolve_run_dir(given: Path) -> Path:
    """A run directory, or the extra-variables file prepare wrote (its fleetprof_run_dir)."""
    if given.is_dir():
        return given
    if not given.is_file():
        raise StagesError(f"{given}: no such run directory or extra-variables file")
    try:
        data = yaml.safe_load(given.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise StagesError(f"{given}: not a readable extra-variables file: {err}") from None
    value = data.get(RUN_DIR_VAR) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise StagesError(
            f"{given}: {RUN_DIR_VAR}: expected the run directory's path (a string), got {value!r}"
        )
    return Path(value)


def ingest_archives(run: RunDir) -> dict[str, str]:
    """Unpack every tarball the collect play fetched and is not unpacked yet, and set
    each planned host's status as ``fleetprof run``'s collect does: host -> status."""
    meta = read_json(run.path / "run.json")
    outcome: dict[str, str] = {}
    for host in meta.get("hosts") or run.hosts():
        plan = run.read_plan(host)
        if plan is None or not plan.runnable or run.read_manifest(host) is not None:
            continue
        if run.fetched(host):
            outcome[host] = run.unpack_collected(host).value
        elif run.read_status(host).get("stage") in ("plan", "session"):
            # "session" keeps the host where `fleetprof collect RUN_DIR` resumes.
            run.write_status(host, "session", HostStatus.FAILED, NOT_COLLECTED)
            outcome[host] = HostStatus.FAILED.value
    return outcome


def ingest(run: RunDir, campaign: Campaign) -> tuple[dict[str, Any], str | None]:
    """Unpack what site.yml collected, then build every output and record the history:
    the report, and the history's problem if it could not take the run."""
    ingest_archives(run)
    report = build_outputs(run, campaign)
    return report, record_history(run, report)
