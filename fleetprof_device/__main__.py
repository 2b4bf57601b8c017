"""``python3 fleetprof_device.pyz COMMAND ARGS_FILE``: run one of the device modules by hand,
exactly as its Ansible module runs it (docs/device.md)."""

from __future__ import annotations

import sys
from typing import List, Optional

USAGE = "usage: python3 fleetprof_device.pyz {session|facts|stop} ARGS_FILE"


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "session":
        from fleetprof_device import runner

        return runner.main(rest)
    if command == "facts":
        from fleetprof_device import facts

        return facts.main(rest)
    if command == "stop":
        from fleetprof_device import stop

        return stop.main(rest)
    sys.stderr.write(USAGE + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
