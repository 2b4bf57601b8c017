"""Bad inventory input: one clear message naming the inventory or the pattern, exit 2 from
the command line, no traceback, nothing run, and no pattern or host name ever reaching a
shell. (tests/integration/test_bad_input.py runs the command line on a missing inventory,
broken YAML and a pattern matching no host; these cover the rest, and the library calls.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.stages.inventory import InventoryError, load_inventory

INVENTORY = """\
all:
  hosts:
    h1:
    h2:
  children:
    edge:
      hosts:
        h1:
"""
# What a shell would act on; Ansible host patterns are no shell syntax.
SHELLISH_PATTERNS = [
    "all; touch PWNED #",
    "$(touch PWNED)",
    "`touch PWNED`",
    "h1 && touch PWNED",
    "h1 | touch PWNED",
    "h1\ntouch PWNED",
    "{{ lookup('ansible.builtin.pipe', 'touch PWNED') }}",
]
BROKEN_PATTERNS = ["edge:&", "!", "h1:!", "~(unclosed", "all[99]"]


@pytest.fixture
def inventories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of inventories, good and bad; also the working directory, where a
    shell running a pattern would leave its PWNED file."""
    (tmp_path / "good.yml").write_text(INVENTORY)
    (tmp_path / "broken.yml").write_text("all:\n  hosts: [\n")
    (tmp_path / "a-list.yml").write_text("- h1\n- h2\n")
    (tmp_path / "not-inventory.yml").write_text("name: pipeline\nduration: 30s\n")
    (tmp_path / "bad.ini").write_text("[edge\nh1 = = =\n")
    (tmp_path / "slash.yml").write_text("all:\n  hosts:\n    edge/1:\n    h2:\n")
    (tmp_path / "escape.yml").write_text('all:\n  hosts:\n    "cam\\eXred\\a":\n')
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "docs-dir").mkdir()
    (tmp_path / "docs-dir" / "README.md").write_text("# not an inventory\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def inventory_error(source: str | Path, pattern: str = "all", limit: str | None = None) -> str:
    with pytest.raises(InventoryError) as caught:
        load_inventory(str(source), pattern, limit)
    return str(caught.value)


def test_a_missing_inventory_is_named(inventories: Path) -> None:
    missing = inventories / "nope.yml"
    assert inventory_error(missing) == f"{missing}: inventory not found"


@pytest.mark.parametrize("directory", ["empty-dir", "docs-dir"])
def test_a_directory_without_an_inventory_is_named(inventories: Path, directory: str) -> None:
    source = inventories / directory
    assert inventory_error(source) == f"{source}: cannot be parsed as an Ansible inventory"


def test_broken_yaml_gives_the_line_and_column(inventories: Path) -> None:
    source = inventories / "broken.yml"
    message = inventory_error(source)
    assert message.startswith(f"{source}: YAML syntax error at line 3, column 1: ")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a-list.yml", "YAML inventory has invalid structure, it should be a dictionary"),
        (
            "not-inventory.yml",
            "hosts pattern 'all' matches no hosts (Ansible: Skipping 'name' as this is "
            "not a valid group definition)",
        ),
        ("bad.ini", "Failed to parse inventory with 'ini' plugin"),
    ],
    ids=["yaml-list", "yaml-mapping", "ini"],
)
def test_a_file_that_is_no_inventory_says_why(inventories: Path, name: str, expected: str) -> None:
    message = inventory_error(inventories / name)
    assert message.startswith(f"{inventories / name}: ")
    assert expected in message
    assert "Traceback" not in message


def test_a_pattern_or_limit_matching_no_host_names_them(inventories: Path) -> None:
    good = inventories / "good.yml"
    assert inventory_error(good, "cameras") == f"{good}: hosts pattern 'cameras' matches no hosts"
    assert inventory_error(good, "edge", limit="h2") == (
        f"{good}: hosts pattern 'edge' with limit 'h2' matches no hosts"
    )


@pytest.mark.parametrize("pattern", BROKEN_PATTERNS)
def test_a_pattern_ansible_cannot_read_is_bad_input(inventories: Path, pattern: str) -> None:
    good = inventories / "good.yml"
    message = inventory_error(good, pattern)
    assert message.startswith(
        f"{good}: hosts pattern {pattern!r} is not a valid Ansible host pattern: "
    )
    limited = inventory_error(good, "all", limit=pattern)
    assert limited.startswith(f"{good}: limit {pattern!r} is not a valid Ansible host pattern: ")


