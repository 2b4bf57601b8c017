"""The controller's tool cache: verified profiler binaries for each device architecture.

Devices have no internet, so the controller fetches py-spy's wheel for each target
architecture once, checks it against the sha256 the package index publishes, and keeps
only the binary, under ``<cache>/py-spy/<version>/<arch>/py-spy`` with a ``tool.json``
sidecar holding its sha256. Every use re-verifies the binary against the sidecar, so a
damaged entry is fetched again instead of being pushed to a fleet.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import ssl
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

__all__ = [
    "PYSPY_VERSION",
    "SUPPORTED_ARCHES",
    "CachedTool",
    "PipIndex",
    "PublishedFile",
    "ToolCacheError",
    "ToolUnavailable",
    "cache_dir",
    "ensure_pyspy",
    "fetch_published_files",
    "fill_pyspy_cache",
    "normalize_arch",
    "pip_index",
]

PYSPY_VERSION = "0.4.3"
DEFAULT_INDEX_URL = "https://pypi.org/simple"
SIDECAR = "tool.json"
SIDECAR_SCHEMA = "fleetprof.toolcache/1"

_PYSPY = "py-spy"
_PYSPY_DIST = "py_spy"  # the project's name as wheel filenames spell it

# Platform tags py-spy's Linux wheels carry, per architecture. The wheels are tagged
# py2.py3-none, so the Python version pip is told about does not matter.
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "x86_64": ("manylinux_2_5_x86_64", "manylinux1_x86_64"),
    "aarch64": ("manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "armv7l": ("manylinux_2_17_armv7l", "manylinux2014_armv7l"),
    "i686": ("manylinux_2_5_i686", "manylinux1_i686"),
}
SUPPORTED_ARCHES: tuple[str, ...] = tuple(PLATFORM_TAGS)

# ELF e_machine of each architecture: a last check that the wheel holds the right binary.
_ELF_MACHINE = {"x86_64": 62, "aarch64": 183, "armv7l": 40, "i686": 3}

# ansible_architecture / uname -m spellings -> the names used here.
_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x86-64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "armv7": "armv7l",
    "armhf": "armv7l",
    "armv7hl": "armv7l",
    # A 32-bit userland on an ARMv8 kernel reports armv8l; it runs armv7 binaries.
    "armv8l": "armv7l",
    "i386": "i686",
    "i486": "i686",
    "i586": "i686",
    "x86": "i686",
}

_MAX_BINARY_BYTES = 64 * 1024 * 1024  # py-spy is ~8 MiB; anything far larger is not py-spy
_MAX_INDEX_PAGE_BYTES = 32 * 1024 * 1024
_INDEX_TIMEOUT_S = 30.0
_PIP_TIMEOUT_S = 900.0
_VERSION_RE = re.compile(r"[0-9][0-9A-Za-z._+-]{0,63}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


class ToolCacheError(Exception):
    """A tool could not be fetched or verified; the message says what and how to fix it."""


class ToolUnavailable(ToolCacheError):
    """No build of the tool exists for an architecture; the message is the reason."""


class _Unreachable(ToolCacheError):
    """The index or its files could not be reached: the offline case."""


@dataclass(frozen=True)
class CachedTool:
    """A verified tool binary in the controller's cache."""

    name: str
    version: str
    arch: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class PipIndex:
    """The package index pip is configured with, and how to reach it."""

    url: str
    cert: str | None = None
    proxy: str | None = None


@dataclass(frozen=True)
class PublishedFile:
    """One file of a project as the index lists it."""

    filename: str
    url: str
    sha256: str | None


Log = Callable[[str], None]


def normalize_arch(arch: str) -> str:
    """Map an ``ansible_architecture`` / ``uname -m`` value to the cache's name for it.

    Unknown architectures come back lowercased and otherwise unchanged.
    """
    name = arch.strip().lower()
    return _ARCH_ALIASES.get(name, name)


