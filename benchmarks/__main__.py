"""``python -m benchmarks run [NAME...] [--smoke]`` and ``python -m benchmarks list``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

from benchmarks import BENCHMARKS


class Benchmark(Protocol):
    NAME: str
    SUMMARY: str

    def bench(self, smoke: bool = False) -> dict[str, Any]: ...


def load(name: str) -> Benchmark:
    return cast(Benchmark, importlib.import_module(BENCHMARKS[name]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the benchmarks there are")
    run = commands.add_parser("run", help="run benchmarks (all when none is named)")
    run.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    run.add_argument("--smoke", action="store_true", help="a tiny size of each (seconds)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in BENCHMARKS:
            print(f"{name}: {load(name).SUMMARY}")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)} (there are: {', '.join(BENCHMARKS)})")
    for name in args.names or list(BENCHMARKS):
        started = time.perf_counter()
        print(f"== {name}{' (smoke)' if args.smoke else ''}", file=sys.stderr)
        load(name).bench(smoke=args.smoke)
        print(f"== {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
