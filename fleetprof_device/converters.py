"""What the device-side converters run by the program's own interpreter share (memray's
capture, line_profiler's stats -> JSON): their command line, and a document always written
(atomically), with ``error`` when the input could not be read."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

Convert = Callable[[str, int], Tuple[Dict[str, Any], Optional[str]]]


def converter_main(argv: List[str], convert: Convert, name: str, what: str) -> int:
    """INPUT OUTPUT TOP -> 0, or 1 (OUTPUT then says why; so does stderr), 2 on usage."""
    if len(argv) != 3:
        sys.stderr.write("usage: %s INPUT OUTPUT TOP\n" % name)
        return 2
    try:
        top = int(argv[2])
    except ValueError:
        sys.stderr.write("TOP must be an integer\n")
        return 2
    document, error = convert(argv[0], top)
    tmp = argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(document, handle, separators=(",", ":"))
    os.replace(tmp, argv[1])
    if error:
        sys.stderr.write("cannot read the %s: %s\n" % (what, error))
        return 1
    return 0