def cache_dir() -> Path:
    """The tool cache: ``$FLEETPROF_CACHE_DIR``, else ``$XDG_CACHE_HOME/fleetprof/tools``,
    else ``~/.cache/fleetprof/tools``."""
    explicit = os.environ.get("FLEETPROF_CACHE_DIR", "").strip()
    if explicit:
        # Absolute, because the path is handed to Ansible, which runs from elsewhere.
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "fleetprof" / "tools"
    return Path.home() / ".cache" / "fleetprof" / "tools"


def ensure_pyspy(
    arch: str,
    version: str | None = None,
    cache: Path | None = None,
    log: Log | None = None,
) -> CachedTool:
    """Return the verified py-spy binary for ``arch``, downloading it into the cache if needed.

    ``version`` defaults to ``$FLEETPROF_PYSPY_VERSION``, else :data:`PYSPY_VERSION`.
    Raises :class:`ToolUnavailable` when py-spy has no build for the architecture and
    :class:`ToolCacheError` when it cannot be downloaded or verified.
    """
    version = _resolve_version(version)
    norm = normalize_arch(arch)
    if norm not in PLATFORM_TAGS:
        raise ToolUnavailable(
            f"py-spy {version} publishes no build for {norm or 'an unknown architecture'}"
        )
    root = (cache if cache is not None else cache_dir()).expanduser().absolute()
    entry = root / _PYSPY / version / norm
    found = _load_entry(entry, _PYSPY, version, norm)
    if found is not None:
        return found

    say = log or _quiet
    version_dir = entry.parent
    try:
        version_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolCacheError(
            f"cannot create the tool cache directory {version_dir}: {exc.strerror or exc}; "
            "set FLEETPROF_CACHE_DIR to a writable directory"
        ) from exc
    with _locked(version_dir / f".{norm}.lock", say, f"py-spy {version} for {norm}"):
        # Another process may have filled the entry while this one waited for the lock.
        found = _load_entry(entry, _PYSPY, version, norm)
        if found is not None:
            return found
        if entry.exists() or entry.is_symlink():
            say(f"cached py-spy {version} for {norm} failed verification; downloading it again")
        _fill_pyspy(entry, version, norm, root, say)
        found = _load_entry(entry, _PYSPY, version, norm)
    if found is None:
        raise ToolCacheError(
            f"py-spy {version} for {norm} was written to {entry} but does not verify; "
            "check the disk and remove that directory"
        )
    return found


def fill_pyspy_cache(
    arches: Iterable[str] = SUPPORTED_ARCHES,
    version: str | None = None,
    cache: Path | None = None,
    log: Log | None = None,
) -> dict[str, CachedTool | ToolUnavailable]:
    """Fill the cache for several architectures (``fleetprof tools fetch``).

    Architectures without a build map to their :class:`ToolUnavailable`; any other
    failure raises.
    """
    results: dict[str, CachedTool | ToolUnavailable] = {}
    for arch in arches:
        try:
            results[normalize_arch(arch)] = ensure_pyspy(arch, version, cache, log)
        except ToolUnavailable as exc:
            results[normalize_arch(arch)] = exc
    return results


# --- the package index -------------------------------------------------------------


def pip_index() -> PipIndex:
    """The index URL, CA bundle and proxy pip is configured with (``pip config list``)."""
    values: dict[str, str] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0:
            values = _parse_pip_config(done.stdout)

    def pick(option: str) -> str | None:
        # pip's own precedence for `pip download`: environment, command section, global.
        for section in (":env:", "download", "global"):
            value = values.get(f"{section}.{option}", "").strip()
            if value:
                return value
        return None

    return PipIndex(
        url=pick("index-url") or DEFAULT_INDEX_URL,
        cert=pick("cert"),
        proxy=pick("proxy"),
    )


