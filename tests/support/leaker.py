"""A workload that leaks a known number of bytes at a known line and keeps its own truth
(when it leaked each block, and how big a block is to Python): for the tracemalloc process
test (tests/process/test_tracemalloc_real.py) and the fleet test
(tests/integration/test_fleet_tracemalloc.py). argv: TRUTH_FILE; it leaks until SIGTERM,
then writes the truth and exits through ``sys.exit`` (so the hook's last snapshot runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LEAK_LINE = 14
LEAKER = """\
import json, signal, sys, time

def stop(signum, frame):
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
keep = []
times = []
block = 20000
started = time.time()
try:
    while True:
        times.append(time.time())
        keep.append(bytearray(block))  # the leak: LEAK_LINE
        sum(range(50000))  # some CPU work, for a sampler's hot line
        time.sleep(0.01)
finally:
    with open(sys.argv[1], "w") as out:
        json.dump({"times": times, "size": sys.getsizeof(keep[0])}, out)
"""
assert LEAKER.splitlines()[LEAK_LINE - 1].strip().startswith("keep.append(bytearray")


def leaked_between(truth_file: Path, first_at: float, last_at: float) -> int:
    """Bytes the program leaked after ``first_at`` up to ``last_at`` (its own account)."""
    truth: dict[str, Any] = json.loads(truth_file.read_text())
    return int(truth["size"]) * sum(first_at < t <= last_at for t in truth["times"])