@pytest.mark.parametrize("pattern", SHELLISH_PATTERNS)
@pytest.mark.parametrize("used_as", ["pattern", "limit"])
def test_a_pattern_with_shell_syntax_is_only_a_pattern(
    inventories: Path, pattern: str, used_as: str
) -> None:
    good = inventories / "good.yml"
    hosts, limit = (pattern, None) if used_as == "pattern" else ("all", pattern)
    # Ansible splits a pattern at commas, colons and blanks: "h1 | x" selects h1. Either way
    # the pattern is matched against host names, never run.
    try:
        selected = load_inventory(str(good), hosts, limit).hosts
    except InventoryError as err:
        assert str(err).startswith(f"{good}: hosts pattern {hosts!r}")
        assert str(err).endswith(" matches no hosts")
        assert repr(pattern) in str(err)
    else:
        assert set(selected) <= {"h1", "h2"}
    assert list(inventories.rglob("*PWNED*")) == []


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        ("a/b,", "contains '/'"),
        ("..,", "'.' or '..'"),
        ("cam\x1b[31m,", "control characters"),
        ("bell\x07,", "control characters"),
        ("x" * 201 + ",", "longer than 200 bytes"),
    ],
)
def test_a_host_name_that_cannot_be_a_directory_is_refused(names: str, problem: str) -> None:
    with pytest.raises(InventoryError, match="cannot be profiled under that name") as err:
        load_inventory(names, "all")
    assert problem in str(err.value)
    assert "ansible_host" in str(err.value)


def test_host_names_in_a_host_list_are_taken_literally(inventories: Path) -> None:
    names = ["$(touch PWNED)", "`touch PWNED2`", "h;touch PWNED3"]
    inventory = load_inventory(",".join(names) + ",", "all")
    assert inventory.hosts == names
    assert list(inventories.rglob("*PWNED*")) == []


# ----------------------------------------------------------------------------- command line

CAMPAIGN = "name: x\nhosts: {hosts}\nduration: 1s\ntarget:\n  attach: {{pid: 1}}\n"


def test_the_command_line_exits_2_naming_the_inventory_or_pattern(inventories: Path) -> None:
    good = str(inventories / "good.yml")
    cases: list[tuple[str, list[str], str]] = [
        # (campaign hosts, extra arguments, what stderr must say)
        ("all", ["-i", str(inventories / "empty-dir")], "cannot be parsed as an Ansible inventory"),
        ("all", ["-i", str(inventories / "a-list.yml")], "YAML inventory has invalid structure"),
        ("all", ["-i", str(inventories / "not-inventory.yml")], "matches no hosts"),
        ("all", ["-i", str(inventories / "bad.ini")], "Failed to parse inventory"),
        ("all", ["-i", good, "-l", "edge:&"], "limit 'edge:&' is not a valid Ansible host"),
        ("'web:&'", ["-i", good], "hosts pattern 'web:&' is not a valid Ansible host pattern"),
        ("'~(unclosed'", ["-i", good], "hosts pattern '~(unclosed' is not a valid Ansible"),
        ("'all; touch PWNED #'", ["-i", good], "hosts pattern 'all; touch PWNED #' matches no"),
        ("'$(touch PWNED)'", ["-i", good], "hosts pattern '$(touch PWNED)' matches no hosts"),
        ("'`touch PWNED`'", ["-i", good], "hosts pattern '`touch PWNED`' matches no hosts"),
        # Host names become directory names: refused before anything runs (a '/' once
        # crashed `run` with a traceback and left an empty run directory).
        ("all", ["-i", str(inventories / "slash.yml")], "host 'edge/1' cannot be profiled"),
        ("all", ["-i", str(inventories / "escape.yml")], "contains control characters"),
    ]
    runs = []
    for index, (hosts, arguments, _) in enumerate(cases):
        campaign = inventories / f"campaign-{index}.yml"
        campaign.write_text(CAMPAIGN.format(hosts=hosts))
        out = inventories / f"out-{index}"
        # The same inputs fail in-process first: the command line below must never get as
        # far as running a campaign.
        inventory = arguments[arguments.index("-i") + 1]
        limit = arguments[arguments.index("-l") + 1] if "-l" in arguments else None
        with pytest.raises(InventoryError):
            load_inventory(inventory, hosts.strip("'"), limit)
        runs.append([sys.executable, "-m", "orchestrator.cli", "run", str(campaign), *arguments])
        runs[-1] += ["-o", str(out)]

    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "300"}

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=120, cwd=inventories, env=env
        )

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(run, runs))

    for index, ((_, arguments, expected), result) in enumerate(zip(cases, results, strict=True)):
        shown = f"{arguments}: {result.stderr}"
        assert result.returncode == 2, shown
        assert result.stderr.startswith("error: "), shown
        assert "Traceback" not in result.stderr, shown
        assert expected in result.stderr, shown
        source = arguments[arguments.index("-i") + 1]
        assert source in result.stderr, shown
        assert not (inventories / f"out-{index}").exists(), "nothing may run on bad input"
    assert list(inventories.rglob("*PWNED*")) == []