def _parse_pip_config(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        values[key.strip()] = str(value)
    return values


def fetch_published_files(project: str, index: PipIndex) -> list[PublishedFile]:
    """The files the index lists for ``project`` with their published sha256.

    Asks for the PEP 691 JSON page and falls back to the PEP 503 HTML page, whose
    hashes sit in the link fragments.
    """
    base, auth = _split_credentials(index.url)
    page_url = base.rstrip("/") + f"/{project}/"
    shown = _redact(page_url)
    request = urllib.request.Request(
        _file_index_page(page_url),
        headers={"Accept": f"{_SIMPLE_JSON}, text/html;q=0.1", "User-Agent": "fleetprof"},
    )
    if auth:
        request.add_header("Authorization", auth)
    try:
        with _opener(index).open(request, timeout=_INDEX_TIMEOUT_S) as response:
            body = response.read(_MAX_INDEX_PAGE_BYTES + 1)
            content_type = response.headers.get("Content-Type", "") or ""
            final_url = response.geturl() or page_url
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ToolCacheError(f"the package index {shown} has no project {project}") from exc
        raise _Unreachable(
            f"the package index {shown} answered HTTP {exc.code} {exc.reason}"
        ) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _Unreachable(f"cannot reach the package index {shown}: {reason}") from exc
    if len(body) > _MAX_INDEX_PAGE_BYTES:
        raise ToolCacheError(f"the index page {shown} is larger than expected; refusing it")

    text = body.decode("utf-8", errors="replace")
    if _SIMPLE_JSON in content_type or text.lstrip().startswith("{"):
        return _parse_simple_json(text, final_url, shown)
    return _parse_simple_html(text, final_url)


def _parse_simple_json(text: str, page_url: str, shown: str) -> list[PublishedFile]:
    try:
        data = json.loads(text)
        files = data["files"]
        if not isinstance(files, list):
            raise TypeError("'files' is not a list")
        published = []
        for item in files:
            hashes = item.get("hashes") or {}
            sha = hashes.get("sha256")
            published.append(
                PublishedFile(
                    filename=str(item["filename"]),
                    url=urllib.parse.urljoin(page_url, str(item["url"])),
                    sha256=str(sha).lower() if sha else None,
                )
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ToolCacheError(f"the index page {shown} is not a valid PEP 691 page: {exc}") from exc
    return published


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def _parse_simple_html(text: str, page_url: str) -> list[PublishedFile]:
    parser = _AnchorParser()
    parser.feed(text)
    published = []
    for href, label in parser.links:
        url = urllib.parse.urljoin(page_url, href)
        parts = urllib.parse.urlsplit(url)
        filename = label or urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
        fragment = urllib.parse.parse_qs(parts.fragment)
        hashes = fragment.get("sha256")
        sha = hashes[0] if hashes else None
        published.append(
            PublishedFile(
                filename=filename,
                url=urllib.parse.urlunsplit(parts._replace(fragment="")),
                sha256=sha.lower() if sha else None,
            )
        )
    return published


def _opener(index: PipIndex) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context(cafile=index.cert) if index.cert else None
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=context)]
    if index.proxy:
        proxy = index.proxy if "://" in index.proxy else f"http://{index.proxy}"
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return urllib.request.build_opener(*handlers)


def _file_index_page(url: str) -> str:
    # A file:// index is a directory tree; its project pages are index.html files.
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        if path.is_dir():
            return (path / "index.html").as_uri()
    return url


def _split_credentials(url: str) -> tuple[str, str | None]:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


def _redact(url: str) -> str:
    return _split_credentials(url)[0]


# --- choosing, downloading and unpacking the wheel -----------------------------------


