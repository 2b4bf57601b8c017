"""The device package on its own: every module imports on this Python, the zipapp's
entry point, and the pieces that need no process or fleet (Python 3.8 syntax)."""

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import fleetprof_device
from fleetprof_device import __main__ as entry
from fleetprof_device import arguments, checksums, contract, files, procread, pyspy_output
from fleetprof_device.errors import InvocationError

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_imports_and_stays_small():
    names = [info.name for info in pkgutil.iter_modules(fleetprof_device.__path__)]
    assert {"contract", "runner", "facts", "stop", "session", "pyspy_output"} <= set(names)
    for name in names:
        module = importlib.import_module("fleetprof_device." + name)
        lines = Path(module.__file__).read_text(encoding="utf-8").count("\n")
        assert lines <= 600, (name, lines)


def test_the_entry_point_names_its_commands(capsys):
    assert entry.main([]) == 2
    assert "session|facts|stop" in capsys.readouterr().err


def run_command(command, args):
    """``python -m fleetprof_device COMMAND ARGS_FILE`` -> (exit code, its JSON result)."""
    done = subprocess.run(
        [sys.executable, "-m", "fleetprof_device", command, str(args)],
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        check=False,
    )
    return done.returncode, json.loads(done.stdout.decode())


def test_facts_run_through_the_entry_point(tmp_path):
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"hw_model": "bench-1"}))
    code, result = run_command("facts", args)
    assert code == 0
    assert result["facts"]["hw_model"] == "bench-1"
    assert result["facts"]["python"] == ".".join(map(str, sys.version_info[:3]))


def test_a_session_with_a_broken_plan_fails_with_one_json_object(tmp_path):
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"plan": {"schema": "fleetprof.plan/0"}}))
    code, result = run_command("session", args)
    assert code == 1 and result["failed"] is True
    assert contract.PLAN_SCHEMA in result["msg"]


def test_the_arguments_file_may_name_the_device_bundle_and_nothing_else(tmp_path):
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"plan": {}, contract.DEVICE_BUNDLE_ARG: {}, "_ansible_x": 1}))
    assert arguments.load_args([str(args)]) == ({}, False)
    args.write_text(json.dumps({"plan": {}, "other": 1}))
    with pytest.raises(InvocationError, match="unsupported parameters: other"):
        arguments.load_args([str(args)])


def test_py_spy_options_are_read_in_both_spellings_and_device_data_is_survived():
    read = pyspy_output.option_value
    assert read(["py-spy", "record", "--rate", "97"], ("--rate", "-r")) == 97.0
    assert read(["py-spy", "--rate=50"], ("--rate",)) == 50.0
    assert read(["py-spy", "-r", "x"], ("--rate", "-r")) is None
    assert read(["py-spy", 7, None, "--duration", None], ("--duration",)) is None
    assert read(["--rate"], ("--rate",)) is None


def test_procfs_texts_parse_as_the_samplers_read_them():
    kv = procread.parse_kv_kb("MemTotal:  2048 kB\nMemFree: x kB\n", ("MemTotal", "MemFree"))
    assert kv == {"MemTotal": 2048, "MemFree": None}
    times = procread.parse_cpu_times("cpu  1 2 3 4 5 6 7 8\ncpu0 1 1 1 1 0 0 0 0\nintr 5\n")
    assert set(times) == {"cpu", "cpu0"}
    assert procread.cpu_pct((50, 100), (100, 200)) == 50.0  # (busy, total) ticks


def test_a_capped_output_is_cut_at_a_line_end(tmp_path):
    path = tmp_path / "out.folded"
    path.write_bytes(b"a;b 1\n" * 100)
    assert files.cap_output(str(path), 64) == (60, 600)
    assert path.read_bytes().endswith(b"\n")


def test_the_archive_is_flat_with_the_manifest_first(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    for name in ("z.txt", contract.MANIFEST_FILE, ".reserve"):
        (workdir / name).write_text(name)
    archive = tmp_path / "runs" / "a.tar.gz"
    assert files.pack_archive(str(workdir), str(archive)) == [contract.MANIFEST_FILE, "z.txt"]
    with tarfile.open(str(archive)) as tar:
        assert tar.getnames() == [contract.MANIFEST_FILE, "z.txt"]
    assert oct(os.stat(str(archive)).st_mode & 0o777) == "0o600"


def test_a_pinned_tool_runs_only_with_its_sha256(tmp_path):
    tool = tmp_path / "tool"
    tool.write_bytes(b"#!/bin/sh\n")
    digest = checksums.file_sha256(str(tool))
    hashes = checksums.ToolHashes()
    assert hashes.problem(str(tool), digest.upper()) == (None, digest)
    problem, found = hashes.problem(str(tool), "0" * 64)
    assert found == digest and problem is not None and "does not match" in problem
