"""Unpacking a device's tarball: good files come through, nothing else gets out.

Every hostile archive here is built with tarfile the way a broken or compromised device
could build it. After each extraction the test checks that nothing appeared, changed or
was left behind outside the destination.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.stages.safetar import ExtractResult, UnsafeArchive, _copy_capped, safe_extract
from tests.support.paths import REPO

MiB = 1024 * 1024

Entry = tuple[tarfile.TarInfo, bytes | None]


def regular(name: str, data: bytes, mode: int = 0o644) -> Entry:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def directory(name: str, mode: int = 0o777) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info, None


def make_archive(path: Path, entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def snapshot(root: Path, exclude: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Every path under root but outside exclude: its mode, size and (file) content."""
    seen: dict[str, tuple[int, int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path == exclude or exclude in path.parents:
                continue
            info = path.lstat()
            content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
            seen[str(path.relative_to(root))] = (info.st_mode, info.st_size, content)
    return seen


@contextmanager
def nothing_written_outside(root: Path, dest: Path) -> Iterator[None]:
    before = snapshot(root, dest)
    yield
    assert snapshot(root, dest) == before, "something was written outside the destination"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    host_dir = tmp_path / "hosts" / "edge-01"
    host_dir.mkdir(parents=True)
    return host_dir / "session"


def extract(archive: Path, dest: Path, **caps: int) -> ExtractResult:
    with nothing_written_outside(archive.parent, dest):
        return safe_extract(archive, dest, **caps)


def extract_fails(archive: Path, dest: Path, match: str, **caps: int) -> None:
    with nothing_written_outside(archive.parent, dest), pytest.raises(UnsafeArchive, match=match):
        safe_extract(archive, dest, **caps)
    assert not dest.exists(), "a failed extraction left a destination behind"
    assert not list(dest.parent.glob(".*")), "a temporary directory was left behind"


def files_under(dest: Path) -> dict[str, bytes]:
    return {
        path.relative_to(dest).as_posix(): path.read_bytes()
        for path in sorted(dest.rglob("*"))
        if path.is_file()
    }


def test_a_good_archive_extracts_exactly(tmp_path: Path, dest: Path) -> None:
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [
            directory("./"),
            regular("./manifest.json", b'{"status": "ok"}'),
            directory("./py-spy", mode=0o777),
            regular("./py-spy/py-spy.folded", b"main (app.py:1) 10\n", mode=0o4755),
            regular("iotop/iotop.txt", b"x" * 100_000, mode=0o600),
            regular("empty.txt", b""),
        ],
    )

    result = extract(archive, dest)

    assert result.files == [
        "manifest.json",
        "py-spy/py-spy.folded",
        "iotop/iotop.txt",
        "empty.txt",
    ]
    assert result.rejected == []
    assert result.total_bytes == 16 + 19 + 100_000
    assert files_under(dest) == {
        "manifest.json": b'{"status": "ok"}',
        "py-spy/py-spy.folded": b"main (app.py:1) 10\n",
        "iotop/iotop.txt": b"x" * 100_000,
        "empty.txt": b"",
    }
    # Modes come from us, never from the archive (no setuid, no world-writable dirs), and
    # are the run directory's: owner only (docs/security.md, file modes).
    for path in dest.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.lstat().st_mode) == expected, path
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700


def test_an_archive_packed_from_a_directory_round_trips(tmp_path: Path, dest: Path) -> None:
    workdir = tmp_path / "workdir"
    (workdir / "py-spy").mkdir(parents=True)
    (workdir / "manifest.json").write_text('{"schema": "fleetprof.manifest/1"}')
    (workdir / "py-spy" / "py-spy.folded").write_text("main (app.py:1) 3\n")
    archive = tmp_path / "session.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(workdir, arcname=".")

    result = extract(archive, dest)

    assert sorted(result.files) == ["manifest.json", "py-spy/py-spy.folded"]
    assert result.rejected == []
    assert files_under(dest) == {
        "manifest.json": b'{"schema": "fleetprof.manifest/1"}',
        "py-spy/py-spy.folded": b"main (app.py:1) 3\n",
    }


