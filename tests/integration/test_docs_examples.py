"""Every command the documentation shows runs here, so the docs cannot rot.

README.md and docs/*.md: the ``$ `` lines of ```console blocks run in file order (the user
guide first, then README.md, then the other pages by name), each through ``bash -c`` with
the documented text, from a copy of the repository (the venv's bin first on PATH), and
must exit as documented (0, or a block's ``<!-- exit: N -->``). The example inventory's
devices are played by a test fleet with the same host names, groups and hardware models;
the few substitutions that keep commands inside the sandbox are listed in
tests/support/docs/sandbox.py. Campaign YAML blocks load with ``load_campaign``; other YAML and
JSON blocks parse. The convention itself: tests/support/docs/markdown.py.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.campaign.loader import load_campaign
from orchestrator.campaign.messages import CampaignError
from tests.fleet.fixtures import requires_fleet
from tests.support.docs.markdown import Block, Command, MarkdownError, blocks, commands, doc_files
from tests.support.docs.sandbox import (
    EXAMPLE_INVENTORY,
    Sandbox,
    copy_repository,
    example_hosts,
    example_models,
    map_inventory,
)
from tests.support.paths import REPO

DOCS = doc_files(REPO)
# The project's two commands: CI runs them itself (they set up the venv and run every
# test, this one included), so the docs test does not run them again.
NOT_RUN = {"make demo", "make test"}
COMMAND_TIMEOUT_S = 300
# Test-fleet hosts share this machine's two cores with the controller: each model gets a
# CPU quota, the Raspberry Pi less than the Jetsons, as on real boards.
FLEET_CPU = {"raspberry-pi-4": 0.25}
DEFAULT_FLEET_CPU = 0.5


def _all_blocks() -> list[Block]:
    return [block for path in DOCS for block in blocks(path)]


def _runnable(path: Path) -> list[Command]:
    return [c for block in blocks(path) for c in commands(block) if c.not_run is None]


def _is_campaign(data: Any) -> bool:
    return isinstance(data, dict) and ("target" in data or "profilers" in data)


_JSONC_COMMENT = re.compile(r'("(?:[^"\\]|\\.)*")|//[^\n]*')


def _strip_comments(text: str) -> str:
    """JSON with // comments (```jsonc blocks) -> JSON; strings are kept as they are."""
    return _JSONC_COMMENT.sub(lambda m: m.group(1) or "", text)


# -- what the docs contain (no fleet needed) ------------------------------------------------


def test_the_docs_have_console_examples_and_every_one_is_readable() -> None:
    found = {path.name: [c for b in blocks(path) for c in commands(b)] for path in DOCS}
    assert "guide.md" in found and "troubleshooting.md" in found, sorted(found)
    for path in DOCS:
        for block in blocks(path):
            if block.language == "console":
                assert commands(block), f"{block.where}: a console block without a `$ ` command"
            # Shell examples are console blocks, so they run; performance.md's benchmark
            # commands (minutes each) are the lead's to convert.
            if path.name != "performance.md":
                assert block.language not in ("sh", "bash", "shell", "shell-session"), (
                    f"{block.where}: write commands as a ```console block with `$ ` lines"
                )
    assert len(_runnable(REPO / "docs" / "guide.md")) >= 10


def test_only_make_demo_and_make_test_are_not_run() -> None:
    skipped = {c.text: c for path in DOCS for b in blocks(path) for c in commands(b) if c.not_run}
    assert set(skipped) == NOT_RUN, sorted(skipped)
    for command in skipped.values():
        assert command.block.path.name == "README.md", command.where


