"""The controller's py-spy tool cache, against the real package index.

The one fake here is the index's published hash (a tampered index cannot be made
here); every download, checksum and binary is real.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import textwrap
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator import toolcache
from orchestrator.toolcache import (
    PYSPY_VERSION,
    CachedTool,
    PublishedFile,
    ToolCacheError,
    ToolUnavailable,
    cache_dir,
    ensure_pyspy,
    normalize_arch,
)
from tests.support.paths import REPO

ELF_MACHINE_AARCH64 = 183
ELF_MACHINE_X86_64 = 62


@functools.cache
def _index_problem() -> str | None:
    """Why the package index cannot be used from here, or None when it can."""
    index = toolcache.pip_index()
    url = index.url.rstrip("/") + "/py-spy/"
    context = ssl.create_default_context(cafile=index.cert) if index.cert else None
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            response.read(1)
    except Exception as exc:
        return f"the package index {url} is unreachable from here ({exc})"
    return None


@pytest.fixture
def needs_index() -> None:
    problem = _index_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(autouse=True)
def _default_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEETPROF_PYSPY_VERSION", raising=False)


@pytest.fixture(scope="session")
def filled_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding py-spy for x86_64 and aarch64, downloaded once for the session."""
    problem = _index_problem()
    if problem:
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("toolcache")
    for arch in ("x86_64", "aarch64"):
        ensure_pyspy(arch, version=PYSPY_VERSION, cache=root)
    return root


@pytest.fixture
def cache_copy(filled_cache: Path, tmp_path: Path) -> Path:
    """A private copy of the filled cache that a test may damage."""
    root = tmp_path / "cache"
    shutil.copytree(filled_cache, root)
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to reach the index or download."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the tool cache went to the network")

    monkeypatch.setattr(toolcache.index, "fetch_published_files", refuse)
    monkeypatch.setattr(toolcache.wheel, "download_wheel", refuse)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


def _published_with(
    change: Callable[[PublishedFile], PublishedFile],
) -> Callable[[str, toolcache.PipIndex], list[PublishedFile]]:
    """The real index listing, with every wheel's entry passed through ``change``."""
    real = toolcache.fetch_published_files

    def fetch(project: str, index: toolcache.PipIndex) -> list[PublishedFile]:
        return [change(f) if f.filename.endswith(".whl") else f for f in real(project, index)]

    return fetch


def _entry(root: Path, arch: str, version: str = PYSPY_VERSION) -> Path:
    return root / "py-spy" / version / arch


# --- architectures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("x86_64", "x86_64"),
        ("amd64", "x86_64"),
        ("AMD64", "x86_64"),
        ("aarch64", "aarch64"),
        ("arm64", "aarch64"),
        ("armv7l", "armv7l"),
        ("armv7", "armv7l"),
        ("armhf", "armv7l"),
        ("i386", "i686"),
        ("i686", "i686"),
        (" riscv64 ", "riscv64"),
        ("armv6l", "armv6l"),
    ],
)
def test_architecture_aliases_normalize(given: str, expected: str) -> None:
    assert normalize_arch(given) == expected


@pytest.mark.parametrize("arch", ["riscv64", "armv6l", "ppc64le", ""])
def test_architecture_without_a_build_is_unavailable(
    arch: str, tmp_path: Path, no_network: None
) -> None:
    with pytest.raises(ToolUnavailable) as caught:
        ensure_pyspy(arch, cache=tmp_path)
    if arch:
        assert str(caught.value) == f"py-spy {PYSPY_VERSION} publishes no build for {arch}"
    assert isinstance(caught.value, ToolCacheError)
    assert not any(tmp_path.iterdir())


def test_version_without_a_build_for_the_arch_is_unavailable(
    tmp_path: Path, needs_index: None
) -> None:
    # 0.4.0.dev1 was published for x86_64 Linux and macOS only.
    with pytest.raises(
        ToolUnavailable, match=r"py-spy 0\.4\.0\.dev1 publishes no build for aarch64"
    ):
        ensure_pyspy("arm64", version="0.4.0.dev1", cache=tmp_path)


# --- downloading ------------------------------------------------------------------------


