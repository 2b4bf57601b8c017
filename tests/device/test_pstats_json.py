"""The cProfile converter on the device (Python 3.8 syntax): a real profile of a real run,
and profiles that are truncated, corrupt, not cProfile's, too large or absent."""

import cProfile
import json
import marshal
import subprocess
import sys
from pathlib import Path

from fleetprof_device import pstats_json

ROOT = Path(__file__).resolve().parents[2]


def leaf(n):
    return n * n


def branch(k):
    return sum(leaf(i) for i in range(k))


def profile_of(tmp_path):
    """A real profile: branch() called 7 times, leaf() 7 * 50 times."""
    path = tmp_path / "run.prof"
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(7):
        branch(50)
    prof.disable()
    prof.dump_stats(str(path))
    return path


def convert(tmp_path, profile, top=20, edges=5):
    output = tmp_path / "out.json"
    argv = pstats_json.post_argv(sys.executable, str(profile), str(output), top, edges)
    argv[argv.index(pstats_json.DEVICE_PACKAGE_ARG)] = str(ROOT)
    done = subprocess.run(argv, capture_output=True, check=False)
    return done.returncode, json.loads(output.read_text()), done.stderr.decode()


def test_a_real_profile_becomes_functions_edges_and_totals(tmp_path):
    code, doc, _ = convert(tmp_path, profile_of(tmp_path))
    assert code == 0
    assert doc["schema"] == pstats_json.SCHEMA
    assert doc["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    by_name = {f["function"]: f for f in doc["functions"]}
    assert by_name["branch"]["calls"] == 7 and by_name["branch"]["primitive_calls"] == 7
    assert by_name["leaf"]["calls"] == 350
    assert by_name["branch"]["cumtime"] >= by_name["branch"]["tottime"] >= 0
    assert doc["calls"] >= 357 and doc["functions_total"] >= 3
    assert doc["tottime"] >= by_name["leaf"]["tottime"]
    # leaf is called by the generator expression that branch makes (7 times).
    assert any(e["callee"][2] == "leaf" and e["calls"] == 350 for e in doc["edges"])
    assert any(e["caller"][2] == "branch" and e["calls"] == 7 for e in doc["edges"])


def test_top_and_edges_are_capped(tmp_path):
    code, doc, _ = convert(tmp_path, profile_of(tmp_path), top=1, edges=0)
    assert code == 0
    assert doc["edges"] == []
    assert 1 <= len(doc["functions"]) <= 2  # the first by tottime and the first by cumtime
    data = {(f"f{i}.py", i, "fn"): (1, 1, 0.001, 0.001, {}) for i in range(2000)}
    assert len(pstats_json.summarize(data, 10_000, 10_000)["functions"]) == pstats_json.MAX_TOP


def test_a_truncated_profile_is_an_error_in_the_json_not_a_traceback(tmp_path):
    good = profile_of(tmp_path).read_bytes()
    cut = tmp_path / "cut.prof"
    cut.write_bytes(good[: len(good) // 2])
    code, doc, err = convert(tmp_path, cut)
    assert code == 1
    assert "truncated" in doc["error"] and "cut.prof" in doc["error"]
    assert "Traceback" not in err


def test_corrupt_foreign_empty_and_absent_profiles_say_what_they_are(tmp_path):
    cases = {
        "corrupt.prof": b"\xff\x00garbage" * 10,
        "foreign.prof": marshal.dumps([1, 2, 3]),
        "badentry.prof": marshal.dumps({("a.py", 1, "f"): ("x", 1, 0.1, 0.1, {})}),
        "empty.prof": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        code, doc, err = convert(tmp_path, tmp_path / name)
        assert code == 1 and name in doc["error"] and "Traceback" not in err, (name, doc, err)
    code, doc, _ = convert(tmp_path, tmp_path / "absent.prof")
    assert code == 1 and "absent.prof" in doc["error"]


def test_a_profile_over_the_cap_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(pstats_json, "MAX_PROFILE_BYTES", 10)
    document, error = pstats_json.convert(str(profile_of(tmp_path)), 20, 5)
    assert error is not None and "over the cap" in error and document["error"] == error


def test_long_names_are_cut(tmp_path):
    data = {("x" * 1000, 1, "f" * 1000): (1, 1, 0.5, 0.5, {})}
    row = pstats_json.summarize(data, 5, 5)["functions"][0]
    assert len(row["file"]) == pstats_json.MAX_TEXT == len(row["function"])