def test_an_empty_tar_gives_an_empty_directory(tmp_path: Path, dest: Path) -> None:
    archive = make_archive(tmp_path / "session.tar.gz", [])
    result = extract(archive, dest)
    assert result == ExtractResult(files=[], total_bytes=0, rejected=[])
    assert dest.is_dir()
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/ABSOLUTE", "absolute path"),
        ("../escaped.txt", "'..'"),
        ("a/../../escaped.txt", "'..'"),
        ("a/b/../../../escaped.txt", "'..'"),
        ("..", "'..'"),
        ("./.", "no name left"),
        ("dir\\..\\..\\escaped.txt", "backslash"),
        ("C:/escaped.txt", "drive letter"),
        ("line\nbreak.txt", "control characters"),
        ("nul\x00byte.txt" + "y" * 120, "NUL"),  # long enough to travel in a pax header
        ("caf\udcff.txt", "UTF-8"),
        ("x" * 300 + "/long.txt", "too long"),
    ],
)
def test_unsafe_names_are_skipped_and_the_good_files_kept(
    tmp_path: Path, dest: Path, name: str, reason: str
) -> None:
    if name == "/ABSOLUTE":
        name = str(tmp_path / "escaped.txt")  # would land next to the archive if followed
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [regular("good.txt", b"good"), regular(name, b"evil"), regular("after.txt", b"after")],
    )

    result = extract(archive, dest)

    assert result.files == ["good.txt", "after.txt"]
    assert files_under(dest) == {"good.txt": b"good", "after.txt": b"after"}
    assert len(result.rejected) == 1
    assert repr(name[:120]) in result.rejected[0]  # names are shown cut to 120 characters
    assert reason in result.rejected[0]
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (special("passwd", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (special("up", tarfile.SYMTYPE, "../.."), "symbolic link"),
        (special("shadow", tarfile.LNKTYPE, "/etc/shadow"), "hard link"),
        (special("again.txt", tarfile.LNKTYPE, "good.txt"), "hard link"),
        (special("null", tarfile.CHRTYPE), "device"),
        (special("sda", tarfile.BLKTYPE), "device"),
        (special("pipe", tarfile.FIFOTYPE), "FIFO"),
        (special("volume", tarfile.GNUTYPE_LONGNAME.replace(b"L", b"V")), "unsupported"),
    ],
)
def test_links_devices_and_fifos_are_skipped(
    tmp_path: Path, dest: Path, entry: Entry, reason: str
) -> None:
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [regular("good.txt", b"good"), entry, regular("after.txt", b"after")],
    )

    result = extract(archive, dest)

    assert files_under(dest) == {"good.txt": b"good", "after.txt": b"after"}
    assert len(result.rejected) == 1
    assert reason in result.rejected[0]
    for path in dest.rglob("*"):
        assert stat.S_ISREG(path.lstat().st_mode) or stat.S_ISDIR(path.lstat().st_mode)


def test_a_symlink_cannot_redirect_a_later_member(tmp_path: Path, dest: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [
            special("link", tarfile.SYMTYPE, str(outside)),
            regular("link/planted.txt", b"evil"),
        ],
    )

    result = extract(archive, dest)

    assert list(outside.iterdir()) == []
    # The later member lands in a plain directory inside dest, never through the link.
    assert files_under(dest) == {"link/planted.txt": b"evil"}
    assert not (dest / "link").is_symlink()
    assert "symbolic link" in result.rejected[0]


def test_duplicate_and_conflicting_names_keep_the_first(tmp_path: Path, dest: Path) -> None:
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [
            regular("a", b"first"),
            regular("a", b"second"),
            regular("a/b", b"under a file"),
            directory("a"),
        ],
    )

    result = extract(archive, dest)

    assert files_under(dest) == {"a": b"first"}
    assert len(result.rejected) == 3


