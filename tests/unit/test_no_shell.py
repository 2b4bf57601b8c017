"""Nothing a user writes reaches a shell: the code never asks for one, the Ansible content
never runs one, and strings full of shell syntax travel from the campaign through the plan
to the device runner as exactly the argv elements and values they were written as.

(The one shell on purpose is cron's: ``fleetprof schedule`` quotes every word of its
crontab line for ``/bin/sh``; tests/unit/test_schedule.py runs that line through a real sh.)
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign
from orchestrator.models import SessionPlan
from orchestrator.profilers.base import ToolChoice
from orchestrator.stages.plan import make_plan
from tests.support.factories import host_facts
from tests.support.paths import REPO
from tests.support.runner import SESSION_MODULE as RUNNER

# ----------------------------------------------------------------------------- Python, static

# module -> functions of it that run a shell (or a command line string through one)
SHELL_FUNCTIONS = {
    "os": {"system", "popen"},
    "subprocess": {"getoutput", "getstatusoutput"},
    "asyncio": {"create_subprocess_shell"},
}
SHELL_MODULES = {"commands", "popen2"}


def python_sources() -> list[Path]:
    files = sorted((REPO / "orchestrator").rglob("*.py"))
    files += sorted((REPO / "fleetprof_device").rglob("*.py"))
    files += sorted(REPO.glob("roles/*/library/*.py"))
    files += action_plugins()
    return files


def action_plugins() -> list[Path]:
    """The roles' controller-side action plugins."""
    return sorted(REPO.glob("roles/*/action_plugins/*.py"))


def raw_commands(source: str, where: str) -> tuple[list[str], int]:
    """(each command line an action plugin sends that is not built by ``command(...)``,
    how many it sends) in Python ``source``: Ansible runs a plugin's low-level command
    through the device's shell, so every word must come quoted from ``command``."""
    found: list[str] = []
    sent = 0
    for node in ast.walk(ast.parse(source, filename=where)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "_low_level_execute_command"
        ):
            continue
        sent += 1
        first = node.args[0] if node.args else None
        if not (
            isinstance(first, ast.Call)
            and isinstance(first.func, ast.Name)
            and first.func.id == "command"
        ):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)[:120]}")
    return found, sent


def shell_uses(source: str, where: str) -> tuple[list[str], list[str]]:
    """(what runs a shell, every subprocess call seen) in Python ``source``, each as
    'where:line: what'."""
    tree = ast.parse(source, filename=where)
    aliases: dict[str, str] = {}  # local name -> module ("sp" -> "subprocess")
    direct: dict[str, str] = {}  # local name -> "module.function" (from os import system)
    found: list[str] = []
    calls: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                aliases[name.asname or name.name] = name.name
                if name.name.split(".")[0] in SHELL_MODULES:
                    found.append(f"{where}:{node.lineno}: import {name.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in SHELL_MODULES:
                found.append(f"{where}:{node.lineno}: from {node.module} import ...")
            for name in node.names:
                if name.name in SHELL_FUNCTIONS.get(node.module, ()):
                    direct[name.asname or name.name] = f"{node.module}.{name.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        qualified = None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            qualified = f"{aliases.get(func.value.id, func.value.id)}.{func.attr}"
        elif isinstance(func, ast.Name):
            qualified = direct.get(func.id, func.id)
        if qualified:
            module, _, function = qualified.rpartition(".")
            if function in SHELL_FUNCTIONS.get(module, ()):
                found.append(f"{where}:{node.lineno}: {qualified}()")
            if module == "subprocess":
                calls.append(f"{where}:{node.lineno}: {qualified}")
        for keyword in node.keywords:
            # shell=False is fine; anything else (True, a variable) may be a shell.
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"{where}:{node.lineno}: shell={ast.unparse(keyword.value)}")
    return found, calls


def test_the_python_code_never_asks_for_a_shell() -> None:
    found: list[str] = []
    calls: list[str] = []
    for path in python_sources():
        shells, subprocess_calls = shell_uses(path.read_text(), str(path.relative_to(REPO)))
        found += shells
        calls += subprocess_calls
    assert found == [], "shell use found:\n" + "\n".join(found)
    # The walk saw the code that does start processes (else this test proves nothing).
    assert any(call.startswith("fleetprof_device/") and "Popen" in call for call in calls), calls
    assert any(call.startswith("orchestrator/") for call in calls), calls


