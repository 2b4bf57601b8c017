"""The device's check, before T0, that a launcher's tool knows a flag only newer versions
have (nsys's --pytorch), asked of the tool's own help (Python 3.8 syntax): where the help
lacks it, or cannot be run, the flag leaves launch_argv and the profiler runs without it.

The "tools" here are this Python printing a help text: written here, not nsys's own."""

import sys

from fleetprof_device.arguments import _profiler_errors
from fleetprof_device.flag_check import check_flags, option_errors

FLAG = "--pytorch=autograd-nvtx"


def plan(help_text):
    help_argv = [sys.executable, "-c", f"print({help_text!r})"]
    return {
        "name": "nsys",
        "status": "planned",
        "reason": None,
        "argv": [],
        "launch_argv": ["/opt/nsys", "profile", "--trace", "cuda,nvtx", FLAG, "--", "app"],
        "outputs": ["nsys-stats_nvtx_sum.csv"],
        "max_bytes": 1 << 20,
        "post_argv": [],
        "options": {"flag_check": {"flag": FLAG, "help_argv": help_argv, "needle": "--pytorch"}},
    }


def test_a_tool_whose_help_lists_the_flag_keeps_it():
    spec = plan("--pytorch=\n    Possible values are 'autograd-nvtx', 'autograd-shapes-nvtx'")
    said = []
    check_flags([spec], said.append)
    assert FLAG in spec["launch_argv"]
    assert said == ["nsys: --pytorch is known to /opt/nsys"]


def test_an_older_tool_runs_without_the_flag_and_the_log_says_why():
    spec = plan("--trace=\n    Possible values are 'cuda', 'nvtx', 'osrt'")
    said = []
    check_flags([spec], said.append)
    assert spec["launch_argv"] == ["/opt/nsys", "profile", "--trace", "cuda,nvtx", "--", "app"]
    assert len(said) == 1 and said[0].startswith("nsys: runs without " + FLAG + ": `")
    assert said[0].endswith("(exit code 0) does not list --pytorch")


def test_a_help_that_cannot_run_drops_the_flag_too():
    spec = plan("unused")
    spec["options"]["flag_check"]["help_argv"] = ["/nonexistent/nsys", "profile", "--help"]
    said = []
    check_flags([spec], said.append)
    assert FLAG not in spec["launch_argv"]
    assert "`/nonexistent/nsys profile --help` could not run: " in said[0]


def test_skipped_profilers_and_plans_without_the_option_are_left_alone():
    skipped = plan("nothing")
    skipped["status"] = "skipped"
    plain = plan("nothing")
    del plain["options"]["flag_check"]
    check_flags([skipped, plain], lambda line: None)
    assert FLAG in skipped["launch_argv"] and FLAG in plain["launch_argv"]


def test_the_option_is_validated():
    assert option_errors({}) == []
    assert option_errors(plan("x")["options"]) == []
    bad = plan("x")
    bad["options"]["flag_check"] = {"flag": FLAG, "help_argv": "nsys --help", "needle": "x"}
    message = "options.flag_check must hold flag, needle (strings) and help_argv (a list)"
    assert option_errors(bad["options"]) == [message]
    assert message in _profiler_errors(bad)
    assert _profiler_errors(plan("x")) == []
