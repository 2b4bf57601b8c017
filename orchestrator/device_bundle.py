"""The device package as one zipapp: ``fleetprof_device/`` built deterministically (sorted
entries, fixed timestamps, so its sha256 names its content), cached beside the tool cache,
and the variable every play gets so preflight pushes it only where a device lacks it.

``python -m orchestrator.device_bundle`` builds it and prints that variable as JSON (the
molecule scenarios use it); docs/device.md says how to run the zipapp by hand.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fleetprof_device
from fleetprof_device.contract import DEVICE_BUNDLE_DIR, DEVICE_BUNDLE_NAME
from orchestrator import toolcache

BUNDLE_VAR = "fleetprof_device_bundle"  # the roles' defaults read it
PACKAGE_DIR = Path(fleetprof_device.__file__).resolve().parent
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can say
_MAIN = "import sys\n\nfrom fleetprof_device.__main__ import main\n\nsys.exit(main())\n"


@dataclass(frozen=True)
class DeviceBundle:
    src: Path  # the zipapp on the controller
    sha256: str

    @property
    def path(self) -> str:
        """Where it goes on a device, under the connecting user's home."""
        return f"{DEVICE_BUNDLE_DIR}/{self.sha256[:16]}/{DEVICE_BUNDLE_NAME}"

    def extravars(self) -> dict[str, Any]:
        return {BUNDLE_VAR: {"src": str(self.src), "sha256": self.sha256, "path": self.path}}


def zipapp_bytes(package_dir: Path = PACKAGE_DIR) -> bytes:
    """The zipapp's bytes: the same sources give the same bytes."""
    buffer = io.BytesIO()
    entries = [(f"fleetprof_device/{p.name}", p.read_bytes()) for p in package_dir.glob("*.py")]
    entries.append(("__main__.py", _MAIN.encode()))
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


@functools.cache
def build(cache: Path | None = None) -> DeviceBundle:
    """The zipapp of this controller's fleetprof_device, written once into the cache
    (``<tool cache>/fleetprof_device/<sha256>/``) and reused while it is intact."""
    data = zipapp_bytes()
    digest = hashlib.sha256(data).hexdigest()
    root = cache if cache is not None else toolcache.cache_dir()
    target = root / "fleetprof_device" / digest[:16] / DEVICE_BUNDLE_NAME
    try:
        intact = hashlib.sha256(target.read_bytes()).hexdigest() == digest
    except OSError:
        intact = False
    if not intact:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temp.write_bytes(data)
        os.replace(temp, target)
    return DeviceBundle(target, digest)


def extravars() -> dict[str, Any]:
    """The variable every stage's play gets (see the roles' defaults)."""
    return build().extravars()


if __name__ == "__main__":
    json.dump(extravars(), sys.stdout)
    sys.stdout.write("\n")
