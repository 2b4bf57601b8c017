"""fleetprof's performance benchmarks (see benchmarks/README.md); not timed tests.

Each benchmark is a module here with ``NAME``, ``SUMMARY`` and ``bench(smoke)``: at full
size it prints its table and writes ``benchmarks/results/<NAME>.json``; at the smoke
size it runs the same code path in seconds and writes nothing. ``python -m benchmarks
run [NAME...]`` runs them (``make bench``, ``make bench-smoke``).
"""

from __future__ import annotations

# Name -> module. A new benchmark adds one line here.
BENCHMARKS: dict[str, str] = {
    "report_scale": "benchmarks.report_scale",
    "orchestration": "benchmarks.orchestration",
    "start_skew": "benchmarks.start_skew",
    "profiling_overhead": "benchmarks.profiling_overhead",
    "footprint": "benchmarks.footprint",
}