def test_campaign_blocks_load_and_other_yaml_and_json_blocks_parse(tmp_path: Path) -> None:
    campaigns = 0
    for block in _all_blocks():
        if block.language in ("yaml", "yml"):
            data = yaml.safe_load(block.text)
            if _is_campaign(data):
                path = tmp_path / f"{block.path.stem}-{block.line}.yml"
                path.write_text(block.text)
                try:
                    load_campaign(path)
                except CampaignError as err:
                    pytest.fail(f"{block.where}: the campaign does not load:\n{err}")
                campaigns += 1
                ready = REPO / "campaigns" / f"{data.get('name')}.yml"
                if ready.is_file():  # a ready campaign shown on a page is that file
                    assert data == yaml.safe_load(ready.read_text()), (
                        f"{block.where}: differs from {ready.relative_to(REPO)}"
                    )
            elif isinstance(data, dict) and "all" in data:
                example = yaml.safe_load((REPO / EXAMPLE_INVENTORY).read_text())
                if example_hosts(data) == example_hosts(example):  # the example, shown
                    assert data == example, f"{block.where}: differs from {EXAMPLE_INVENTORY}"
        elif block.language == "json":
            try:
                json.loads(block.text)
            except ValueError as err:
                pytest.fail(f"{block.where}: not JSON ({err}); comments need ```jsonc")
        elif block.language == "jsonc":
            try:
                json.loads(_strip_comments(block.text))
            except ValueError as err:
                pytest.fail(f"{block.where}: not JSON once its // comments are removed ({err})")
    assert campaigns >= 5


def test_the_ready_campaigns_load() -> None:
    for path in sorted((REPO / "campaigns").glob("*.yml")):
        load_campaign(path)


def test_the_example_inventory_maps_onto_fleet_hosts_by_hardware_model() -> None:
    example = yaml.safe_load((REPO / EXAMPLE_INVENTORY).read_text())
    models = example_models(example)
    fleet: dict[str, Any] = {"all": {"children": {}}}
    address = 11
    for model, count in models.items():
        hosts = {}
        for n in range(1, count + 1):
            hosts[f"{model}-{n}"] = {
                "ansible_host": f"127.0.0.{address}",
                "ansible_port": 2222,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": "/fleet/client_key",
                "fleetprof_hw_model": model,
            }
            address += 1
        fleet["all"]["children"][model.replace("-", "_")] = {"hosts": hosts}
    mapped = map_inventory(example, fleet)
    assert example_hosts(mapped) == example_hosts(example)
    for (name, group), (_, _) in zip(example_hosts(mapped), example_hosts(example), strict=True):
        host_vars = _host_vars(mapped, group, name)
        assert host_vars["ansible_host"].startswith("127.0.0."), (name, host_vars)
        assert host_vars["ansible_user"] == "root"  # wins over the group's `ansible_user: pi`
    # Group variables (the hardware model) stay the example's.
    assert _group_vars(mapped) == _group_vars(example)


def _host_vars(inventory: dict[str, Any], group: str, host: str) -> dict[str, Any]:
    node = inventory["all"] if group == "all" else inventory["all"]["children"][group]
    return dict(node["hosts"][host])


def _group_vars(inventory: dict[str, Any]) -> dict[str, Any]:
    return {name: g.get("vars") for name, g in inventory["all"].get("children", {}).items()}


