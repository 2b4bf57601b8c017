"""Folded-stack parsing and summaries, against real py-spy output and edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.analysis.stacks import (
    MAX_LINE_CHARS,
    Frame,
    StackProfile,
    flame_tree,
    merge_profiles,
    parse_folded,
    parse_frame,
    read_folded,
    top_functions,
)
from tests.support.paths import FIXTURES as _FIXTURES

FIXTURES = _FIXTURES / "py-spy"
FOLDED = sorted(FIXTURES.glob("*.folded.txt"))


def _counts_in(path: Path) -> list[int]:
    """The sample counts of a folded file, read independently of the parser."""
    lines = path.read_text().splitlines()
    return [int(line.rsplit(" ", 1)[1]) for line in lines if line.strip()]


def _stat(profile: StackProfile, function: str, file: str | None = None) -> tuple[float, float]:
    for stat in top_functions(profile, limit=1000):
        if stat.function == function and (file is None or stat.file == file):
            return stat.self_pct, stat.total_pct
    raise AssertionError(f"{function} not among the top functions")


def _functions(profile: StackProfile) -> set[str]:
    return {frame.function for frames in profile.stacks for frame in frames}


def test_every_folded_fixture_is_there() -> None:
    assert {p.name for p in FOLDED} == {
        "io-writer.folded.txt",
        "cpu-two-stages.threads-idle.folded.txt",
        "zlib-native.threads.folded.txt",
        "named-threads.threads.folded.txt",
        "named-threads.threads-idle.folded.txt",
        "named-threads.behind-0.1core.folded.txt",
        "process-tree.subprocesses.folded.txt",
    }


@pytest.mark.parametrize("path", FOLDED, ids=lambda p: p.name)
def test_fixture_total_is_the_sum_of_its_counts(path: Path) -> None:
    profile = read_folded(path)
    assert profile.total_samples == sum(_counts_in(path))
    assert sum(profile.stacks.values()) == profile.total_samples
    assert profile.malformed_lines == 0
    assert not profile.truncated
    assert parse_folded(path.read_text()) == profile


def test_io_writer_is_all_module_level_code() -> None:
    profile = read_folded(FIXTURES / "io-writer.folded.txt")
    # Two lines of <module> (iow.py:5 and :6) are one function when summed.
    assert len(profile.stacks) == 2
    stats = top_functions(profile)
    assert [(s.function, s.file) for s in stats] == [("<module>", "iow.py")]
    assert stats[0].total_pct == pytest.approx(100.0)
    assert stats[0].self_pct == pytest.approx(100.0)
    assert stats[0].self_samples == stats[0].total_samples == 43 + 199
    assert profile.threads == []


def test_cpu_two_stages_shares_match_the_file() -> None:
    path = FIXTURES / "cpu-two-stages.threads-idle.folded.txt"
    profile = read_folded(path)
    # The file: summarize 74, <module> alone 34, decode 91 -> 199 samples.
    total = sum(_counts_in(path))
    assert total == 74 + 34 + 91
    assert _stat(profile, "decode", "work.py") == (round(100 * 91 / total, 2),) * 2  # 45.73
    assert _stat(profile, "summarize", "work.py") == (round(100 * 74 / total, 2),) * 2  # 37.19
    assert _stat(profile, "<module>", "work.py") == (round(100 * 34 / total, 2), 100.0)
    top = top_functions(profile)
    assert [s.function for s in top] == ["decode", "summarize", "<module>"]
    assert top[0].self_pct == 45.73


def test_thread_frames_are_stripped_and_recorded() -> None:
    profile = read_folded(FIXTURES / "cpu-two-stages.threads-idle.folded.txt")
    assert profile.threads == ["MainThread"]
    assert not any(f.startswith("thread") for f in _functions(profile))
    assert all(frames[0].function == "<module>" for frames in profile.stacks)


def test_process_and_unnamed_thread_frames() -> None:
    profile = parse_folded(
        'process 41:"python3 -m svc --port 80";process 42:"python3 worker.py";'
        "thread (0x7F3A2C1B8740);run (worker.py:9) 5\n"
        "thread (901): pool-1;run (worker.py:9) 2\n"
    )
    assert profile.processes == ["41: python3 -m svc --port 80", "42: python3 worker.py"]
    assert profile.threads == ["0x7F3A2C1B8740", "pool-1"]
    assert _functions(profile) == {"run"}
    assert profile.total_samples == 7
    # The sampled thread belongs to the innermost process; the one before is its parent.
    worker, pool = profile.parts
    assert (worker.pid, worker.parent_pid, worker.command) == (42, 41, "python3 worker.py")
    assert (worker.tid, worker.name, worker.samples) == ("0x7F3A2C1B8740", None, 5)
    assert (pool.pid, pool.tid, pool.name, pool.samples) == (None, "901", "pool-1", 2)
    assert sum(pool.stacks.values()) == 2


def test_a_profile_without_pseudo_frames_has_no_parts() -> None:
    profile = read_folded(FIXTURES / "io-writer.folded.txt")
    assert profile.parts == ()


def test_one_thread_shares_the_profile_stacks() -> None:
    profile = read_folded(FIXTURES / "cpu-two-stages.threads-idle.folded.txt")
    [part] = profile.parts
    assert part.stacks is profile.stacks
    assert part.samples == profile.total_samples


def test_unresolved_native_addresses_fold_into_one_frame_per_library() -> None:
    profile = parse_folded(
        "main (a.py:1);deflate (libz.so.1);0x7f01 (libz.so.1);0x7f02 (libz.so.1) 3\n"
        "main (a.py:1);deflate (libz.so.1);0x7f03 (libz.so.1) 2\n"
        "main (a.py:1);0x9 (/usr/lib/libfoo.so);0xa (libz.so.1);0x5 (?) 1\n"
    )
    unresolved = Frame("libz.so.1 (unresolved)", None, None)
    deflate = Frame("deflate", "libz.so.1", None)
    main = Frame("main", "a.py", 1)
    assert profile.stacks == {
        (main, deflate, unresolved): 5,
        (
            main,
            Frame("libfoo.so (unresolved)", None, None),
            unresolved,
            Frame("[unknown] (unresolved)", None, None),
        ): 1,
    }
    stats = {s.function: s.self_samples for s in top_functions(profile)}
    assert stats["libz.so.1 (unresolved)"] == 5
    # The folded frame reads back as itself (exports are folded text too).
    assert parse_frame("libz.so.1 (unresolved)") == unresolved


@pytest.mark.parametrize(
    ("function", "file", "kind"),
    [
        ("decode", "work.py", "python"),
        ("<module>", "<frozen runpy>", "python"),
        ("deflate", "libz.so.1.2.13", "native"),
        ("zlib_compress_impl", "zlibmodule.c", "native"),
        ("libz.so.1 (unresolved)", None, "native"),
        ("decode", None, "python"),
        ("<module>", "/usr/bin/gunicorn", "python"),
    ],
)
def test_frame_kind(function: str, file: str | None, kind: str) -> None:
    from orchestrator.analysis.native import frame_kind, library_of

    assert frame_kind(function, file) == kind
    if kind == "native" and file != "zlibmodule.c":  # a binary: the library
        assert library_of(function, file) == "libz.so.1"
    else:
        assert library_of(function, file) is None


@pytest.mark.parametrize(
    ("text", "frame"),
    [
        ("decode (work.py:4)", Frame("decode", "work.py", 4)),
        ("<module> (iow.py:6)", Frame("<module>", "iow.py", 6)),
        ("decode (work.py)", Frame("decode", "work.py", None)),
        (
            "PyEval_EvalFrameDefault (libpython3.11.so.1.0)",
            Frame("PyEval_EvalFrameDefault", "libpython3.11.so.1.0", None),
        ),
        ("__libc_start_main", Frame("__libc_start_main", None, None)),
        ("f(int, char) const", Frame("f(int, char) const", None, None)),
        (
            "my func (/home/a b/Program Files (x86)/c.py:12)",
            Frame("my func", "/home/a b/Program Files (x86)/c.py", 12),
        ),
        (r"run (C:\app\main.py:3)", Frame("run", r"C:\app\main.py", 3)),
    ],
)
def test_frame_forms(text: str, frame: Frame) -> None:
    assert parse_frame(text) == frame


def test_malformed_lines_are_counted_not_fatal() -> None:
    text = "\n".join(
        [
            "main (a.py:1) 10",
            "",
            "   ",
            "main (a.py:1);work (a.py:5)",  # no count
            "main (a.py:1) -3",
            "main (a.py:1) 1.5",
            "main (a.py:1) many",
            "main (a.py:1) 99999999999999999999999",  # absurd count
            "42",  # a count and no stack
            " 7",  # py-spy's form for a sample with no Python frame: not malformed
            ";;; 3",  # only separators
            "main (a.py:1);" + "x" * MAX_LINE_CHARS + " 1",  # over 1 MiB
            "main (a.py:1);work (a.py:5) 4\r",  # CRLF file
            "main (a.py:1) 0",  # valid, but no samples
        ]
    )
    profile = parse_folded(text)
    assert profile.malformed_lines == 8
    assert profile.total_samples == 21
    assert profile.stacks == {
        (): 7,
        (Frame("main", "a.py", 1),): 10,
        (Frame("main", "a.py", 1), Frame("work", "a.py", 5)): 4,
    }


def test_hostile_bytes_do_not_break_parsing(tmp_path: Path) -> None:
    path = tmp_path / "py-spy.folded"
    path.write_bytes(
        b"main (a.py:1);\xff\xfe (b\x00.py:2) 3\nok (a.py:1) 2\n\x1c\x85\xe2\x80\xa8 1\n"
    )
    profile = read_folded(path)
    assert profile.total_samples == 6
    assert profile.malformed_lines == 0


def test_read_folded_stops_at_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "py-spy.folded"
    line = "main (a.py:1);work (a.py:5) 1\n"
    path.write_text(line * 100)
    profile = read_folded(path, max_bytes=len(line) * 10 + 5)
    assert profile.truncated
    assert profile.total_samples == 10
    assert profile.malformed_lines == 1  # the line cut in half
    assert not read_folded(path, max_bytes=len(line) * 100).truncated


def test_recursion_counts_once_in_total() -> None:
    profile = parse_folded(
        "main (a.py:1);f (a.py:2);f (a.py:3);f (a.py:2) 10\nmain (a.py:1);g (a.py:9) 30\n"
    )
    assert _stat(profile, "f") == (25.0, 25.0)
    assert _stat(profile, "main") == (0.0, 100.0)
    assert all(s.total_pct <= 100.0 for s in top_functions(profile))


def test_top_functions_order_and_limit() -> None:
    profile = parse_folded(
        "main (a.py:1);a (a.py:2) 5\nmain (a.py:1);b (a.py:3) 5\nmain (a.py:1);b (b.py:3) 7\n"
    )
    stats = top_functions(profile)
    # Same function name in two files is two functions.
    assert [(s.function, s.file) for s in stats] == [
        ("b", "b.py"),
        ("a", "a.py"),
        ("b", "a.py"),
        ("main", "a.py"),
    ]
    assert [s.function for s in top_functions(profile, limit=2)] == ["b", "a"]
    assert top_functions(profile, limit=0) == []
    assert top_functions(parse_folded("")) == []


def _check_tree(tree: dict[str, Any]) -> int:
    """Asserts children never exceed their parent and come largest first; returns the
    number of levels, root included. Iterative: test trees can be deeper than Python's
    recursion limit."""
    depth = 0
    pending = [(tree, 1)]
    while pending:
        node, level = pending.pop()
        depth = max(depth, level)
        values = [child["value"] for child in node["children"]]
        assert sum(values) <= node["value"]
        assert values == sorted(values, reverse=True)
        pending.extend((child, level + 1) for child in node["children"])
    return depth


@pytest.mark.parametrize("path", FOLDED, ids=lambda p: p.name)
def test_flame_tree_of_fixtures_adds_up(path: Path) -> None:
    profile = read_folded(path)
    tree = flame_tree(profile)
    assert tree["name"] == "all"
    assert tree["file"] is None
    assert tree["value"] == profile.total_samples
    _check_tree(tree)


def test_flame_tree_merges_lines_and_nests_children() -> None:
    tree = flame_tree(read_folded(FIXTURES / "cpu-two-stages.threads-idle.folded.txt"))
    (module,) = tree["children"]
    assert (module["name"], module["file"], module["value"]) == ("<module>", "work.py", 199)
    assert [(c["name"], c["value"]) for c in module["children"]] == [
        ("decode", 91),
        ("summarize", 74),
    ]
    io = flame_tree(read_folded(FIXTURES / "io-writer.folded.txt"))
    assert [(c["name"], c["value"]) for c in io["children"]] == [("<module>", 242)]


def test_flame_tree_prunes_small_nodes_but_keeps_their_samples() -> None:
    profile = parse_folded("main (a.py:1);hot (a.py:2) 998\nmain (a.py:1);rare (a.py:3) 1\n")
    tree = flame_tree(profile, min_fraction=0.002)
    (main,) = tree["children"]
    assert main["value"] == 999
    assert [c["name"] for c in main["children"]] == ["hot"]
    kept = flame_tree(profile, min_fraction=0.0)
    assert [c["name"] for c in kept["children"][0]["children"]] == ["hot", "rare"]


def test_flame_tree_depth_limit() -> None:
    deep = ";".join(f"f{i} (a.py:{i})" for i in range(3000))
    profile = parse_folded(f"{deep} 3\nmain (a.py:1) 1\n")
    assert _check_tree(flame_tree(profile, max_depth=10)) == 11  # the root plus ten levels
    assert _check_tree(flame_tree(profile, max_depth=5000)) == 3001  # no recursion limit


def test_samples_without_frames_count_only_in_totals() -> None:
    profile = parse_folded("thread (7): idle 4\nthread (7): idle;run (a.py:1) 6\n")
    assert profile.total_samples == 10
    assert _stat(profile, "run") == (60.0, 60.0)
    tree = flame_tree(profile)
    assert tree["value"] == 10
    assert [c["value"] for c in tree["children"]] == [6]


def test_merge_profiles_sums() -> None:
    io = read_folded(FIXTURES / "io-writer.folded.txt")
    cpu = read_folded(FIXTURES / "cpu-two-stages.threads-idle.folded.txt")
    bad = parse_folded("nonsense\n")
    merged = merge_profiles([io, cpu, io, bad])
    assert merged.total_samples == 2 * io.total_samples + cpu.total_samples
    assert merged.malformed_lines == 1
    assert merged.threads == ["MainThread"]
    for frames, count in io.stacks.items():
        assert merged.stacks[frames] == 2 * count
    for frames, count in cpu.stacks.items():
        assert merged.stacks[frames] == count
    assert merge_profiles([]) == StackProfile({}, 0, 0, [])


def test_control_characters_in_frame_names_are_made_visible() -> None:
    """A device's frame names reach flame graphs, tables, exports and the terminal: an ESC
    or BEL in them must never arrive raw (docs/security.md)."""
    profile = parse_folded("main (a.py:1);evil\x1b[2J\x07 (b\x9b.py:2) 5\n")
    [stack] = list(profile.stacks)
    assert [frame.function for frame in stack] == ["main", "evil␛[2J␇"]
    assert stack[-1].file == "b\ufffd.py"
