"""A fleet of emulated edge devices: one real sshd per host, isolated like a separate machine.

Each host is an sshd on its own loopback address, PID 1 of its own PID, mount, UTS and
IPC namespaces (so it sees only its own processes, and has its own hostname and private
/tmp, /var/tmp, /opt, /run and home directory), inside its own cgroup (a CPU quota makes
a slower hardware model, the freezer a hung device, killing it all a dead device).
``Fleet.up`` brings a fleet up and writes an Ansible inventory with strict host key
checking; see README.md in this directory.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko
import yaml

from tests.fleet import registry
from tests.fleet.cgroups import (
    PRIORITY_BASE_NAME,
    PRIORITY_WEIGHT,
    Cgroup,
    CgroupError,
    CgroupTree,
    detect,
    tree_from_json,
    wait_until,
)
from tests.fleet.errors import FleetError, FleetUnavailable, HostTimeout
from tests.fleet.hosts import (
    USER,
    FleetHost,
    ModelSpec,
    Process,
    RunResult,
    find_init,
    namespace_processes,
    private_targets,
)
from tests.fleet.prereqs import DEVICE_PYTHON, find_tool, fleet_unavailable
from tests.fleet.ssh import connect, execute, load_key

STATE_SCHEMA = "fleetprof.test-fleet/1"
ENTER_HOST = Path(__file__).with_name("enter_host.sh")
DEFAULT_PORT = 2222
CONTROLLER = "controller"  # the controller's cgroup in the fleet's (host names end in -<n>)
SSHD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _keygen(path: Path, comment: str) -> None:
    proc = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise FleetError(f"ssh-keygen for {path} failed: {proc.stderr.strip()}")


def check_directory(directory: Path) -> Path:
    directory = directory.absolute()
    resolved = directory.resolve()
    for target in private_targets():
        real = Path(target).resolve()
        if resolved == real or real in resolved.parents:
            raise FleetError(
                f"the fleet directory {directory} must not be under {target}: every host gets "
                "a private one, which would hide the fleet's sshd files from its hosts"
            )
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FleetError(f"the fleet directory {directory} exists and is not empty")
    return directory


def _sshd_config(host: FleetHost, authorized_keys: Path, extra: Sequence[str]) -> str:
    lines = [
        f"# sshd of the emulated host {host.name} (tests/fleet)",
        f"ListenAddress {host.address}",
        f"Port {host.port}",
        f"HostKey {host.host_key}",
        f"PidFile {host.directory / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        # The fleet's files may sit below directories sshd would call unsafe.
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "Subsystem sftp internal-sftp",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def _group_name(model: str) -> str:
    group = re.sub(r"[^A-Za-z0-9_]", "_", model)
    return group if group[0].isalpha() or group[0] == "_" else f"model_{group}"


class Fleet:
    """A running test fleet; use ``Fleet.up`` (or ``Fleet.load`` from another process)."""

    def __init__(
        self,
        fleet_id: str,
        directory: Path,
        hosts: list[FleetHost],
        tree: CgroupTree,
        *,
        python: str = DEVICE_PYTHON,
        owner: dict[str, int] | None = None,
        status: str = "starting",
        cpu_priority: bool = False,
    ) -> None:
        self.id = fleet_id
        self.cpu_priority = cpu_priority
        self.directory = directory
        self.hosts = hosts
        self.tree = tree
        self.python = python
        self.owner = owner
        self.status = status
        self._pkey: paramiko.PKey | None = None

    # -- paths -------------------------------------------------------------------------

    @property
    def inventory(self) -> Path:
        return self.directory / "inventory.yml"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def client_key(self) -> Path:
        return self.directory / "client_key"

    @property
    def authorized_keys(self) -> Path:
        return self.directory / "authorized_keys"

    @property
    def state_file(self) -> Path:
        return self.directory / registry.STATE_FILE

    def host(self, host: str | FleetHost) -> FleetHost:
        name = host.name if isinstance(host, FleetHost) else host
        for candidate in self.hosts:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no host {name!r} in fleet {self.id}")

    def hosts_of(self, model: str) -> list[FleetHost]:
        return [h for h in self.hosts if h.model == model]

    # -- bringing up -------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        models: Mapping[str, ModelSpec | Mapping[str, Any] | int],
        *,
        directory: Path | str | None = None,
        port: int = DEFAULT_PORT,
        ready_timeout: float = 30.0,
        python: str = DEVICE_PYTHON,
        extra_sshd_config: Sequence[str] = (),
        cgroups: CgroupTree | None = None,
        detach: bool = False,
        cpu_priority: bool = False,
    ) -> Fleet:
        """Bring up one host per ``count`` of every model; return once all accept SSH logins.

        ``models`` maps a hardware model name to ``ModelSpec``, ``{"count": 3, "cpu": 0.5}``
        or a count. Hosts are named ``<model>-<n>``. Unless ``detach``, the fleet is torn
        down at interpreter exit at the latest (and reaped by the next ``Fleet.up`` when
        this process died without); a detached fleet stays until ``down``.

        ``cpu_priority``: each host gets its CPU quota even while the machine is busy
        with other work (see ``tests.fleet.cgroups.PRIORITY_WEIGHT``); every model needs
        a ``cpu`` quota then.
        """
        specs = {name: ModelSpec.of(spec) for name, spec in models.items()}
        if not specs:
            raise ValueError("a fleet needs at least one model")
        if cpu_priority and any(s.cpu is None for s in specs.values()):
            raise ValueError(
                "cpu_priority needs a cpu quota on every model: an unlimited host with "
                "priority would take the machine from the controller"
            )
        for name in specs:
            if not MODEL_NAME.match(name):
                raise ValueError(f"bad model name {name!r}: letters, digits, '.', '_', '-'")
        groups = [_group_name(name) for name in specs]
        if len(set(groups)) != len(groups):
            raise ValueError(f"model names {sorted(specs)} collide as Ansible groups")
        need_cpu = any(s.cpu is not None for s in specs.values())
        if cgroups is None:
            reason = fleet_unavailable(need_cpu=need_cpu)
            if reason:
                raise FleetUnavailable(reason)
            cgroups = detect()
            assert cgroups is not None
        else:
            problem = cgroups.problem(need_cpu=need_cpu)
            if problem:
                raise FleetUnavailable(problem)
        if not os.access(python, os.X_OK):
            raise FleetUnavailable(f"{python} (the hosts' Python) is missing")
        if cpu_priority:
            cgroups = cgroups.with_base(PRIORITY_BASE_NAME)

        reap_orphans()
        fleet_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        directory = check_directory(Path(directory or registry.fleets_dir() / fleet_id))
        plan = [
            (model, f"{model}-{n}", spec.cpu)
            for model, spec in specs.items()
            for n in range(1, spec.count + 1)
        ]
        if len({name for _, name, _ in plan}) != len(plan):
            raise ValueError("two hosts would get the same name; rename the models")

        fleet = cls(
            fleet_id,
            directory,
            [],
            cgroups,
            python=python,
            # Owned while starting even when detached: a start killed half-way gets reaped.
            owner=registry.owner(),
            cpu_priority=cpu_priority,
        )
        if not detach:
            atexit.register(fleet._down_at_exit)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with registry.locked():
                addresses = registry.allocate_addresses(len(plan), port)
                fleet.hosts = [
                    fleet._new_host(model, name, cpu, address, port)
                    for (model, name, cpu), address in zip(plan, addresses, strict=True)
                ]
                if cpu_priority:
                    fleet._raise_priority()
                registry.register(fleet_id, directory)
                fleet.save()
            fleet._write_keys()
            fleet._write_files(extra_sshd_config)
            for host in fleet.hosts:
                fleet._launch(host)
            fleet._wait_all_ready(ready_timeout)
            fleet.status = "up"
            if detach:
                fleet.owner = None
            fleet.save()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                fleet.down()
            if isinstance(exc, CgroupError):
                raise FleetError(str(exc)) from exc
            raise
        return fleet

    def _new_host(
        self, model: str, name: str, cpu: float | None, address: str, port: int
    ) -> FleetHost:
        host_dir = self.directory / "hosts" / name
        fs = host_dir / "fs"
        private = {target: fs / target.strip("/").replace("/", "_") for target in private_targets()}
        cgroup = self.tree.create([self.id, name], cpu)
        return FleetHost(name, model, address, port, cpu, host_dir, cgroup, private)

    def _raise_priority(self) -> None:
        """Weight the priority base, this fleet's and each host's cgroup (under the lock:
        the base is shared with other priority fleets)."""
        for host in self.hosts:
            host.cgroup.set_weight(PRIORITY_WEIGHT)
        self.tree.group([self.id]).set_weight(PRIORITY_WEIGHT)
        self.tree.group([]).set_weight(PRIORITY_WEIGHT)

    def controller_cgroup(self) -> Cgroup:
        """A cgroup for the test's own controller commands (``fleetprof``, Ansible and
        their ssh), beside the hosts: ``preexec_fn=fleet.controller_cgroup().attach_self``.
        In a cpu_priority fleet it has the hosts' weight (and no quota): on a busy machine
        the controller then still starts each session in its lead, as the hosts still get
        their quota. Whatever is left in it (ssh masters) is killed by ``down``."""
        with registry.locked():
            cgroup = self.tree.create([self.id, CONTROLLER], None)
            if self.cpu_priority:
                cgroup.set_weight(PRIORITY_WEIGHT)
        return cgroup

    def _write_keys(self) -> None:
        jobs: list[tuple[Path, str]] = [(self.client_key, f"fleetprof-fleet-{self.id}")]
        for host in self.hosts:
            host.directory.mkdir(parents=True, exist_ok=True)
            jobs.append((host.host_key, host.name))
        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
            for future in [pool.submit(_keygen, path, comment) for path, comment in jobs]:
                future.result()

    def _write_files(self, extra_sshd_config: Sequence[str]) -> None:
        self.authorized_keys.write_text(self.client_key.with_suffix(".pub").read_text())
        known = []
        for host in self.hosts:
            key_type, key = host.host_key.with_suffix(".pub").read_text().split()[:2]
            known.append(f"[{host.address}]:{host.port} {key_type} {key}\n")
            host.sshd_config.write_text(_sshd_config(host, self.authorized_keys, extra_sshd_config))
            for target, source in host.private_dirs.items():
                source.mkdir(parents=True, exist_ok=True)
                source.chmod(os.stat(target).st_mode & 0o7777)
            if "/run" in host.private_dirs:
                # sshd's privilege separation directory, and the usual lock directory.
                (host.private_dirs["/run"] / "sshd").mkdir(mode=0o755, exist_ok=True)
                (host.private_dirs["/run"] / "lock").mkdir(exist_ok=True)
                (host.private_dirs["/run"] / "lock").chmod(0o1777)
        self.known_hosts.write_text("".join(known))
        self.inventory.write_text(self.inventory_yaml())

    def inventory_yaml(self) -> str:
        common_args = (
            f"-o UserKnownHostsFile={shlex.quote(str(self.known_hosts))} "
            "-o StrictHostKeyChecking=yes"
        )
        children: dict[str, Any] = {}
        for host in self.hosts:
            group = children.setdefault(_group_name(host.model), {"hosts": {}})
            group["hosts"][host.name] = {
                "ansible_host": host.address,
                "ansible_port": host.port,
                "ansible_user": USER,
                "ansible_ssh_private_key_file": str(self.client_key),
                "ansible_ssh_common_args": common_args,
                "ansible_python_interpreter": self.python,
                "fleetprof_hw_model": host.model,
            }
        header = f"# Test fleet {self.id} (tests/fleet); removed by its `down`.\n"
        return header + yaml.safe_dump({"all": {"children": children}}, sort_keys=False, width=1000)

    def _launch(self, host: FleetHost) -> None:
        unshare = find_tool("unshare")
        sshd = find_tool("sshd")
        assert unshare and sshd
        mounts = [str(p) for target, source in host.private_dirs.items() for p in (target, source)]
        argv = [
            unshare,
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--mount-proc",
            "--propagation",
            "private",
            "--uts",
            "--ipc",
            "--",
            "/bin/sh",
            str(ENTER_HOST),
            host.name,
            str(host.directory.parent),
            str(host.directory),
            sshd,
            str(host.sshd_config),
            *mounts,
        ]
        with open(host.log, "ab") as log:
            # Joining the cgroup before exec puts unshare, the namespace's PID 1 and every
            # process sshd ever starts in it. A new session keeps terminal signals away.
            host._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=host.cgroup.attach_self,
                start_new_session=True,
                env={"PATH": SSHD_PATH, "LANG": "C.UTF-8"},
            )
        host.launcher_pid = host._proc.pid
        host.pid = None
        host.state = "starting"

    def _wait_ready(self, host: FleetHost, deadline: float) -> None:
        last_error = "no attempt yet"
        while True:
            if host._proc is not None and host._proc.poll() is not None:
                raise FleetError(
                    f"host {host.name} ({host.address}:{host.port}) exited with "
                    f"{host._proc.returncode} while starting\n--- {host.log} ---\n"
                    f"{_log_tail(host.log)}"
                )
            if host.pid is None:
                host.pid = find_init(host.cgroup)
            remaining = deadline - time.monotonic()
            if host.pid is not None:
                try:
                    client = connect(
                        host, self.known_hosts, self._key(), max(0.5, min(remaining, 5.0))
                    )
                except FleetError as exc:
                    last_error = str(exc)
                else:
                    client.close()
                    host.state = "up"
                    return
            if time.monotonic() >= deadline:
                raise FleetError(
                    f"host {host.name} ({host.address}:{host.port}) did not accept an SSH "
                    f"login in time: {last_error}\n--- {host.log} ---\n{_log_tail(host.log)}"
                )
            time.sleep(0.05)

    def _wait_all_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            futures = [pool.submit(self._wait_ready, host, deadline) for host in self.hosts]
            errors = [str(f.exception()) for f in futures if f.exception() is not None]
        if errors:
            raise FleetError("\n\n".join(errors))

    # -- reaching hosts ----------------------------------------------------------------

    def _key(self) -> paramiko.PKey:
        if self._pkey is None:
            self._pkey = load_key(self.client_key)
        return self._pkey

    def run(
        self,
        host: str | FleetHost,
        argv: Sequence[str],
        timeout: float = 30.0,
        *,
        check: bool = False,
    ) -> RunResult:
        """Run ``argv`` on ``host`` over SSH (a new connection, host key checked).

        Raises HostTimeout when the host does not answer or the command does not finish
        within ``timeout`` seconds (counting the login), HostUnreachable when nothing
        listens; with ``check``, FleetError when the command exits non-zero.
        """
        if not argv:
            raise ValueError("argv must not be empty")
        target = self.host(host)
        deadline = time.monotonic() + timeout
        command = shlex.join(argv)
        client = connect(target, self.known_hosts, self._key(), timeout)
        try:
            result = execute(client, command, deadline)
        except TimeoutError as exc:
            raise HostTimeout(
                f"{target.name}: {command} did not finish within {timeout:g} s"
            ) from exc
        except (paramiko.SSHException, OSError) as exc:
            raise FleetError(f"{target.name}: {command}: {exc}") from exc
        finally:
            client.close()
        if check and result.rc != 0:
            raise FleetError(
                f"{target.name}: {command} exited with {result.rc}\n{result.stderr.strip()}"
            )
        return result

    def start_background(
        self, host: str | FleetHost, argv: Sequence[str], *, output: str = "/dev/null"
    ) -> int:
        """Start ``argv`` on ``host``, detached from the SSH session; its pid on that host."""
        # Ignoring SIGHUP (inherited through exec) keeps it running when the session ends.
        script = 'trap "" HUP; "$@" </dev/null >"$FLEET_OUTPUT" 2>&1 & echo $!'
        result = self.run(
            host,
            ["env", f"FLEET_OUTPUT={output}", "sh", "-c", script, "sh", *argv],
            check=True,
        )
        return int(result.stdout.strip())

    # -- looking at hosts from the controller ------------------------------------------

    def cgroup_pids(self, host: str | FleetHost) -> list[int]:
        """Every process of the host as the controller numbers them (unshare included)."""
        return self.host(host).cgroup.pids()

    def processes(self, host: str | FleetHost) -> list[Process]:
        """What runs in the host's PID namespace, as ``ps -e`` there would list it.

        Read from the controller's /proc (the host's cgroup), so it works on a frozen
        host too and does not list the SSH session a remote ``ps`` would need.
        """
        target = self.host(host)
        return namespace_processes(target.cgroup, target.pid)

    def pids(self, host: str | FleetHost) -> list[int]:
        """The pids of ``processes(host)``, numbered as on the host."""
        return [p.pid for p in self.processes(host)]

    def cpu_time(self, host: str | FleetHost) -> float | None:
        """CPU seconds every process of the host used so far (None: not accounted here)."""
        return self.host(host).cgroup.cpu_usage_s()

    def seed_file(self, source: Path, device_path: str, mode: int = 0o755) -> None:
        """Put a file on every host as if an earlier campaign had pushed it there; the
        directories on the way are created 0700, as the tools role does."""
        for host in self.hosts:
            target = host.private_path(device_path)
            for parent in reversed(target.parents):
                if not parent.exists():
                    parent.mkdir(mode=0o700)
            shutil.copyfile(source, target)
            target.chmod(mode)

    # -- emulating trouble -------------------------------------------------------------

    def freeze(self, host: str | FleetHost) -> None:
        """Hang the host: every process of it stops (TCP still connects; nothing answers)."""
        target = self.host(host)
        target.cgroup.freeze()
        target.state = "frozen"
        self.save()

    def thaw(self, host: str | FleetHost) -> None:
        target = self.host(host)
        target.cgroup.thaw()
        target.state = "up" if target.pid is not None else "dead"
        self.save()

    def kill(self, host: str | FleetHost) -> None:
        """Kill the host: every process of it gets SIGKILL; connections are refused after."""
        target = self.host(host)
        self._stop(target)
        self.save()

    def _stop(self, host: FleetHost, timeout: float = 10.0) -> None:
        """SIGKILL every process of ``host``: PID 1 first, so every parent reaps its child."""
        if host.pid is not None and host.pid in host.cgroup.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(host.pid, signal.SIGKILL)
            # The kernel kills the rest of the namespace; the launcher reaps PID 1 and exits.
            if host.cgroup.frozen():
                host.cgroup.thaw()
            wait_until(lambda: not host.cgroup.pids(), min(timeout, 3.0))
        try:
            host.cgroup.kill(timeout)  # whatever is left, frozen or not
        finally:
            self._reap(host)
            host.pid = None
            host.state = "dead"

    def restart(self, host: str | FleetHost, timeout: float = 30.0) -> None:
        """Boot the host again (killing it first if it runs); its files are kept."""
        target = self.host(host)
        if target.cgroup.pids():
            self.kill(target)
        self._launch(target)
        try:
            self._wait_ready(target, time.monotonic() + timeout)
        finally:
            self.save()

    def set_cpu(self, host: str | FleetHost, cpu: float | None) -> None:
        """Change the host's CPU quota (cores; None: unlimited) while it runs."""
        if cpu is None and self.cpu_priority:
            raise ValueError("a host of a cpu_priority fleet keeps a quota (see Fleet.up)")
        target = self.host(host)
        target.cgroup.set_cpu(cpu)
        target.cpu = cpu
        self.save()

    # -- state and tearing down --------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": STATE_SCHEMA,
            "id": self.id,
            "dir": str(self.directory),
            "status": self.status,
            "owner": self.owner,
            "python": self.python,
            "inventory": str(self.inventory),
            "known_hosts": str(self.known_hosts),
            "client_key": str(self.client_key),
            "cgroups": self.tree.to_json(),
            "hosts": [h.to_json() for h in self.hosts],
            "cpu_priority": self.cpu_priority,
        }

    def save(self) -> None:
        if self.directory.is_dir():
            registry.write_json(self.state_file, self.to_json())

    @classmethod
    def load(cls, directory: Path | str) -> Fleet:
        """The fleet whose state is in ``directory`` (e.g. brought up by another process)."""
        directory = Path(directory)
        state = registry.read_state(directory)
        if state is None or state.get("schema") != STATE_SCHEMA:
            raise FleetError(f"{directory} holds no test fleet state ({registry.STATE_FILE})")
        return cls(
            state["id"],
            directory,
            [FleetHost.from_json(h) for h in state["hosts"]],
            tree_from_json(state["cgroups"]),
            python=state.get("python", DEVICE_PYTHON),
            owner=state.get("owner"),
            status=state.get("status", "unknown"),
            cpu_priority=bool(state.get("cpu_priority")),
        )

    @staticmethod
    def registered() -> dict[str, Path]:
        """Fleet id -> directory of every fleet this machine knows about."""
        return registry.registered()

    def _reap(self, host: FleetHost) -> None:
        if host._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                host._proc.wait(timeout=5)
            host._proc = None

    def down(self) -> None:
        """Kill every process of every host, remove the cgroups, files and registry entry.

        Safe to call twice, and from any process (``Fleet.load(dir).down()``).
        """
        with contextlib.suppress(ValueError):
            atexit.unregister(self._down_at_exit)
        problems: list[str] = []
        for host in self.hosts:
            try:
                self._stop(host)
            except (CgroupError, OSError) as exc:
                problems.append(f"{host.name}: {exc}")
        controller = self.tree.group([self.id, CONTROLLER])
        try:
            controller.kill()
        except (CgroupError, OSError) as exc:
            problems.append(f"{CONTROLLER}: {exc}")
        with registry.locked():
            for cgroup, name in [(h.cgroup, h.name) for h in self.hosts] + [
                (controller, CONTROLLER)
            ]:
                try:
                    cgroup.remove()
                except CgroupError as exc:
                    problems.append(f"{name}: {exc}")
            with contextlib.suppress(CgroupError):
                self.tree.remove_empty([self.id])
            if problems:
                self.status = "broken"
                self.save()
                raise FleetError(f"fleet {self.id} not fully torn down:\n" + "\n".join(problems))
            self._remove_directory()
            registry.unregister(self.id)
        self.status = "down"

    def _remove_directory(self) -> None:
        state = registry.read_state(self.directory)
        if state is not None and state.get("id") != self.id:
            raise FleetError(f"{self.directory} belongs to fleet {state.get('id')}, not {self.id}")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _down_at_exit(self) -> None:
        try:
            self.down()
        except Exception as exc:
            print(f"tests.fleet: tearing down fleet {self.id} failed: {exc}", file=sys.stderr)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    def __repr__(self) -> str:
        return f"<Fleet {self.id} {self.status} {[h.name for h in self.hosts]} in {self.directory}>"


def reap_orphans() -> list[str]:
    """Tear down the fleets whose owning process is gone (a test run killed mid-way).

    Detached fleets (``Fleet.up(detach=True)``, the command line's ``up``) have no owner
    and stay until someone runs ``down``.
    """
    reaped: list[str] = []
    for fleet_id, directory in registry.registered().items():
        state = registry.read_state(directory)
        if state is None:
            # Registered but its state never written, or its directory already gone.
            if not directory.exists():
                registry.unregister(fleet_id)
            continue
        if state.get("owner") is None or registry.owner_alive(state["owner"]):
            continue
        with contextlib.suppress(FleetError):
            Fleet.load(directory).down()
            reaped.append(fleet_id)
    return reaped


def all_fleets() -> Iterator[tuple[str, Path, Fleet | None]]:
    """Every registered fleet: (id, directory, the fleet or None when its state is gone)."""
    for fleet_id, directory in registry.registered().items():
        try:
            yield fleet_id, directory, Fleet.load(directory)
        except FleetError:
            yield fleet_id, directory, None