# -- the commands, on the test fleet ---------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(
    module_fleet_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sandbox]:
    """One fleet and one repository copy for the whole module: later pages reuse the runs
    the guide made (compare, report, baseline set), as a reader would."""
    example = yaml.safe_load((REPO / EXAMPLE_INVENTORY).read_text())
    fleet = module_fleet_factory(
        {
            model: {"count": count, "cpu": FLEET_CPU.get(model, DEFAULT_FLEET_CPU)}
            for model, count in example_models(example).items()
        }
    )
    root = copy_repository(REPO, tmp_path_factory.mktemp("docs") / "fleetprof")
    mapped = map_inventory(example, yaml.safe_load(fleet.inventory.read_text()))
    header = (
        "# The test fleet playing inventory/example-fleet.yml (tests/support/docs/sandbox.py).\n"
    )
    (root / EXAMPLE_INVENTORY).write_text(header + yaml.safe_dump(mapped, sort_keys=False))
    control_dir = Path(tempfile.mkdtemp(prefix="fleetprof-docs-cp-"))
    box = Sandbox(root=root, venv_bin=REPO / ".venv" / "bin", control_dir=control_dir)
    box.prepare()
    try:
        yield box
    finally:
        shutil.rmtree(control_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def repo_reports() -> Iterator[set[str]]:
    """What the repository's own reports/ holds before the docs run (it must not grow)."""
    yield _listing(REPO / "reports")


def _listing(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.glob("*/*")} if path.is_dir() else set()


@pytest.mark.integration
@requires_fleet
@pytest.mark.parametrize(
    "page", [p for p in DOCS if _runnable(p)], ids=lambda p: str(p.relative_to(REPO))
)
def test_every_command_of_the_page_runs_as_documented(
    page: Path, sandbox: Sandbox, repo_reports: set[str]
) -> None:
    for command in _runnable(page):
        started = time.monotonic()
        proc = sandbox.run(command.text, timeout=COMMAND_TIMEOUT_S)
        took = time.monotonic() - started
        print(f"{command.where}: {took:5.1f} s, exit {proc.returncode}: {_one_line(command.text)}")
        if proc.returncode != command.exit_code:
            pytest.fail(
                f"{command.where}: `{_one_line(command.text)}` exited {proc.returncode}, "
                f"the docs say {command.exit_code} ({took:.1f} s; ran as "
                f"`{_one_line(sandbox.command_text(command.text))}` in {sandbox.root})\n"
                f"--- stdout (tail)\n{proc.stdout[-4000:]}\n"
                f"--- stderr (tail)\n{proc.stderr[-4000:]}"
            )


@pytest.mark.integration
@requires_fleet
def test_the_documented_commands_left_nothing_in_the_repository(
    sandbox: Sandbox, repo_reports: set[str]
) -> None:
    # Runs after the pages (pytest keeps file order): their runs went to the copy.
    assert _listing(REPO / "reports") <= repo_reports
    runs = sorted(p.name for p in (sandbox.root / "reports").glob("*/*") if p.is_dir())
    assert runs, "the docs made no run at all"
    # `schedule install` wrote its crontab line into the sandbox, not to cron.
    if sandbox.crontab.exists():
        assert f"check {sandbox.root}/" in sandbox.crontab.read_text()


def _one_line(text: str) -> str:
    return " ".join(text.replace("\\\n", " ").split())


# -- the convention's reader -------------------------------------------------------------------


def test_the_reader_runs_prompt_lines_joins_continuations_and_reads_markers(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n"
        "<!-- exit: 3 -->\n"
        "```console\n"
        "$ fleetprof run a.yml \\\n"
        "    -i inv.yml\n"
        "output line, not run\n"
        "$ echo two\n"
        "```\n\n"
        "```console\n$ echo plain\n```\n\n"
        "<!-- not-run: CI runs it -->\n\n"
        "```console\n$ make test\n```\n"
        "```sh\n$ not a console block\n```\n"
    )
    found = [c for b in blocks(page) for c in commands(b)]
    assert [(c.text, c.exit_code, c.not_run, c.line) for c in found] == [
        ("fleetprof run a.yml \\\n    -i inv.yml", 3, None, 5),
        ("echo two", 3, None, 8),
        ("echo plain", 0, None, 12),
        ("make test", 0, "CI runs it", 18),
    ]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("```console\n$ echo\n", "never closed"),
        ("<!-- exits: 3 -->\n```console\n$ echo\n```\n", "unknown marker"),
        ("<!-- exit: three -->\n```console\n$ echo\n```\n", "not an exit status"),
        ("```console\n$ echo \\\n```\n", "ends in"),
    ],
)
def test_the_reader_refuses_what_it_cannot_run_as_written(
    tmp_path: Path, text: str, problem: str
) -> None:
    page = tmp_path / "page.md"
    page.write_text(text)
    with pytest.raises(MarkdownError, match=problem):
        for block in blocks(page):
            commands(block)


def test_the_sandbox_substitutions_are_the_documented_ones(tmp_path: Path) -> None:
    box = Sandbox(root=tmp_path, venv_bin=tmp_path / "bin", control_dir=tmp_path / "cp")
    install = (
        "fleetprof schedule install c.yml --at 02:00 --prometheus /var/lib/node_exporter/x/f.prom"
    )
    assert box.command_text(install) == (
        f"fleetprof schedule install --cron-file {box.crontab} c.yml --at 02:00 "
        f"--prometheus {box.private}/node_exporter/x/f.prom"
    )
    kept = "fleetprof schedule list --unit-dir units"
    assert box.command_text(kept) == kept
    assert box.command_text("fleetprof run c.yml -i inventory/example-fleet.yml") == (
        "fleetprof run c.yml -i inventory/example-fleet.yml"
    )
    env = box.environment()
    assert env["HOME"] == str(box.home) and env["PATH"].startswith(str(tmp_path / "bin"))
