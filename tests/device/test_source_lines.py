"""The runner's reader of py-spy's hot lines' source text (fleetprof_device/source_lines.py),
on files made here (Python 3.8 syntax: these run on the device's oldest Python)."""

import json
import os
import sys
import time

from fleetprof_device import contract
from fleetprof_device import source_lines as sl
from fleetprof_device.profilers import ProfilerRun
from fleetprof_device.target import Target

FOREVER = time.time() + 3600

MODULE = """\
import os


def decode(frame):
    total = 0
    for byte in frame:
        total += byte * byte
    return total


class Pipeline:
    def run(self):
        return [decode(b"abc") for _ in range(3)]
"""


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def folded(tmp_path, text):
    return str(write(tmp_path / "py-spy.folded", text))


def test_a_leaf_frame_is_split_as_the_controller_splits_it():
    assert sl.leaf_frame("<module> (app.py:12);decode (pkg/mod.py:7)") == (
        "decode",
        "pkg/mod.py",
        7,
    )
    assert sl.leaf_frame("thread (14317): MainThread;run (C:/Program Files (x86)/a.py:3)") == (
        "run",
        "C:/Program Files (x86)/a.py",
        3,
    )
    assert sl.leaf_frame("main (app.py:3);PyEval_EvalFrame (libpython3.11.so)") is None
    assert sl.leaf_frame("thread (14317): MainThread") is None
    assert sl.leaf_frame("main (app.py:3);0x7f00aa (libz.so.1)") is None
    assert sl.leaf_frame("f (:9)") is None  # no file


def test_self_samples_are_counted_by_function_and_line(tmp_path):
    path = folded(
        tmp_path,
        "thread (1): MainThread;<module> (app.py:20);decode (pkg/mod.py:7) 60\n"
        "thread (1);<module> (app.py:20);decode (pkg/mod.py:7) 5\n"
        "<module> (app.py:20);decode (pkg/mod.py:6) 30\n"
        "<module> (app.py:20) 4\n"
        "not a stack\n"
        "<module> (app.py:20);decode (pkg/mod.py:6) 1234567890123456789012\n"
        " 3\n",
    )
    counts = sl.hot_leaves(path, 1 << 20, FOREVER)
    assert counts == {("decode", "pkg/mod.py"): {7: 65, 6: 30}, ("<module>", "app.py"): {20: 4}}
    # Past max_bytes nothing more is read; no time left: nothing at all.
    assert sl.hot_leaves(path, 60, FOREVER) == {}
    assert sl.hot_leaves(path, 1 << 20, time.time() - 1) is None
    assert sl.hot_leaves(str(tmp_path / "absent"), 1 << 20, FOREVER) is None


def test_the_hottest_functions_and_lines_come_in_the_controllers_order():
    counts = {
        ("b", "x.py"): {3: 5, 4: 5, 9: 1},
        ("a", "x.py"): {1: 11},
        ("c", "y.py"): {2: 2},
    }
    assert sl.hottest(counts, 2, 2) == [(("a", "x.py"), [1]), (("b", "x.py"), [3, 4])]


def test_a_package_file_is_found_from_the_scripts_directory_and_its_lines_read(tmp_path):
    app = tmp_path / "app"
    write(app / "pkg" / "__init__.py", "")
    write(app / "pkg" / "sub" / "__init__.py", "")
    write(app / "pkg" / "sub" / "mod.py", MODULE)
    write(app / "main.py", "from pkg.sub.mod import Pipeline\nPipeline().run()\n")
    roots = sl.search_roots([sys.executable, "main.py"], [str(app)])
    assert roots[0] == str(app)
    path = folded(
        tmp_path,
        "<module> (main.py:2);Pipeline.run (pkg/sub/mod.py:13);decode (pkg/sub/mod.py:7) 70\n"
        "<module> (main.py:2);Pipeline.run (pkg/sub/mod.py:13);decode (pkg/sub/mod.py:6) 20\n"
        "<module> (main.py:2);Pipeline.run (pkg/sub/mod.py:13) 9\n"
        "<module> (main.py:2) 1\n"
        "_find_and_load (<frozen importlib._bootstrap>:1176) 2\n",
    )
    document = sl.source_lines(path, 1 << 20, roots, FOREVER)
    assert document["schema"] == contract.SOURCE_LINES_SCHEMA
    assert document["files"]["pkg/sub/mod.py"] == {
        "path": os.path.realpath(str(app / "pkg" / "sub" / "mod.py")),
        "lines": {
            "6": "for byte in frame:",
            "7": "total += byte * byte",
            "13": ('return [decode(b"abc") for _ in range(3)]'),
        },
    }
    assert document["files"]["main.py"]["lines"] == {"2": "Pipeline().run()"}
    assert document["missing"] == ["<frozen importlib._bootstrap>"]
    # Only the hottest: one function, its hottest line.
    one = sl.source_lines(path, 1 << 20, roots, FOREVER, functions=1, lines=1)
    assert one["files"] == {
        "pkg/sub/mod.py": {
            "path": document["files"]["pkg/sub/mod.py"]["path"],
            "lines": {"7": "total += byte * byte"},
        }
    }