def test_every_command_an_action_plugin_sends_is_quoted_word_by_word() -> None:
    found: list[str] = []
    sent = 0
    for path in action_plugins():
        problems, count = raw_commands(path.read_text(), str(path.relative_to(REPO)))
        found += problems
        sent += count
    assert found == [], "command lines not built by command():\n" + "\n".join(found)
    assert sent >= 2  # the walk saw the plugin's commands (else this proves nothing)
    bad, _ = raw_commands("self._low_level_execute_command('rm ' + path)\n", "x.py")
    assert len(bad) == 1


def test_the_python_check_catches_each_kind_of_shell_use() -> None:
    code = (
        "import os, subprocess as sp, commands\n"
        "from os import popen as p\n"
        "os.system('ls')\n"
        "p('ls')\n"
        "sp.run('ls', shell=True)\n"
        "sp.getoutput('ls')\n"
        "sp.run(['ls'], shell=flag)\n"
        "sp.run(['ls'], shell=False)\n"
    )
    found, calls = shell_uses(code, "sample.py")
    lines = sorted(int(entry.split(":")[1]) for entry in found)
    assert lines == [1, 3, 4, 5, 6, 7], found
    assert len(calls) == 4


# ----------------------------------------------------------------------------- Ansible, static

SHELL_ACTIONS = {
    f"{prefix}{name}"
    for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    for name in ("shell", "raw", "script")
}
COMMAND_ACTIONS = {f"{p}command" for p in ("", "ansible.builtin.", "ansible.legacy.")}
TASK_LISTS = ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")
KEYWORDS = {
    "name", "when", "register", "loop", "loop_control", "vars", "become", "become_user",
    "become_method", "ignore_errors", "changed_when", "failed_when", "until", "retries",
    "delay", "async", "poll", "tags", "notify", "no_log", "environment", "delegate_to",
    "delegate_facts", "run_once", "check_mode", "diff", "args", "listen", "throttle",
    "timeout", "any_errors_fatal", "ignore_unreachable", "module_defaults", "collections",
    "connection", "debugger", "block", "rescue", "always",
}  # fmt: skip


class _AnsibleLoader(yaml.SafeLoader):
    """Safe YAML that keeps Ansible's own tags (!unsafe, !vault) as plain values."""


_AnsibleLoader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: loader.construct_scalar(node),
)


def ansible_files() -> list[Path]:
    return sorted(REPO.glob("roles/*/tasks/*.yml")) + sorted(REPO.glob("playbooks/*.yml"))


def tasks_of(path: Path) -> Iterator[dict[str, Any]]:
    """Every task of a tasks file or playbook, blocks opened."""
    document = yaml.load(path.read_text(), Loader=_AnsibleLoader) or []
    is_playbook = path.parent.name == "playbooks"
    pending: list[Any] = []
    for item in document:
        if is_playbook and isinstance(item, dict):
            pending += [task for key in TASK_LISTS for task in item.get(key) or []]
        else:
            pending.append(item)
    while pending:
        task = pending.pop(0)
        if not isinstance(task, dict):
            continue
        nested = [t for key in ("block", "rescue", "always") for t in task.get(key) or []]
        if nested:
            pending += nested
            continue
        yield task


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def action_of(task: dict[str, Any]) -> tuple[str, Any]:
    if "action" in task or "local_action" in task:
        action = task.get("action", task.get("local_action"))
        if isinstance(action, dict):
            return str(action.get("module")), action
        name, _, rest = str(action).partition(" ")
        return name, rest
    names = [key for key in task if key not in KEYWORDS and not key.startswith("with_")]
    assert len(names) == 1, f"cannot tell the module of {task}"
    return names[0], task[names[0]]


