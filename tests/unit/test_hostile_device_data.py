"""A device's (or a workload's) hostile JSON costs that host, never the report of the
others: every path to report.json goes through build_outputs (run, collect, report, check).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from orchestrator.campaign.loader import load_campaign
from orchestrator.stages.handoff import ingest
from orchestrator.stages.plan import make_plan
from orchestrator.stages.rundir import ARCHIVE, RunDir, write_json
from orchestrator.values import load_json
from tests.support.factories import host_facts
from tests.support.paths import REPO

CAMPAIGN = REPO / "campaigns" / "nightly-variability.yml"
DEEP = b"[" * 100_000 + b"]" * 100_000  # 1.4 KB gzipped; RecursionError in json.loads


def tarball(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_nested_json_from_one_device_leaves_every_other_host_its_report(tmp_path: Path) -> None:
    campaign = load_campaign(CAMPAIGN)
    hosts = ["honest", "deep-manifest", "deep-workload", "deep-probe", "escapes"]
    run = RunDir.create(tmp_path / "reports", campaign.name, "20261207-030000-abcd")
    meta = {"campaign": campaign.name, "run_id": run.run_id, "hosts": hosts}
    write_json(run.path / "run.json", {**meta, "started_at": "x", "duration_s": 15.0})
    for host in hosts:
        run.write_plan(make_plan(campaign, host_facts(host=host), run.run_id, {}, t0=1000.0))
        run.write_status(host, "plan", "planned", None)
    manifest = json.dumps({"status": "ok", "profilers": {}}).encode()
    tarball(run.host_dir("honest") / ARCHIVE, {"manifest.json": manifest})
    tarball(run.host_dir("deep-manifest") / ARCHIVE, {"manifest.json": DEEP})
    deep_lines = b"[" * 2000 + b"]" * 2000 + b"\n" + DEEP + b"\n"
    tarball(
        run.host_dir("deep-workload") / ARCHIVE,
        {"manifest.json": manifest, "workload.jsonl": deep_lines},
    )
    tarball(run.host_dir("deep-probe") / ARCHIVE, {"manifest.json": manifest, "probe.json": DEEP})
    rude = {"status": "partial", "reason": "clear\x1b[2J\x1b]0;owned\x07 bell\x9b", "profilers": {}}
    tarball(run.host_dir("escapes") / ARCHIVE, {"manifest.json": json.dumps(rude).encode()})

    report, _ = ingest(run, campaign)

    status = {h["name"]: (h["status"], h["reason"]) for h in report["hosts"]}
    assert status["honest"] == ("ok", None)
    assert status["deep-manifest"][0] == "failed"
    assert "nested deeper than" in str(status["deep-manifest"][1])
    assert status["deep-workload"][0] == "ok"  # a workload's bad file costs its figure only
    [deep] = [h for h in report["hosts"] if h["name"] == "deep-workload"]
    assert any("2 malformed lines in workload.jsonl" in n for n in deep["data_quality"])
    assert status["deep-probe"][0] == "ok"
    # Control characters from a device reach no file raw (report.json escapes them).
    assert status["escapes"] == ("partial", "clear␛[2J␛]0;owned␇ bell\ufffd")
    for name in ("report.html", "summary.md", "report.json"):
        text = (run.path / name).read_text(encoding="utf-8")
        assert not any(ch in text for ch in "\x1b\x07\x9b"), name
    written = json.loads((run.path / "report.json").read_text())
    assert {h["name"] for h in written["hosts"]} == set(hosts)


@pytest.mark.parametrize(
    "text",
    [DEEP, b'{"a":' * 65 + b"1" + b"}" * 65, b"[" * 900 + b"]" * 900],
)
def test_load_json_refuses_deep_nesting_as_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        load_json(text)


def test_load_json_reads_ordinary_documents() -> None:
    assert load_json(b'{"a": [1, {"b": [2.5]}]}') == {"a": [1, {"b": [2.5]}]}
    assert load_json('{"a":' * 63 + "1" + "}" * 63) is not None
