"""The session role's action plugin (roles/fleetprof_session/action_plugins/
fleetprof_session_end.py), its pure parts: the command lines it sends through the device's
shell, how it reads the background job's status file, and what it trusts of the runner's
result. The plugin's run on real devices: the fleet tests (every `fleetprof run` goes
through it) and tests/integration/test_fleet_disk_full.py (the path it leaves to the
role's collect tasks)."""

from __future__ import annotations

import importlib.util
import subprocess
from types import ModuleType

import pytest
from ansible.errors import AnsibleActionFail

from tests.support.paths import REPO

PLUGIN = REPO / "roles" / "fleetprof_session" / "action_plugins" / "fleetprof_session_end.py"
ARCHIVE = "/home/u/.fleetprof/runs/c/r1.tar.gz"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fleetprof_session_end", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = load()

NASTY = [
    "; rm -rf / #",
    "$(touch pwned)",
    "`touch pwned`",
    "a | tee pwned",
    "line one\nline two",
    "'single' \"double\" \\back",
    "*",
    "$HOME ${PATH} ~",
    "-rf",
    "",
]


def test_a_command_line_gives_the_device_shell_back_each_word_exactly(tmp_path: object) -> None:
    line = plugin.command("printf", "%s\\0", *NASTY)
    done = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, check=True)
    assert done.stdout.split("\0")[:-1] == NASTY


@pytest.mark.parametrize("path", ["relative/x", "~/x", "/a\nb", "/a\0b", ""])
def test_a_device_path_must_be_absolute_and_on_one_line(path: str) -> None:
    with pytest.raises(AnsibleActionFail, match="archive: expected an absolute path"):
        plugin.absolute_path(path, "archive")


def test_the_job_status_reads_running_until_the_module_result_replaces_it() -> None:
    assert plugin.read_status("") is None
    assert plugin.read_status('{"started": 1, "finished": 0, "ansible_job_id": "j1"}') is None
    result = plugin.read_status('{"status": "ok", "archive": "/a.tgz", "changed": true}\n')
    assert result == {"status": "ok", "archive": "/a.tgz", "changed": True, "finished": True}
    # The async wrapper's own failure (the module could not run) is finished and failed.
    failed = plugin.read_status('{"started": 1, "finished": 1, "failed": 1, "msg": "boom"}')
    assert failed is not None and failed["failed"] == 1


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"a string"'])
def test_a_job_status_that_is_not_a_json_object_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(AnsibleActionFail, match="the session's job status is not"):
        plugin.read_status(text)


@pytest.mark.parametrize(
    ("result", "size"),
    [
        ({"archive": ARCHIVE, "archive_bytes": 1234}, 1234),
        ({"archive": ARCHIVE, "archive_bytes": 0}, 0),
        # Another path than the plan's: the device does not choose what is fetched.
        ({"archive": "/etc/shadow", "archive_bytes": 10}, None),
        ({"archive": None, "archive_bytes": 10}, None),
        ({"archive": ARCHIVE}, None),
        ({"archive": ARCHIVE, "archive_bytes": True}, None),
        ({"archive": ARCHIVE, "archive_bytes": "10"}, None),
        ({"archive": ARCHIVE, "archive_bytes": -1}, None),
        ({"archive": ARCHIVE, "archive_bytes": 1.5}, None),
    ],
)
def test_only_the_plans_archive_with_a_whole_size_is_fetched(
    result: dict[str, object], size: int | None
) -> None:
    assert plugin.archive_size(result, ARCHIVE) == size


def test_the_looks_come_often_just_after_the_deadline_then_every_poll() -> None:
    looks = plugin.look_times(100.0, 1.0, now=90.0)
    first = [next(looks) for _ in range(len(plugin.FIRST_LOOKS_S) + 2)]
    assert first[0] == 100.0 + plugin.FIRST_LOOKS_S[0]  # none before the window ends
    assert first == sorted(first)
    last = 100.0 + plugin.FIRST_LOOKS_S[-1]
    assert first[-2:] == [last + 1.0, last + 2.0]


def test_a_window_already_over_is_looked_at_at_once_then_as_after_a_deadline() -> None:
    looks = plugin.look_times(0.0, 2.0, now=500.0)
    assert next(looks) == 500.0
    assert next(looks) == 500.0 + plugin.FIRST_LOOKS_S[0]