def ansible_problems(paths: list[Path]) -> tuple[list[str], dict[str, set[str]]]:
    """(each task that runs a shell or a command string, module -> files using it)."""
    problems: list[str] = []
    modules: dict[str, set[str]] = {}
    for path in paths:
        where = path.relative_to(REPO if path.is_relative_to(REPO) else path.parents[1])
        for task in tasks_of(path):
            module, arguments = action_of(task)
            modules.setdefault(module, set()).add(str(where))
            label = f"{where}: task {task.get('name', '(unnamed)')!r}"
            if module in SHELL_ACTIONS:
                problems.append(f"{label}: uses {module}")
            if module in COMMAND_ACTIONS:
                options = arguments if isinstance(arguments, dict) else {}
                options = {**(task.get("args") or {}), **options}
                if not isinstance(options.get("argv"), list) or "cmd" in options:
                    problems.append(f"{label}: {module} without an argv list: {arguments!r}")
            for text in strings_in(task):
                if "pipe" in text and ("lookup(" in text or "query(" in text):
                    problems.append(f"{label}: a pipe lookup runs a shell: {text!r}")
    return problems, modules


def test_no_task_runs_a_shell_and_every_command_is_an_argv_list() -> None:
    problems, modules = ansible_problems(ansible_files())
    assert problems == [], "\n".join(problems)
    # The walk found the real tasks (else this test proves nothing).
    assert {"fleetprof_session", "fleetprof_facts", "ansible.builtin.copy"} <= set(modules)
    assert sum(len(files) for files in modules.values()) >= 10, modules


def test_the_ansible_check_catches_each_kind_of_shell_task(tmp_path: Path) -> None:
    playbook = tmp_path / "playbooks" / "bad.yml"
    playbook.parent.mkdir()
    playbook.write_text(
        """
- hosts: all
  tasks:
    - name: one
      ansible.builtin.shell: echo hi
    - name: two
      block:
        - name: three
          raw: echo hi
      rescue:
        - name: four
          ansible.builtin.command: echo {{ x }}
    - name: five
      ansible.builtin.command:
        cmd: echo hi
    - name: six
      ansible.builtin.command:
        argv: [echo, hi]
    - name: seven
      ansible.builtin.debug:
        msg: "{{ lookup('ansible.builtin.pipe', 'id') }}"
    - name: eight
      action: ansible.builtin.shell echo hi
"""
    )
    problems, modules = ansible_problems([playbook])
    flagged = sorted(line.split("'")[1] for line in problems)
    assert flagged == ["eight", "five", "four", "one", "seven", "three"], problems
    assert set(modules["ansible.builtin.command"]) == {"playbooks/bad.yml"}


# ----------------------------------------------------------------------------- plan, dynamic

NASTY = [
    "; rm -rf / #",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "a | tee /tmp/pwned",
    "true && touch /tmp/pwned",
    "line one\nline two",
    "'single' \"double\" \\back",
    "*.py",
    "$HOME ${PATH} ~",
    "{{ lookup('pipe', 'id') }}",
    "  leading and trailing  ",
]
# The same, each a valid regular expression.
NASTY_REGEXES = [
    "; rm -rf / #",
    r"\$\(touch /tmp/pwned\)",
    "`touch /tmp/pwned`",
    "a | tee /tmp/pwned",
    "true && touch /tmp/pwned",
    "line one\nline two",
    "'single' \"double\" \\\\back",
    r".*\.py",
    r"\$HOME \$\{PATH\} ~",
]
TOOLS = {"py-spy": ToolChoice(version="0.4.3", src="/cache/py-spy", sha256="ab" * 32, problem=None)}
GPU_FACTS = {
    "tools": {"nsys": "/usr/local/cuda/bin/nsys", "ncu": "/usr/local/cuda/bin/ncu"},
    "gpu": {"nvidia_driver": True, "jetson": False, "gpu_counters_admin_only": False},
}


def launch_campaign(command: list[str], launcher: str, **launch: Any) -> Campaign:
    return Campaign.from_mapping(
        {
            "name": "nasty",
            "duration": "2s",
            "target": {"launch": {"command": command, **launch}},
            "profilers": {launcher: {}, "system": {}},
        },
        source="nasty.yml",
    )


def round_trip(plan: SessionPlan) -> dict[str, Any]:
    """The plan as the session play hands it to the device: plan.json, parsed again."""
    return dict(json.loads(json.dumps(plan.to_dict())))