@pytest.mark.skipif(platform.machine() != "x86_64", reason="runs the x86_64 binary")
def test_x86_64_binary_runs_and_reports_its_version(filled_cache: Path) -> None:
    tool = ensure_pyspy("amd64", cache=filled_cache)

    assert tool == CachedTool(
        name="py-spy",
        version=PYSPY_VERSION,
        arch="x86_64",
        path=_entry(filled_cache, "x86_64") / "py-spy",
        sha256=_sha256(tool.path),
    )
    assert stat.S_IMODE(tool.path.stat().st_mode) == 0o755
    done = subprocess.run(
        [str(tool.path), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == f"py-spy {PYSPY_VERSION}"


def test_aarch64_download_is_verified_against_the_index(filled_cache: Path) -> None:
    tool = ensure_pyspy("aarch64", cache=filled_cache)

    assert tool.arch == "aarch64"
    assert tool.sha256 == _sha256(tool.path)
    assert _elf_machine(tool.path) == ELF_MACHINE_AARCH64
    sidecar = json.loads((tool.path.parent / toolcache.SIDECAR).read_text())
    assert sidecar["sha256"] == tool.sha256
    assert sidecar["size"] == tool.path.stat().st_size
    published = {
        f.filename: f.sha256
        for f in toolcache.fetch_published_files("py-spy", toolcache.pip_index())
    }
    assert "aarch64" in sidecar["wheel"]["filename"]
    assert published[sidecar["wheel"]["filename"]] == sidecar["wheel"]["sha256"]
    # Only the binary and its sidecar are kept: no wheel, no scratch files.
    assert sorted(p.name for p in tool.path.parent.iterdir()) == ["py-spy", "tool.json"]
    assert sorted(p.name for p in tool.path.parent.parent.iterdir() if p.is_dir()) == [
        "aarch64",
        "x86_64",
    ]


def test_second_call_uses_the_cache_without_network(
    filled_cache: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    messages: list[str] = []

    tool = ensure_pyspy("x86_64", cache=filled_cache, log=messages.append)

    assert tool.path == _entry(filled_cache, "x86_64") / "py-spy"
    assert tool.sha256 == _sha256(tool.path)
    assert messages == []


def test_cache_dir_setting_is_used_when_no_cache_is_given(
    filled_cache: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.setenv("FLEETPROF_CACHE_DIR", str(filled_cache))
    assert ensure_pyspy("arm64").path == _entry(filled_cache, "aarch64") / "py-spy"


def _flip_a_byte(entry: Path) -> None:
    binary = entry / "py-spy"
    data = bytearray(binary.read_bytes())
    data[len(data) // 2] ^= 0xFF
    binary.write_bytes(bytes(data))


def _truncate(entry: Path) -> None:
    (entry / "py-spy").write_bytes(b"\x7fELF")


def _remove_binary(entry: Path) -> None:
    (entry / "py-spy").unlink()


def _garble_sidecar(entry: Path) -> None:
    (entry / toolcache.SIDECAR).write_text("{not json")


def _binary_to_symlink(entry: Path) -> None:
    # Same bytes behind a link: the cache only trusts a regular file it wrote itself.
    real = entry.parent / "elsewhere"
    (entry / "py-spy").rename(real)
    (entry / "py-spy").symlink_to(real)


@pytest.mark.parametrize(
    "damage", [_flip_a_byte, _truncate, _remove_binary, _garble_sidecar, _binary_to_symlink]
)
def test_damaged_cache_entry_is_detected_and_replaced(
    cache_copy: Path, damage: Callable[[Path], None]
) -> None:
    entry = _entry(cache_copy, "x86_64")
    good = json.loads((entry / toolcache.SIDECAR).read_text())["sha256"]
    damage(entry)
    messages: list[str] = []

    tool = ensure_pyspy("x86_64", cache=cache_copy, log=messages.append)

    assert tool.sha256 == good
    assert _sha256(tool.path) == good
    assert not tool.path.is_symlink()
    assert stat.S_IMODE(tool.path.stat().st_mode) == 0o755
    assert any("failed verification" in m for m in messages)
    assert f"downloading py-spy {PYSPY_VERSION} for x86_64" in messages


def test_lost_mode_bits_are_restored_without_download(cache_copy: Path, no_network: None) -> None:
    binary = _entry(cache_copy, "x86_64") / "py-spy"
    binary.chmod(0o644)

    tool = ensure_pyspy("x86_64", cache=cache_copy)

    assert stat.S_IMODE(tool.path.stat().st_mode) == 0o755


def test_hash_mismatch_with_the_index_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, needs_index: None
) -> None:
    monkeypatch.setattr(
        toolcache.index,
        "fetch_published_files",
        _published_with(lambda f: replace(f, sha256="0" * 64)),
    )

    with pytest.raises(ToolCacheError, match="sha256 mismatch") as caught:
        ensure_pyspy("aarch64", cache=tmp_path)

    assert "0" * 64 in str(caught.value)
    assert not isinstance(caught.value, ToolUnavailable)
    # Nothing half-done is left: no entry, no scratch directory; only the lock file.
    leftovers = [p.name for p in (tmp_path / "py-spy" / PYSPY_VERSION).iterdir()]
    assert leftovers == [".aarch64.lock"]


def test_missing_published_hash_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, needs_index: None
) -> None:
    monkeypatch.setattr(
        toolcache.index, "fetch_published_files", _published_with(lambda f: replace(f, sha256=None))
    )

    with pytest.raises(ToolCacheError, match="publishes no sha256"):
        ensure_pyspy("x86_64", cache=tmp_path)
    assert not _entry(tmp_path, "x86_64").exists()


def test_unknown_version_is_an_error_naming_published_ones(
    tmp_path: Path, needs_index: None
) -> None:
    with pytest.raises(ToolCacheError, match=r"py-spy 9\.9\.9 is not on the package index") as e:
        ensure_pyspy("x86_64", version="9.9.9", cache=tmp_path)
    assert not isinstance(e.value, ToolUnavailable)
    assert PYSPY_VERSION in str(e.value)


@pytest.mark.parametrize("version", ["../../etc", "latest", " ", "0.4.3/x", "0.4..3"])
def test_malformed_version_is_refused(version: str, tmp_path: Path, no_network: None) -> None:
    with pytest.raises(ToolCacheError, match="not a version number"):
        ensure_pyspy("x86_64", version=version, cache=tmp_path)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="runs the x86_64 binary")
def test_version_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, needs_index: None
) -> None:
    monkeypatch.setenv("FLEETPROF_PYSPY_VERSION", "0.4.2")

    tool = ensure_pyspy("x86_64", cache=tmp_path)

    assert tool.version == "0.4.2"
    assert tool.path == _entry(tmp_path, "x86_64", "0.4.2") / "py-spy"
    done = subprocess.run(
        [str(tool.path), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "py-spy 0.4.2"


def test_unreachable_index_says_how_to_fill_the_cache_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")

    with pytest.raises(ToolCacheError) as caught:
        ensure_pyspy("aarch64", cache=tmp_path)

    message = str(caught.value)
    assert "cannot reach the package index" in message
    assert "fleetprof tools fetch" in message
    assert str(tmp_path) in message
    assert not isinstance(caught.value, ToolUnavailable)


def test_two_processes_filling_the_cache_at_once_download_once(
    tmp_path: Path, needs_index: None
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from orchestrator.toolcache import ensure_pyspy
        tool = ensure_pyspy("aarch64", cache=Path({str(tmp_path)!r}), log=print)
        print("sha", tool.sha256)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]

    assert [w.returncode for w in workers] == [0, 0]
    shas = {line.split()[1] for out in outputs for line in out.splitlines() if line[:4] == "sha "}
    assert len(shas) == 1
    downloads = sum(out.count("downloading py-spy") for out in outputs)
    assert downloads == 1
    tool = ensure_pyspy("aarch64", cache=tmp_path)
    assert tool.sha256 in shas
    assert _elf_machine(tool.path) == ELF_MACHINE_AARCH64


def test_fill_cache_reports_unavailable_arches(filled_cache: Path, no_network: None) -> None:
    results = toolcache.fill_pyspy_cache(["amd64", "arm64", "riscv64"], cache=filled_cache)

    assert isinstance(results["x86_64"], CachedTool)
    assert isinstance(results["aarch64"], CachedTool)
    assert isinstance(results["riscv64"], ToolUnavailable)


# --- where the cache lives -------------------------------------------------------------


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLEETPROF_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "fleetprof" / "tools"

    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache_dir() == tmp_path / "home" / ".cache" / "fleetprof" / "tools"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fleetprof" / "tools"

    monkeypatch.setenv("FLEETPROF_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"


# --- unpacking the wheel defensively ---------------------------------------------------

MEMBER = f"py_spy-{PYSPY_VERSION}.data/scripts/py-spy"


def _wheel(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, data)
    return path


def test_only_the_named_member_is_extracted(tmp_path: Path) -> None:
    wheel = _wheel(
        tmp_path / "w.whl",
        [
            ("../../evil", b"nope"),
            ("/abs/evil", b"nope"),
            (MEMBER, b"\x7fELF binary"),
            ("py_spy-0.4.3.dist-info/RECORD", b""),
        ],
    )
    out = tmp_path / "out"
    out.mkdir()

    toolcache.wheel.extract_member(wheel, MEMBER, out / "py-spy", max_bytes=1024)

    assert (out / "py-spy").read_bytes() == b"\x7fELF binary"
    assert sorted(p.name for p in out.iterdir()) == ["py-spy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "w.whl"]


def _symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(MEMBER)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ([("py_spy-0.4.3.data/scripts/other", b"x")], "missing"),
        ([(MEMBER, b"a"), (MEMBER, b"b")], "present 2 times"),
        ([(_symlink_member(), b"/etc/passwd")], "not a regular file"),
        ([(MEMBER, b"x" * 2048)], "cap"),
    ],
)
def test_suspicious_wheels_are_refused(
    members: list[tuple[zipfile.ZipInfo | str, bytes]], problem: str, tmp_path: Path
) -> None:
    duplicate = problem.startswith("present")
    with pytest.warns(UserWarning) if duplicate else contextlib.nullcontext():
        wheel = _wheel(tmp_path / "w.whl", members)
    dest = tmp_path / "py-spy"

    with pytest.raises(ToolCacheError, match=problem):
        toolcache.wheel.extract_member(wheel, MEMBER, dest, max_bytes=1024)


def test_broken_wheel_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(b"not a zip at all")
    with pytest.raises(ToolCacheError, match="not a valid wheel"):
        toolcache.wheel.extract_member(wheel, MEMBER, tmp_path / "py-spy", max_bytes=1024)
