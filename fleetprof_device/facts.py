"""Describe a device for a campaign's plan, in one cheap module run (the fleetprof_facts
module): architecture, hardware model, OS, Python, cores, memory, ptrace, tools, clock.

Ansible's fact gathering is not used: it is slow on small boards and misses what matters
here (ptrace scope, capabilities, the hardware model of ARM boards).
"""

from __future__ import annotations

import glob
import json
import os
import platform
import re
import shutil
import stat
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

from . import checksums

CAP_SYS_PTRACE = 19
MAX_HASH_BYTES = 256 * 1024 * 1024


def read_text(path: str, limit: int = 65536) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def hardware_model(hostvar: str) -> Tuple[str, str]:
    """The inventory wins; then what the board says about itself, most specific first."""
    if hostvar:
        return hostvar, "hostvar"
    model = read_text("/proc/device-tree/model") or read_text("/sys/firmware/devicetree/base/model")
    if model and model.strip("\x00 \n"):
        return model.strip("\x00 \n"), "device-tree"
    product = read_text("/sys/class/dmi/id/product_name")
    if (
        product
        and product.strip()
        and product.strip().lower()
        not in (
            "to be filled by o.e.m.",
            "system product name",
            "default string",
        )
    ):
        return product.strip(), "dmi"
    cpuinfo = read_text("/proc/cpuinfo", 1 << 20) or ""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        match = re.search(r"^%s\s*:\s*(.+)$" % re.escape(key), cpuinfo, re.MULTILINE)
        if match:
            return match.group(1).strip(), "cpu"
    return "unknown", "unknown"


def os_name() -> str:
    text = read_text("/etc/os-release") or ""
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.MULTILINE)
    return match.group(1) if match else platform.system()