@pytest.mark.parametrize(
    ("launcher", "can_attach"),
    [("py-spy", True), ("py-spy", False), ("nsys", True), ("ncu", True)],
    ids=["runner-launches", "py-spy-launches", "nsys-launches", "ncu-launches"],
)
def test_launch_arguments_env_and_cwd_reach_the_plan_exactly(
    launcher: str, can_attach: bool
) -> None:
    command = ["/usr/bin/python3", *NASTY]
    env = {f"V{index}": value for index, value in enumerate(NASTY)}
    cwd = "/opt/app dir/$(touch pwned);`x`"
    campaign = launch_campaign(command, launcher, env=env, cwd=cwd)
    facts = host_facts(can_attach=can_attach, **GPU_FACTS)

    plan = make_plan(campaign, facts, "r1", TOOLS, t0=1000.0)
    sent = round_trip(plan)

    for target in (plan.target, SessionPlan.from_dict(sent).target):
        assert target.command == command
        assert target.env == env
        assert target.cwd == cwd
    assert plan.target.via_profiler is (launcher != "py-spy" or not can_attach)
    [profiler] = [p for p in plan.profilers if p.name == launcher]
    assert profiler.status == "planned", profiler.reason
    # The command follows "--" element for element: nothing split, joined or quoted.
    assert profiler.launch_argv[-len(command) - 1 :] == ["--", *command]
    for planned in plan.profilers:
        for argv in (planned.argv, planned.launch_argv, *planned.post_argv):
            assert all(isinstance(arg, str) for arg in argv)
            for arg in argv:
                assert arg in command or not any(nasty in arg for nasty in NASTY), (
                    f"{planned.name}: a campaign string inside a larger argument: {arg!r}"
                )


@pytest.mark.parametrize("regex", NASTY_REGEXES)
def test_an_attach_regex_reaches_the_plan_as_written(regex: str) -> None:
    campaign = Campaign.from_mapping(
        {"name": "nasty", "duration": "2s", "target": {"attach": {"process": regex}}}
    )
    plan = make_plan(campaign, host_facts(), "r1", TOOLS, t0=1000.0)
    assert plan.target.process == regex
    assert round_trip(plan)["target"]["process"] == regex
    [pyspy] = plan.profilers
    # py-spy gets the pid the runner found, never the regex.
    assert "{pid}" in pyspy.argv and regex not in pyspy.argv


@pytest.mark.parametrize(
    "name", ["a;b", "$(id)", "`id`", "a b", "a|b", "a&&b", "../x", "a/b", "*", "{{x}}", "a\nb"]
)
def test_a_campaign_name_with_shell_or_path_syntax_is_refused(name: str) -> None:
    # The name becomes a directory on the controller and on every device.
    with pytest.raises(CampaignError) as caught:
        Campaign.from_mapping({"name": name, "duration": "1s", "target": {"attach": {"pid": 1}}})
    assert str(caught.value).startswith("<mapping>: name: expected 1 to 64 letters")


# ----------------------------------------------------------------------------- runner, dynamic

RECORD_ARGV = "import sys, json; json.dump(sys.argv[1:], open('argv.json', 'w'))"
TRICKY_ARGS = ["$(touch PWNED)", "; touch PWNED2", "`touch PWNED3`", "a b", "*"]


def test_the_device_runner_starts_the_command_with_exactly_its_argv(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    # A file the glob would expand to, had a shell seen the "*".
    (cwd / "glob-bait.txt").write_text("")
    command = [sys.executable, "-c", RECORD_ARGV, *TRICKY_ARGS]
    campaign = Campaign.from_mapping(
        {
            "name": "nasty",
            "duration": "1s",
            "target": {"launch": {"command": command, "cwd": str(cwd), "env": {"X": "$(id)"}}},
            "profilers": {"system": {}},
        }
    )
    plan = make_plan(campaign, host_facts(home=str(home)), "r1", TOOLS, t0=time.time() + 0.5)
    args = {"plan": round_trip(plan), "_ansible_check_mode": False, "_ansible_no_log": False}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(args))

    done = subprocess.run(
        [sys.executable, str(RUNNER), str(args_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )

    result = json.loads(done.stdout)
    assert result["failed"] is False, result
    assert json.loads((cwd / "argv.json").read_text()) == TRICKY_ARGS
    assert result["manifest"]["target"]["cmdline"] == command
    pwned = [str(path) for path in tmp_path.rglob("*PWNED*")]
    with tarfile.open(result["archive"]) as tar:
        pwned += [name for name in tar.getnames() if "PWNED" in name]
    assert pwned == []
    assert not any("PWNED" in name for name in os.listdir(REPO))
    assert (cwd / "glob-bait.txt").exists()
