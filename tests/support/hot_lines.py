"""A workload whose hot function spends a share of its time on one line it measures itself
(``time.perf_counter`` around each part): the truth behind py-spy's hot lines, for the
process test (tests/process/test_hot_lines_real.py) and the fleet test
(tests/integration/test_fleet_hot_lines.py). argv: SECONDS TRUTH_FILE; the truth file gets
``heavy_share`` (the heavy line's share of hot()'s time) when the program ends."""

from __future__ import annotations

HEAVY = "for i in range(heavy): total += i * i  # HEAVY"
LIGHT = "for i in range(light): total -= i  # LIGHT"

# hot() does the same kind of work on two lines, about 70% of it on the first; it adds
# up the time each part took, and writes the heavy line's share when it is done.
WORKLOAD = """\
import json
import sys
import time
from time import perf_counter


def hot(heavy, light, spent):
    start = perf_counter()
    total = 0
    for i in range(heavy): total += i * i  # HEAVY
    middle = perf_counter()
    for i in range(light): total -= i  # LIGHT
    end = perf_counter()
    spent[0] += middle - start
    spent[1] += end - start
    return total


def main():
    seconds, out = float(sys.argv[1]), sys.argv[2]
    spent = [0.0, 0.0]
    began = time.time()
    while time.time() - began < seconds:
        hot(6000, 2500, spent)
    with open(out, "w") as handle:
        json.dump({"heavy_share": spent[0] / spent[1], "hot_s": spent[1]}, handle)


main()
"""


def line_of(text: str) -> int:
    """The workload's line number of ``text``."""
    return next(n for n, line in enumerate(WORKLOAD.splitlines(), 1) if line.strip() == text)