def memory_mb() -> int:
    text = read_text("/proc/meminfo") or ""
    match = re.search(r"^MemTotal:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) // 1024 if match else 0


def effective_caps() -> int:
    text = read_text("/proc/self/status") or ""
    match = re.search(r"^CapEff:\s*([0-9a-fA-F]+)", text, re.MULTILINE)
    return int(match.group(1), 16) if match else 0


def ptrace_scope() -> Optional[int]:
    text = read_text("/proc/sys/kernel/yama/ptrace_scope")
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def delay_accounting(path: str = "/proc/sys/kernel/task_delayacct") -> Optional[bool]:
    """kernel.task_delayacct: True or False, None where the kernel has no such sysctl."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip()) != 0
    except ValueError:
        return None


# Where the profilers' own tools live when a non-login shell's PATH lacks them: the sbin
# directories (iotop), CUDA and the Nsight installs (nsys, ncu), JetPack (tegrastats).
TOOL_DIRS = (
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/usr/local/bin",
    "/usr/local/cuda/bin",
    "/opt/nvidia/nsight-systems/*/bin",
    "/opt/nvidia/nsight-compute/*",
    "/usr/local/cuda/nsight-compute-*",
    "/usr/local/cuda/nsight-systems-*/bin",
)
FOUND_TOOLS = ("iotop", "nvidia-smi", "tegrastats", "nsys", "ncu", "strace", "tcpdump")


def find_tool(
    name: str, path_env: Optional[str] = None, extra_dirs: Sequence[str] = TOOL_DIRS
) -> Optional[str]:
    """The executable ``name`` on PATH or in the usual directories, or None."""
    if path_env is None:
        path_env = os.environ.get("PATH", "")
    dirs = [d for d in path_env.split(os.pathsep) if d]
    for pattern in extra_dirs:
        dirs.extend(sorted(glob.glob(pattern), reverse=True) if "*" in pattern else [pattern])
    for directory in dirs:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_iotop(
    path_env: Optional[str] = None, extra_dirs: Sequence[str] = TOOL_DIRS
) -> Optional[str]:
    return find_tool("iotop", path_env, extra_dirs)


def gpu_facts() -> Dict[str, Any]:
    """What the device says about its NVIDIA GPU without running anything."""
    jetson = bool(read_text("/etc/nv_tegra_release")) or "jetson" in (
        (read_text("/proc/device-tree/model") or "").lower()
    )
    params = read_text("/proc/driver/nvidia/params") or ""
    match = re.search(r"^RmProfilingAdminOnly:\s*(\d+)", params, re.MULTILINE)
    return {
        "nvidia_driver": os.path.exists("/proc/driver/nvidia/version"),
        "jetson": jetson,
        # ERR_NVGPUCTRPERM unless root when the driver restricts counters to admins.
        "gpu_counters_admin_only": (int(match.group(1)) != 0) if match else None,
    }


def _first_line(path: str) -> Optional[str]:
    text = read_text(path, 4096)
    line = text.strip("\x00 \n").splitlines()[0].strip() if text and text.strip("\x00 \n") else ""
    return line[:200] or None


def _cpufreq_mhz(name: str) -> Optional[float]:
    text = _first_line("/sys/devices/system/cpu/cpu0/cpufreq/" + name)
    return round(int(text) / 1000.0, 1) if text and text.isdigit() else None


def _cgroup_quota(relative: str, root: str = "/sys/fs/cgroup") -> Optional[float]:
    """The tightest CPU quota (cores) on the way from the cgroup up to the root, or None."""
    best: Optional[float] = None
    parts = [p for p in relative.split("/") if p]
    for depth in range(len(parts), -1, -1):
        here = os.path.join(root, *parts[:depth])
        cores: Optional[float] = None
        text = _first_line(os.path.join(here, "cpu.max"))  # cgroup v2: "quota period"
        if text:
            fields = text.split()
            if (
                len(fields) == 2
                and fields[0] != "max"
                and fields[0].isdigit()
                and fields[1].isdigit()
            ):
                cores = int(fields[0]) / float(int(fields[1]) or 1)
        else:  # cgroup v1
            quota = _first_line(os.path.join(here, "cpu.cfs_quota_us"))
            period = _first_line(os.path.join(here, "cpu.cfs_period_us"))
            if quota and period and quota.isdigit() and period.isdigit() and int(period):
                cores = int(quota) / float(int(period))
        if cores is not None and (best is None or cores < best):
            best = cores
    return round(best, 3) if best is not None else None


def cpu_quota_cores(
    cgroup_file: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup"
) -> Optional[float]:
    """A CPU quota the device's processes run under (a container, a systemd slice)."""
    for line in (read_text(cgroup_file) or "").splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        controllers = fields[1].split(",")
        if fields[0] == "0" and fields[1] == "":
            return _cgroup_quota(fields[2], root)
        if "cpu" in controllers:
            for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
                if os.path.isdir(os.path.join(root, mount)):
                    return _cgroup_quota(fields[2], os.path.join(root, mount))
    return None


def controller_address() -> Optional[str]:
    """Where this device's SSH connection came from: the controller, as the device reaches
    it (the network probe's peer); None when the module runs without SSH."""
    words = os.environ.get("SSH_CONNECTION", "").split()
    return words[0][:64] if len(words) == 4 else None


def fingerprint() -> Dict[str, Any]:
    """What makes two devices of one model differ: firmware, CPU policy and limits."""
    bios = " ".join(
        part
        for part in (
            _first_line("/sys/class/dmi/id/bios_vendor"),
            _first_line("/sys/class/dmi/id/bios_version"),
            _first_line("/sys/class/dmi/id/bios_date"),
        )
        if part
    )
    return {
        "firmware": bios or _first_line("/etc/nv_tegra_release"),
        "cpu_governor": _first_line("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu_max_mhz": _cpufreq_mhz("cpuinfo_max_freq"),
        "cpu_scaling_max_mhz": _cpufreq_mhz("scaling_max_freq"),
        "cpu_quota_cores": cpu_quota_cores(),
    }


def attach_permission(
    scope: Optional[int], is_root: bool, has_cap: bool
) -> Tuple[bool, Optional[str]]:
    """Whether py-spy may attach to a process it did not start, and if not, why."""
    if scope == 3:
        return False, "kernel.yama.ptrace_scope=3: no process may be attached, even by root"
    if is_root or has_cap:
        return True, None
    if scope in (None, 0):
        return True, None
    if scope == 1:
        return False, (
            "kernel.yama.ptrace_scope=1 and no CAP_SYS_PTRACE: py-spy can profile only "
            "what it launches; attach needs root, the capability, or ptrace_scope=0"
        )
    return False, "kernel.yama.ptrace_scope=%d: attaching needs CAP_SYS_PTRACE" % cast(int, scope)


def file_sha256(paths: Any, home: str) -> Dict[str, str]:
    """sha256 of each regular file asked for (``~/`` expanded to ``home``), by its path."""
    found: Dict[str, str] = {}
    for given in paths if isinstance(paths, list) else ():
        if not isinstance(given, str) or not given:
            continue
        path = home.rstrip("/") + given[1:] if given.startswith("~/") else given
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_HASH_BYTES:
                continue
            found[path] = checksums.file_sha256(path)
        except OSError:
            continue
    return found


def main(argv: Optional[List[str]] = None) -> int:
    """Print the facts as the module's result; ARGS_FILE (argv[0]) is optional."""
    argv = sys.argv[1:] if argv is None else argv
    args: Dict[str, Any] = {}
    if argv:
        with open(argv[0]) as handle:
            args = json.load(handle)
    hw_model, source = hardware_model(args.get("hw_model") or "")
    home = os.path.expanduser("~")
    try:
        usage = shutil.disk_usage(home)
        disk_free_mb = usage.free // (1024 * 1024)
    except OSError:
        disk_free_mb = 0
    is_root = os.geteuid() == 0
    has_cap = bool(effective_caps() & (1 << CAP_SYS_PTRACE))
    scope = ptrace_scope()
    can_attach, reason = attach_permission(scope, is_root, has_cap)
    tools: Dict[str, str] = {}
    for name, path in (args.get("tools") or {}).items():
        if isinstance(path, str) and os.path.isfile(path) and os.access(path, os.X_OK):
            tools[name] = path
    facts = {
        "arch": platform.machine(),
        "hw_model": hw_model,
        "hw_model_source": source,
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cores": os.cpu_count() or 1,
        "memory_mb": memory_mb(),
        "disk_free_mb": disk_free_mb,
        "home": home,
        "is_root": is_root,
        "ptrace_scope": scope,
        "can_attach": can_attach,
        "attach_reason": reason,
        "tools": tools,
        "delayacct": delay_accounting(),
        # Apart from "tools" (the paths asked for): the controller files them under tools.
        "found_tools": dict(
            (name, path) for name, path in ((n, find_tool(n)) for n in FOUND_TOOLS) if path
        ),
        "gpu": gpu_facts(),
        "fingerprint": fingerprint(),
        "file_sha256": file_sha256(args.get("hash_files"), home),
        "controller_address": controller_address(),
    }
    print(json.dumps({"changed": False, "facts": facts, "device_time": time.time()}))
    return 0