def test_a_compression_bomb_stops_at_the_total_cap(tmp_path: Path, dest: Path) -> None:
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [regular("small.txt", b"ok"), regular("zeros.bin", bytes(20 * MiB))],
    )
    assert archive.stat().st_size < 100_000

    extract_fails(archive, dest, "'zeros.bin'.*max_total_bytes", max_total_bytes=1 * MiB)


def test_a_member_over_the_member_cap_aborts(tmp_path: Path, dest: Path) -> None:
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [regular("small.txt", b"ok"), regular("big.bin", bytes(3 * MiB))],
    )

    extract_fails(archive, dest, "'big.bin'.*max_member_bytes", max_member_bytes=2 * MiB)


def test_many_members_under_the_total_cap_still_add_up(tmp_path: Path, dest: Path) -> None:
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [regular(f"part-{index}.bin", bytes(300_000)) for index in range(5)],
    )

    extract_fails(archive, dest, "max_total_bytes", max_total_bytes=1 * MiB)


def test_the_copy_counts_real_bytes_and_removes_a_partial_file(tmp_path: Path) -> None:
    # tarfile never hands out more bytes than a header declares, so the declared size is
    # checked first; the copy still counts what it really gets and stops at the cap.
    target = tmp_path / "partial.bin"
    size = _copy_capped(io.BytesIO(bytes(3 * MiB)), target, member_cap=MiB, total_room=2 * MiB)
    assert size > MiB
    assert not target.exists()

    size = _copy_capped(io.BytesIO(b"abc"), target, member_cap=MiB, total_room=2 * MiB)
    assert size == 3
    assert target.read_bytes() == b"abc"


def test_too_many_members_abort(tmp_path: Path, dest: Path) -> None:
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [regular(f"f{index}.txt", b"x") for index in range(11)],
    )

    extract_fails(archive, dest, "more than 10 members", max_members=10)
    assert len(extract(archive, dest, max_members=11).files) == 11


def test_huge_extended_headers_are_refused_before_they_fill_memory(
    tmp_path: Path, dest: Path
) -> None:
    info, data = regular("good.txt", b"good")
    info.pax_headers = {"comment": "x" * (8 * MiB)}
    archive = make_archive(tmp_path / "session.tar.gz", [(info, data)])

    extract_fails(archive, dest, "header data")


def test_a_huge_gnu_long_name_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_archive(
        tmp_path / "session.tar.gz",
        [regular("d" * (4 * MiB), b"x")],
        fmt=tarfile.GNU_FORMAT,
    )

    extract_fails(archive, dest, "header data")


def test_a_corrupt_archive_is_refused(tmp_path: Path, dest: Path) -> None:
    good = make_archive(
        tmp_path / "good.tar.gz",
        [regular(f"f{index}.txt", os.urandom(2000)) for index in range(20)],
    )
    data = bytearray(good.read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 64):
        data[offset] ^= 0xFF
    archive = tmp_path / "session.tar.gz"
    archive.write_bytes(bytes(data))

    extract_fails(archive, dest, "corrupt|invalid|not a valid|truncated")


def test_a_truncated_archive_is_refused(tmp_path: Path, dest: Path) -> None:
    good = make_archive(
        tmp_path / "good.tar.gz",
        [regular(f"f{index}.txt", os.urandom(2000)) for index in range(20)],
    )
    archive = tmp_path / "session.tar.gz"
    archive.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    extract_fails(archive, dest, "truncated|unexpected end")


def test_a_tarball_cut_just_before_the_gzip_trailer_is_refused(tmp_path: Path, dest: Path) -> None:
    good = make_archive(tmp_path / "good.tar.gz", [regular("f.txt", b"data")])
    archive = tmp_path / "session.tar.gz"
    archive.write_bytes(good.read_bytes()[:-4])

    extract_fails(archive, dest, "truncated")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty|not a valid"),
        (b"this is not an archive\n" * 10, "not a valid gzip"),
        (gzip.compress(b"plain text, gzip but not tar\n" * 10), "not a valid tar"),
    ],
    # Fixed ids: gzip's header carries the time, and xdist's workers must collect one name.
    ids=["empty", "text", "gzip-not-tar"],
)
def test_not_a_tar_gz_is_refused(tmp_path: Path, dest: Path, content: bytes, match: str) -> None:
    archive = tmp_path / "session.tar.gz"
    archive.write_bytes(content)
    extract_fails(archive, dest, match)


