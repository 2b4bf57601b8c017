"""The runner's cap on the workload's metrics file (Python 3.8 syntax): the first lines up
to the cap are kept whole, whatever the program appends later is cut at each check, and a
link in the file's place is never followed."""

import os

from fleetprof_device.contract import WORKLOAD_METRICS_ENV
from fleetprof_device.workload import MetricsFile, with_metrics_file


def test_the_program_is_told_the_file_in_the_workdir(tmp_path):
    env = with_metrics_file({"PATH": "/bin", WORKLOAD_METRICS_ENV: "/etc/passwd"}, str(tmp_path))
    assert env[WORKLOAD_METRICS_ENV] == str(tmp_path / "workload.jsonl")
    assert env["PATH"] == "/bin"


def test_the_first_whole_lines_are_kept_and_later_appends_cut(tmp_path):
    capped = MetricsFile(str(tmp_path), max_bytes=100)
    assert capped.entry() is None
    capped.enforce()  # no file yet: nothing to do
    line = b'{"name": "x", "value": 1}\n'  # 26 bytes
    with open(capped.path, "ab") as out:
        out.write(line * 3)
    capped.enforce()
    assert capped.entry()["bytes"] == 78 and capped.entry()["cut_bytes"] == 0
    with open(capped.path, "ab") as out:
        out.write(line * 3)
    capped.enforce()
    assert os.path.getsize(capped.path) == 78  # 3 whole lines fit in 100 bytes
    with open(capped.path, "ab") as out:
        out.write(b"partial")
    capped.enforce()
    with open(capped.path, "rb") as handle:
        assert handle.read() == line * 3
    assert capped.entry() == {
        "file": "workload.jsonl",
        "bytes": 78,
        "max_bytes": 100,
        "cut_bytes": 78 + 7,
    }


def test_a_link_in_the_file_s_place_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * 500)
    capped = MetricsFile(str(tmp_path / "w"), max_bytes=10)
    os.makedirs(str(tmp_path / "w"))
    os.symlink(str(victim), capped.path)
    capped.enforce()
    assert victim.stat().st_size == 500