def test_a_file_of_that_name_without_the_function_is_not_taken(tmp_path):
    decoy = write(tmp_path / "first" / "mod.py", "x = 1\n" * 20)
    real = write(tmp_path / "second" / "mod.py", MODULE)
    late = write(tmp_path / "third" / "mod.py", "\n" * 10 + "def decode(frame):\n    pass\n")
    path = folded(tmp_path, "<module> (app.py:1);decode (mod.py:7) 10\n")
    roots = [str(decoy.parent), str(late.parent), str(real.parent)]
    document = sl.source_lines(path, 1 << 20, roots, FOREVER)
    # The decoy defines no decode; the third one defines it after line 7.
    assert document["files"]["mod.py"]["path"] == os.path.realpath(str(real))


def test_only_python_source_files_are_read_and_lines_are_cut(tmp_path):
    secret = write(tmp_path / "secret.txt", "password = 'hunter2'\n")
    os.symlink(str(secret), str(tmp_path / "leak.py"))
    write(tmp_path / "long.py", "x = '%s'\n" % ("y" * 5000))
    path = folded(tmp_path, "<module> (leak.py:1) 5\n<module> (long.py:1) 4\n")
    document = sl.source_lines(path, 1 << 20, [str(tmp_path)], FOREVER)
    assert "leak.py" not in document["files"] and "leak.py" in document["missing"]
    text = document["files"]["long.py"]["lines"]["1"]
    assert len(text) == contract.SOURCE_LINE_MAX_CHARS and text.startswith("x = 'yyy")


def test_the_target_interpreters_library_is_searched_and_another_pythons_is_not(tmp_path):
    venv = tmp_path / "venv"
    write(
        venv / "lib" / "python3.9" / "site-packages" / "lib3rd" / "core.py", "def f():\n    pass\n"
    )
    write(venv / "bin" / "python3", "")
    nowhere = {"PATH": str(tmp_path / "empty")}
    runners = [p for p in sys.path if p and os.path.isdir(p) and os.path.isabs(p)]
    roots = sl.search_roots(
        ["python3", "-m", "app"], [str(tmp_path)], nowhere, exes=[str(venv / "bin" / "python3")]
    )
    assert str(venv / "lib" / "python3.9" / "site-packages") in roots
    # Not the runner's: another interpreter's standard library has other text.
    assert not set(runners) & set(roots)
    # An interpreter it cannot tell: the runner's own library, after the target's directory.
    unknown = sl.search_roots(["./run.sh"], [str(tmp_path)], nowhere)
    assert unknown[0] == str(tmp_path) and set(runners) <= set(unknown)
    same = sl.search_roots(["python3"], [str(tmp_path)], nowhere, exes=[sys.executable])
    assert set(runners) <= set(same)


def test_pythonpath_and_a_scripts_interpreter_line_are_followed(tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    bindir = tmp_path / "bin"
    tool = write(bindir / "mytool", "#!%s\nimport app\n" % (tmp_path / "py" / "bin" / "python3"))
    tool.chmod(0o755)
    write(tmp_path / "py" / "lib" / "python3.8" / "json" / "decoder.py", "")
    roots = sl.search_roots(
        ["mytool"], [str(tmp_path)], env={"PYTHONPATH": str(extra), "PATH": str(bindir)}
    )
    assert str(extra) in roots
    assert str(tmp_path / "py" / "lib" / "python3.8") in roots


class _Child:
    pid = 1


def test_after_the_window_the_file_is_written_for_the_profiler_that_asks(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    write(workdir / "py-spy.folded", "<module> (job.py:2) 8\n")
    cwd = tmp_path / "cwd"
    write(cwd / "job.py", "import time\nwhile True: pass\n")
    spec = {
        "name": "py-spy",
        "status": "planned",
        "argv": ["py-spy"],
        "outputs": ["py-spy.folded"],
        "max_bytes": 1 << 20,
        "options": {contract.SOURCE_LINES_OPTION: True},
    }
    asking, silent = ProfilerRun(spec), ProfilerRun(dict(spec, name="other", options={}))
    asking.child = silent.child = _Child()
    logged = []
    target = Target(
        {"mode": "launch", "command": ["python3", "job.py"], "cwd": str(cwd)}, logged.append
    )
    target.cmdline = ["python3", "job.py"]
    sl.after_window([asking, silent], target, str(workdir), FOREVER, logged.append)
    document = json.loads((workdir / contract.SOURCE_LINES_FILE).read_text())
    assert document["files"]["job.py"]["lines"] == {"2": "while True: pass"}
    assert any("source lines: 1 files read" in line for line in logged)
    # No time left before the hard deadline: nothing is read, nothing fails.
    os.unlink(str(workdir / contract.SOURCE_LINES_FILE))
    sl.after_window([asking], target, str(workdir), time.time(), logged.append)
    assert not (workdir / contract.SOURCE_LINES_FILE).exists()