def test_an_uncompressed_tar_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "session.tar.gz"
    with tarfile.open(archive, "w") as tar:
        info, data = regular("f.txt", b"data")
        tar.addfile(info, io.BytesIO(data or b""))
    extract_fails(archive, dest, "not a valid gzip")


def test_an_existing_destination_is_replaced_only_on_success(tmp_path: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    (dest / "old.txt").write_bytes(b"old")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"garbage")

    with pytest.raises(UnsafeArchive):
        safe_extract(bad, dest)
    assert files_under(dest) == {"old.txt": b"old"}

    good = make_archive(tmp_path / "session.tar.gz", [regular("new.txt", b"new")])
    safe_extract(good, dest)
    assert files_under(dest) == {"new.txt": b"new"}
    assert sorted(path.name for path in dest.parent.iterdir()) == ["session"]


def test_the_error_names_the_archive_and_escapes_the_member(tmp_path: Path, dest: Path) -> None:
    archive = make_archive(tmp_path / "session.tar.gz", [regular("big\x1b[31m.bin", bytes(2000))])

    with pytest.raises(UnsafeArchive) as caught:
        safe_extract(archive, dest, max_member_bytes=1000)

    message = str(caught.value)
    assert message.startswith(f"{archive}: ")
    assert "'big\\x1b[31m.bin'" in message
    assert "\x1b" not in message


def test_many_long_rejected_names_keep_memory_small(tmp_path: Path) -> None:
    """2,000 symlinks with 100 KB targets (a 400 KB tarball) once made the controller hold
    every target twice (tarfile's member list and the joined reasons): ~650 MiB. Now the
    first few reasons are kept, cut, and the count; the honest file still comes through."""
    script = tmp_path / "extract.py"
    script.write_text(
        "import io, resource, sys, tarfile\n"
        "from pathlib import Path\n"
        "from orchestrator.stages.safetar import safe_extract\n"
        "tmp = Path(sys.argv[1])\n"
        "with tarfile.open(tmp / 'hostile.tar.gz', 'w:gz', format=tarfile.PAX_FORMAT) as tar:\n"
        "    for i in range(2000):\n"
        "        info = tarfile.TarInfo(f'l{i}')\n"
        "        info.type = tarfile.SYMTYPE\n"
        "        info.linkname = ('t%05d' % i) * 16_000\n"
        "        tar.addfile(info)\n"
        "    info = tarfile.TarInfo('manifest.json')\n"
        "    info.size = 2\n"
        "    tar.addfile(info, io.BytesIO(b'{}'))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "result = safe_extract(tmp / 'hostile.tar.gz', tmp / 'out')\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(grown // 1024, result.rejected_count, len(result.rejected),\n"
        "      len(result.rejected_summary() or ''), *result.files)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    grown_mib, count, kept, summary_chars, *files = done.stdout.split()
    assert (int(count), int(kept), files) == (2000, 20, ["manifest.json"])
    assert int(summary_chars) <= 1000
    assert int(grown_mib) < 64, done.stdout


def test_rejected_summary_counts_and_cuts() -> None:
    result = ExtractResult(
        files=[], total_bytes=0, rejected=["'a': symbolic link to 'b'"] * 20, rejected_count=25
    )
    summary = result.rejected_summary()
    assert summary is not None
    assert summary.startswith("25 members skipped, the first: 'a': symbolic link")
    assert len(summary) <= 1000
    assert ExtractResult(files=[], total_bytes=0, rejected=[]).rejected_summary() is None
