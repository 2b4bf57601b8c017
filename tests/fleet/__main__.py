"""Command line of the test fleet: ``python -m tests.fleet up|status|down|freeze|thaw|kill``.

``up`` prints the inventory path on stdout (and nothing else there), so
``INV=$(python -m tests.fleet up --model model-a=3)`` works; the fleet stays up after the
command returns, until ``down``. With ``--foreground`` it stays in the foreground instead
and tears the fleet down on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tests.fleet import Fleet, FleetError, ModelSpec, fleet_unavailable, registry
from tests.fleet.harness import DEFAULT_PORT, all_fleets


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through Fleet.up / the foreground loop, which tear the fleet down.
    raise SystemExit(128 + signum)


def _find(ref: str) -> Fleet:
    """A fleet by its directory or its id."""
    fleets = registry.registered()
    directory = fleets.get(ref, Path(ref))
    return Fleet.load(directory)


def _describe(fleet: Fleet) -> str:
    lines = [f"fleet {fleet.id} ({fleet.status}) in {fleet.directory}"]
    lines.append(f"  inventory: {fleet.inventory}")
    for h in fleet.hosts:
        cpu = "unlimited" if h.cpu is None else f"cpu {h.cpu:g}"
        alive = "running" if h.cgroup.pids() else "no processes"
        lines.append(
            f"  {h.name:<20} {h.address}:{h.port:<6} {h.model:<16} {cpu:<10} "
            f"{h.state:<8} pid {h.pid} ({alive})"
        )
    return "\n".join(lines)


def cmd_up(args: argparse.Namespace) -> int:
    models: dict[str, ModelSpec] = {}
    for text in args.model:
        name, spec = ModelSpec.parse(text)
        if name in models:
            raise ValueError(f"model {name} given twice")
        models[name] = spec
    reason = fleet_unavailable(need_cpu=any(s.cpu is not None for s in models.values()))
    if reason:
        print(f"tests.fleet: cannot run a fleet here: {reason}", file=sys.stderr)
        return 2
    started = time.monotonic()
    fleet = Fleet.up(
        models,
        directory=args.dir,
        port=args.port,
        ready_timeout=args.timeout,
        detach=not args.foreground,
    )
    print(fleet.inventory, flush=True)
    print(
        f"{_describe(fleet)}\nup in {time.monotonic() - started:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    if not args.foreground:
        print(f"tear down with: python -m tests.fleet down {fleet.directory}", file=sys.stderr)
        return 0
    try:
        print("Ctrl-C or SIGTERM tears the fleet down", file=sys.stderr, flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 130
    finally:
        fleet.down()


def cmd_status(args: argparse.Namespace) -> int:
    report = []
    for fleet_id, directory, fleet in all_fleets():
        if fleet is None:
            report.append({"id": fleet_id, "dir": str(directory), "status": "no state"})
            if not args.json:
                print(f"fleet {fleet_id}: no state in {directory} (down cleans its registry)")
            continue
        owner = fleet.owner
        if owner is not None and not registry.owner_alive(owner):
            fleet.status += " (owner gone)"
        report.append(fleet.to_json())
        if not args.json:
            print(_describe(fleet))
    if args.json:
        print(json.dumps(report, indent=2))
    elif not report:
        print("no test fleets")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    refs = list(registry.registered()) if args.all else args.fleets
    if not refs:
        print("tests.fleet: give fleet directories or ids, or --all", file=sys.stderr)
        return 2 if not args.all else 0
    failed = 0
    for ref in refs:
        try:
            fleet = _find(ref)
        except FleetError as exc:
            if args.all:
                # A registry entry whose fleet directory is gone: forget it.
                registry.unregister(ref)
                continue
            print(f"tests.fleet: {exc}", file=sys.stderr)
            failed += 1
            continue
        try:
            fleet.down()
        except FleetError as exc:
            print(f"tests.fleet: {exc}", file=sys.stderr)
            failed += 1
        else:
            print(f"fleet {fleet.id} down", file=sys.stderr)
    return 1 if failed else 0


def cmd_host(args: argparse.Namespace) -> int:
    fleet = _find(args.fleet)
    action = {
        "freeze": fleet.freeze,
        "thaw": fleet.thaw,
        "kill": fleet.kill,
        "restart": fleet.restart,
    }[args.command]
    action(args.host)
    print(_describe(fleet), file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.fleet", description="A real SSH test fleet of emulated devices."
    )
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring a fleet up; print its inventory path")
    up.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=COUNT[:CPU]",
        help="COUNT hosts of hardware model NAME, each with CPU cores (default unlimited)",
    )
    up.add_argument("--dir", type=Path, help="fleet directory (new or empty; not under /tmp)")
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help="sshd port of every host")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the hosts")
    up.add_argument(
        "--foreground",
        action="store_true",
        help="stay in the foreground; Ctrl-C or SIGTERM tears the fleet down",
    )
    up.set_defaults(func=cmd_up)
    status = sub.add_parser("status", help="list the fleets of this machine")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    down = sub.add_parser("down", help="tear fleets down (processes, cgroups, files)")
    down.add_argument("fleets", nargs="*", metavar="FLEET", help="fleet directory or id")
    down.add_argument("--all", action="store_true", help="every fleet of this machine")
    down.set_defaults(func=cmd_down)
    for name, text in (
        ("freeze", "hang a host (freeze its cgroup)"),
        ("thaw", "let a frozen host run again"),
        ("kill", "kill every process of a host (a dead device)"),
        ("restart", "boot a (dead) host again"),
    ):
        host = sub.add_parser(name, help=text)
        host.add_argument("fleet", metavar="FLEET", help="fleet directory or id")
        host.add_argument("host", metavar="HOST")
        host.set_defaults(func=cmd_host)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        rc: int = args.func(args)
    except (FleetError, ValueError, KeyError) as exc:
        print(f"tests.fleet: {exc}", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
