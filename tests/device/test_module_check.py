"""The device's check that the program's Python imports a module an in-target profiler
needs (memray), before T0 (Python 3.8 syntax): where it cannot, the profiler is skipped
with the reason and the command unwrapped; the memray converter without memray says why."""

import json
import sys

from fleetprof_device import lprof_json, memray_json
from fleetprof_device.arguments import _profiler_errors
from fleetprof_device.module_check import check_modules, option_errors

WRAP = [sys.executable, "-u", "-m", "memray", "run", "-q", "-o", "/w/memray.bin"]


def plans(module):
    target = {
        "mode": "launch",
        "command": [*WRAP, "app.py", "--x"],
        "env": {},
        "cwd": None,
        "interrupt_s": 3.0,
    }
    spec = {
        "name": "memray",
        "status": "planned",
        "reason": None,
        "argv": [],
        "launch_argv": [],
        "in_target": True,
        "outputs": ["memray.json", "memray.bin"],
        "max_bytes": 1 << 20,
        "post_argv": [["python3", "-c", "pass"]],
        "options": {"module": module, "replaces": 2, "wrap": len(WRAP), "interrupt_s": 3.0},
    }
    return target, spec


def test_a_python_that_lacks_the_module_skips_the_profiler_and_unwraps_the_command():
    target, spec = plans("fleetprof_no_such_module")
    said = []
    check_modules(target, [spec], said.append)
    assert spec["status"] == "skipped" and spec["post_argv"] == []
    assert spec["reason"].startswith(
        "fleetprof_no_such_module is not installed for the program's Python ("
        + sys.executable
        + ": `import fleetprof_no_such_module` failed: ModuleNotFoundError"
    )
    assert target["command"] == [sys.executable, "-u", "app.py", "--x"]
    assert target["interrupt_s"] is None
    assert said == ["memray: skipped: " + spec["reason"]]


def test_a_python_that_has_it_keeps_the_plan():
    target, spec = plans("json")
    check_modules(target, [spec], lambda line: None)
    assert spec["status"] == "planned" and target["command"][: len(WRAP)] == WRAP


def test_the_module_option_is_validated():
    assert option_errors({}) == []
    assert option_errors({"module": "memray", "wrap": 8, "replaces": 1}) == []
    bad = option_errors({"module": "os; import evil", "wrap": 0, "replaces": True})
    assert bad == [
        "options.module must be a Python module name",
        "options.wrap must be a positive integer",
        "options.replaces must be a positive integer",
    ]
    _target, spec = plans("memray; x")
    assert "options.module must be a Python module name" in _profiler_errors(spec)


def test_the_converter_without_memray_writes_an_error_document(tmp_path):
    capture = tmp_path / "memray.bin"
    capture.write_bytes(b"MEMRAY\x00junk")
    output = tmp_path / "memray.json"
    code = memray_json.main([str(capture), str(output), "5"])
    document = json.loads(output.read_text())
    assert code == 1 and document["schema"] == memray_json.SCHEMA
    assert document["error"].startswith("memray.bin: ")


def test_the_line_profiler_converter_without_it_or_on_a_bad_file_writes_an_error_document(
    tmp_path,
):
    stats = tmp_path / "line_profiler.lprof"
    stats.write_bytes(b"not a pickle")
    output = tmp_path / "line_profiler.json"
    code = lprof_json.main([str(stats), str(output), "5"])
    document = json.loads(output.read_text())
    assert code == 1 and document["schema"] == lprof_json.SCHEMA
    assert document["error"].startswith("line_profiler.lprof: ")