def _wheel_parts(filename: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(distribution, version, platform tags) of a wheel filename, or None."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return None
    return parts[0], parts[1], tuple(parts[-1].split("."))


def _file_version(filename: str) -> str | None:
    wheel = _wheel_parts(filename)
    if wheel is not None:
        return wheel[1]
    match = re.fullmatch(r"[^-]+-(.+)\.(?:tar\.gz|zip)", filename)
    return match.group(1) if match else None


def _same_version(a: str, b: str) -> bool:
    # Enough of PEP 440 normalization for release spellings such as 0.4.0_dev2 / 0.4.0.dev2.
    def canon(v: str) -> str:
        return re.sub(r"\.(?=[a-z])", "", re.sub(r"[-_]", ".", v.strip().lower()))

    return canon(a) == canon(b)


def _select_wheel(
    files: list[PublishedFile], version: str, arch: str, index_url: str
) -> PublishedFile:
    of_version = [f for f in files if _same_version(_file_version(f.filename) or "", version)]
    if not of_version:
        known = sorted({v for f in files if (v := _file_version(f.filename))})
        hint = f"; recent versions there: {', '.join(known[-5:])}" if known else ""
        raise ToolCacheError(
            f"py-spy {version} is not on the package index {_redact(index_url)}{hint}. "
            "Set FLEETPROF_PYSPY_VERSION to a published version."
        )
    wanted = set(PLATFORM_TAGS[arch])
    for published in of_version:
        wheel = _wheel_parts(published.filename)
        if wheel is not None and wheel[0].lower() == _PYSPY_DIST and wanted & set(wheel[2]):
            return published
    raise ToolUnavailable(f"py-spy {version} publishes no build for {arch}")


def _download_wheel(published: PublishedFile, arch: str, dest: Path) -> Path:
    """Let pip download exactly the file the index listed (its network, proxy and
    credential settings apply); return the saved wheel."""
    url = _redact(published.url)
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
        raise _Unreachable(f"pip could not download {url}: {detail or 'no output'}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ToolCacheError(
            f"pip download of {url} left {len(wheels)} wheels in {dest}; expected one"
        )
    return wheels[0]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _extract_member(wheel: Path, member: str, dest: Path, max_bytes: int) -> None:
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


def _elf_machine(path: Path) -> int | None:
    with path.open("rb") as handle:
        header = handle.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    if header[5] == 1:
        return int.from_bytes(header[18:20], "little")
    return int.from_bytes(header[18:20], "big")


def _fill_pyspy(entry: Path, version: str, arch: str, root: Path, say: Log) -> None:
    index = pip_index()
    try:
        files = fetch_published_files(_PYSPY, index)
    except _Unreachable as exc:
        raise ToolCacheError(f"{exc}. {_offline_hint(root)}") from exc
    chosen = _select_wheel(files, version, arch, index.url)
    if not chosen.sha256 or not _SHA256_RE.fullmatch(chosen.sha256):
        raise ToolCacheError(
            f"the package index {_redact(index.url)} publishes no sha256 for "
            f"{chosen.filename}; fleetprof will not use an unverified wheel"
        )

    say(f"downloading py-spy {version} for {arch}")
    with tempfile.TemporaryDirectory(prefix=f".fill-{arch}-", dir=entry.parent) as scratch:
        work = Path(scratch)
        (work / "wheel").mkdir()
        try:
            wheel = _download_wheel(chosen, arch, work / "wheel")
        except _Unreachable as exc:
            raise ToolCacheError(f"{exc}. {_offline_hint(root)}") from exc

        by_name = {f.filename: f for f in files}
        published = by_name.get(wheel.name)
        if published is None or not published.sha256:
            raise ToolCacheError(
                f"pip saved {wheel.name}, which the index lists without a sha256; refusing it"
            )
        actual = _sha256_file(wheel)
        if actual != published.sha256:
            raise ToolCacheError(
                f"sha256 mismatch for {wheel.name}: the index {_redact(index.url)} publishes "
                f"{published.sha256} but the download is {actual}. The file was altered on "
                "the way or in a cache/mirror; nothing was written to the tool cache. "
                "Retry, or check the proxy/mirror between this machine and the index."
            )

        stage = work / "entry"
        stage.mkdir(mode=0o755)
        binary = stage / _PYSPY
        dist, wheel_version, _ = _wheel_parts(wheel.name) or (_PYSPY_DIST, version, ())
        member = f"{dist}-{wheel_version}.data/scripts/{_PYSPY}"
        _extract_member(wheel, member, binary, _MAX_BINARY_BYTES)
        machine = _elf_machine(binary)
        if machine != _ELF_MACHINE[arch]:
            raise ToolCacheError(
                f"{wheel.name}: {member} is not an {arch} executable (ELF machine {machine})"
            )
        binary.chmod(0o755)
        sidecar = {
            "schema": SIDECAR_SCHEMA,
            "name": _PYSPY,
            "version": version,
            "arch": arch,
            "file": _PYSPY,
            "sha256": _sha256_file(binary),
            "size": binary.stat().st_size,
            "wheel": {
                "filename": wheel.name,
                "sha256": actual,
                "url": _redact(published.url),
                "index": _redact(index.url),
            },
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_file(stage / SIDECAR, (json.dumps(sidecar, indent=2) + "\n").encode())
        _fsync_dir(stage)
        _install(stage, entry, work / "replaced")


def _write_file(path: Path, data: bytes) -> None:
    with path.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    path.chmod(0o644)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _install(stage: Path, entry: Path, trash: Path) -> None:
    """Swap ``stage`` in as ``entry``; a reader never sees a half-written entry."""
    if entry.exists() or entry.is_symlink():
        os.rename(entry, trash)  # the scratch directory's cleanup removes it
    os.rename(stage, entry)
    _fsync_dir(entry.parent)


def _offline_hint(root: Path) -> str:
    return (
        "If this machine cannot reach the index, run `fleetprof tools fetch` on one that "
        f"can and copy its tool cache to {root} here (or point FLEETPROF_CACHE_DIR at the "
        "copy); pip's index is set with `pip config set global.index-url URL` or "
        "PIP_INDEX_URL."
    )


# --- the cache entries ----------------------------------------------------------------


def _load_entry(entry: Path, name: str, version: str, arch: str) -> CachedTool | None:
    """The entry's tool if its binary matches its sidecar, else None."""
    binary = entry / name
    try:
        meta: Any = json.loads((entry / SIDECAR).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            return None
        expected = meta.get("sha256")
        if (
            meta.get("name") != name
            or meta.get("version") != version
            or meta.get("arch") != arch
            or not isinstance(expected, str)
            or not _SHA256_RE.fullmatch(expected)
        ):
            return None
        info = binary.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size != meta.get("size"):
            return None
        if _sha256_file(binary) != expected:
            return None
    except (OSError, ValueError):
        return None
    if stat.S_IMODE(info.st_mode) != 0o755:
        # The content is verified; a copy that lost the mode bits is still good.
        with contextlib.suppress(OSError):
            binary.chmod(0o755)
    return CachedTool(name=name, version=version, arch=arch, path=binary, sha256=expected)


@contextlib.contextmanager
def _locked(lock_path: Path, say: Log, what: str) -> Iterator[None]:
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ToolCacheError(
            f"cannot open the lock file {lock_path}: {exc.strerror or exc}; "
            "set FLEETPROF_CACHE_DIR to a writable directory"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            say(f"waiting for another fleetprof that is fetching {what}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _resolve_version(version: str | None) -> str:
    chosen = (version or os.environ.get("FLEETPROF_PYSPY_VERSION") or PYSPY_VERSION).strip()
    if not _VERSION_RE.fullmatch(chosen) or ".." in chosen:
        raise ToolCacheError(
            f"py-spy version {chosen!r} is not a version number (e.g. {PYSPY_VERSION}); "
            "check FLEETPROF_PYSPY_VERSION"
        )
    return chosen


def _quiet(_message: str) -> None:
    return None
