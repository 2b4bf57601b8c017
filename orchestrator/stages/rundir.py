"""The run directory: its layout, its JSON files, and unpacking device tarballs into it.

Layout and file contracts: docs/run-directory.md. Every write is atomic (orchestrator/atomic.py:
temp file, fsync, rename), so a run interrupted at any point leaves only whole files behind.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.atomic import replacing_text, write_atomic
from orchestrator.models import HostFacts, HostProgress, HostStatus, SessionPlan
from orchestrator.stages.safetar import ExtractResult, UnsafeArchive, safe_copy_dir, safe_extract
from orchestrator.values import has_control, load_json

ARCHIVE = "session.tar.gz"
SESSION_DIR = "session"
# Where the collect play fetches, file by file, a session whose archive could not be made
# (a full device disk): the controller takes them into SESSION_DIR as it unpacks a tarball.
LOOSE_DIR = "loose"
# What one host may bring back, unpacked.
MAX_HOST_BYTES = 512 * 1024 * 1024
# A runner's manifest is a few KiB; one larger than this is not read (it would cost the
# controller many times its size in memory).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


# Files and directories fleetprof writes: owner only (docs/security.md, file modes). The
# command line also sets the umask to 077, so what Ansible and SQLite create follows.
RUN_DIR_MODE = 0o700
UMASK = 0o077


def host_name_problem(host: str) -> str | None:
    """Why an inventory host name cannot name its directory under ``hosts/`` (None: it
    can). The rule is checked when the inventory is loaded, before anything runs."""
    if not host or host in (".", ".."):
        return "it is empty, '.' or '..'"
    if "/" in host:
        return "it contains '/'"
    if has_control(host):
        return "it contains control characters"
    if len(host.encode("utf-8", "surrogateescape")) > 200:
        return "it is longer than 200 bytes"
    return None


def new_run_id(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def write_json(path: Path, data: Any, *, compact: bool = False) -> None:
    """``data`` as JSON, atomically (a reader never sees half a file). Indented for people
    to read, or ``compact``: one line, written by the C encoder (Python's own only serves
    an indented dump), for documents as large as a fleet's report.json."""
    with replacing_text(path) as handle:
        if compact:
            json.dump(data, handle, separators=(",", ":"), default=str)
        else:
            json.dump(data, handle, indent=2, default=str)
        handle.write("\n")


def write_text(path: Path, text: str | bytes) -> None:
    """``text`` (or bytes as they are), atomically, owner-only like every temp file."""
    write_atomic(path, text)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def create(cls, out_root: Path, campaign: str, run_id: str | None = None) -> RunDir:
        path = out_root / campaign / (run_id or new_run_id())
        path.parent.mkdir(parents=True, exist_ok=True)
        # Owner only (docs/security.md): campaign.yml and plan.json hold launch.env, and
        # what devices sent is theirs to share, not every local user's.
        path.mkdir(mode=RUN_DIR_MODE)
        (path / "hosts").mkdir(mode=RUN_DIR_MODE)
        return cls(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    def host_dir(self, host: str) -> Path:
        # Inventory names come from the operator, not the device; still keep them a name
        # (load_inventory refused such names already).
        problem = host_name_problem(host)
        if problem is not None:
            raise ValueError(f"host name {host!r} cannot name a directory: {problem}")
        return self.path / "hosts" / host

    def hosts(self) -> list[str]:
        hosts_dir = self.path / "hosts"
        return (
            sorted(p.name for p in hosts_dir.iterdir() if p.is_dir()) if hosts_dir.is_dir() else []
        )

    # Per-host files ---------------------------------------------------------------
    def write_facts(self, facts: HostFacts) -> None:
        write_json(self.host_dir(facts.host) / "facts.json", facts.to_dict())

    def read_facts(self, host: str) -> HostFacts | None:
        path = self.host_dir(host) / "facts.json"
        return HostFacts.from_dict(read_json(path)) if path.is_file() else None

    def write_plan(self, plan: SessionPlan) -> None:
        write_json(self.host_dir(plan.host) / "plan.json", plan.to_dict())

    def read_plan(self, host: str) -> SessionPlan | None:
        path = self.host_dir(host) / "plan.json"
        return SessionPlan.from_dict(read_json(path)) if path.is_file() else None

    def write_status(
        self, host: str, stage: str, status: HostStatus | HostProgress, reason: str | None
    ) -> None:
        record = {"host": host, "stage": stage, "status": status, "reason": reason}
        write_json(self.host_dir(host) / "status.json", record)

    def read_status(self, host: str) -> dict[str, Any]:
        path = self.host_dir(host) / "status.json"
        return dict(read_json(path)) if path.is_file() else {}

    def session_dir(self, host: str) -> Path:
        return self.host_dir(host) / SESSION_DIR

    def read_manifest(self, host: str) -> dict[str, Any] | None:
        return self.load_manifest(host)[0]

    def load_manifest(self, host: str) -> tuple[dict[str, Any] | None, str | None]:
        """The device's manifest.json (untrusted), or None and why it could not be read
        (None and no reason when the device sent none)."""
        path = self.session_dir(host) / "manifest.json"
        if not path.is_file():
            return None, None
        try:
            size = path.stat().st_size
            if size > MAX_MANIFEST_BYTES:
                return None, f"manifest.json is {size} bytes, over {MAX_MANIFEST_BYTES}"
            data = load_json(path.read_bytes())
        except (OSError, ValueError) as err:
            return None, f"manifest.json could not be read: {str(err)[:200]}"
        if not isinstance(data, dict):
            return None, "manifest.json is not a JSON object"
        return data, None

    def fetched(self, host: str) -> bool:
        """Whether collect brought something back: the tarball, or the files of a session
        whose archive could not be made."""
        return (self.host_dir(host) / ARCHIVE).is_file() or self._loose(host) is not None

    def _loose(self, host: str) -> Path | None:
        loose = self.host_dir(host) / LOOSE_DIR
        return loose if loose.is_dir() and not loose.is_symlink() else None

    def unpack_collected(self, host: str) -> HostStatus | HostProgress:
        """Unpack what the collect play fetched for ``host`` and record the outcome in its
        status: collected (what the safe unpacker skipped is the reason), or failed for an
        unsafe archive. Returns the status written. ``fleetprof run`` and ``stages ingest``
        both take a host's session in through here."""
        try:
            extracted = self.unpack(host)
        except UnsafeArchive as err:
            self.write_status(host, "collect", HostStatus.FAILED, f"unsafe archive: {err}")
            return HostStatus.FAILED
        self.write_status(host, "collect", HostProgress.COLLECTED, extracted.rejected_summary())
        return HostProgress.COLLECTED

    def unpack(self, host: str) -> ExtractResult:
        """Unpack the fetched tarball into hosts/<host>/session/, replacing an older one.
        Without a tarball, the files fetched one by one (hosts/<host>/loose/) are taken in
        with the same checks and caps, and their fetched copies removed."""
        archive = self.host_dir(host) / ARCHIVE
        dest = self.session_dir(host)
        loose = self._loose(host)
        if not archive.is_file() and loose is not None:
            try:
                result = safe_copy_dir(loose, dest, max_total_bytes=MAX_HOST_BYTES)
            except OSError as err:
                raise UnsafeArchive(
                    f"the files fetched into {loose} could not be read: {err}"
                ) from None
            shutil.rmtree(loose, ignore_errors=True)
            return result
        try:
            return safe_extract(archive, dest, max_total_bytes=MAX_HOST_BYTES)
        except FileNotFoundError as err:
            raise UnsafeArchive(f"no session archive was fetched ({err.filename})") from None
