"""py-spy's wheel: choosing the one built for an architecture, downloading it with pip,
and taking exactly one binary out of it (size-capped, regular file, right ELF machine)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from orchestrator.toolcache.index import redact
from orchestrator.toolcache.model import (
    PLATFORM_TAGS,
    PYSPY_DIST,
    PublishedFile,
    ToolCacheError,
    ToolUnavailable,
    Unreachable,
)

_PIP_TIMEOUT_S = 900.0


def wheel_parts(filename: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(distribution, version, platform tags) of a wheel filename, or None."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return None
    return parts[0], parts[1], tuple(parts[-1].split("."))


def _file_version(filename: str) -> str | None:
    wheel = wheel_parts(filename)
    if wheel is not None:
        return wheel[1]
    match = re.fullmatch(r"[^-]+-(.+)\.(?:tar\.gz|zip)", filename)
    return match.group(1) if match else None


def _same_version(a: str, b: str) -> bool:
    # Enough of PEP 440 normalization for release spellings such as 0.4.0_dev2 / 0.4.0.dev2.
    def canon(v: str) -> str:
        return re.sub(r"\.(?=[a-z])", "", re.sub(r"[-_]", ".", v.strip().lower()))

    return canon(a) == canon(b)


def select_wheel(
    files: list[PublishedFile], version: str, arch: str, index_url: str
) -> PublishedFile:
    of_version = [f for f in files if _same_version(_file_version(f.filename) or "", version)]
    if not of_version:
        known = sorted({v for f in files if (v := _file_version(f.filename))})
        hint = f"; recent versions there: {', '.join(known[-5:])}" if known else ""
        raise ToolCacheError(
            f"py-spy {version} is not on the package index {redact(index_url)}{hint}. "
            "Set FLEETPROF_PYSPY_VERSION to a published version."
        )
    wanted = set(PLATFORM_TAGS[arch])
    for published in of_version:
        wheel = wheel_parts(published.filename)
        if wheel is not None and wheel[0].lower() == PYSPY_DIST and wanted & set(wheel[2]):
            return published
    raise ToolUnavailable(f"py-spy {version} publishes no build for {arch}")


def download_wheel(published: PublishedFile, arch: str, dest: Path) -> Path:
    """Let pip download exactly the file the index listed (its network, proxy and
    credential settings apply); return the saved wheel."""
    url = redact(published.url)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        *[arg for tag in PLATFORM_TAGS[arch] for arg in ("--platform", tag)],
        "--python-version",
        "3.11",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--dest",
        str(dest),
        # A direct URL rather than `py-spy==V`: pip's find-links and extra indexes may
        # hold other files of that name, and only this one's hash was published.
        f"py-spy @ {url}",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolCacheError(f"pip took over {_PIP_TIMEOUT_S:.0f} s to download {url}") from exc
    except OSError as exc:
        raise ToolCacheError(f"cannot run pip ({sys.executable} -m pip): {exc}") from exc
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip()).splitlines()
        if any("No module named pip" in line for line in output):
            raise ToolCacheError(
                f"pip is not installed for {sys.executable}; install it there "
                "(python -m ensurepip) to let fleetprof download tools"
            )
        detail = " | ".join(line.strip() for line in output[-4:] if line.strip())
        raise Unreachable(f"pip could not download {url}: {detail or 'no output'}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ToolCacheError(
            f"pip download of {url} left {len(wheels)} wheels in {dest}; expected one"
        )
    return wheels[0]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract_member(wheel: Path, member: str, dest: Path, max_bytes: int) -> None:
    """Copy exactly one named regular-file member out of ``wheel`` to ``dest``."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            infos = [info for info in archive.infolist() if info.filename == member]
            if len(infos) != 1:
                found = "missing" if not infos else f"present {len(infos)} times"
                raise ToolCacheError(f"{wheel.name}: member {member} is {found}")
            info = infos[0]
            kind = stat.S_IFMT(info.external_attr >> 16)
            if info.is_dir() or (kind and kind != stat.S_IFREG):
                raise ToolCacheError(f"{wheel.name}: {member} is not a regular file")
            if info.file_size > max_bytes:
                raise ToolCacheError(
                    f"{wheel.name}: {member} claims {info.file_size} bytes, over the "
                    f"{max_bytes}-byte cap"
                )
            written = 0
            with archive.open(info) as source, dest.open("xb") as target:
                # The size in the header is the archive's claim; count what really comes out.
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    written += len(chunk)
                    if written > max_bytes:
                        raise ToolCacheError(
                            f"{wheel.name}: {member} is over the {max_bytes}-byte cap"
                        )
                    target.write(chunk)
                target.flush()
                os.fsync(target.fileno())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ToolCacheError(f"{wheel.name} is not a valid wheel: {exc}") from exc


def elf_machine(path: Path) -> int | None:
    with path.open("rb") as handle:
        header = handle.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    if header[5] == 1:
        return int.from_bytes(header[18:20], "little")
    return int.from_bytes(header[18:20], "big")
