"""A benchmark sweep's supervisor: the launched target of a campaign with
``target.launch.sweep``. It runs the campaign's command once per value, in order, run I in
the slot [T0 + I x slot, T0 + (I + 1) x slot) of the window, and records each run in
SWEEP_FILE. Its runs are its children (each in its own process group, killed with it), so
the profilers that follow the target's process tree (memory, open-files, the system
sampler's target, py-spy with subprocesses) see every run.

Run I gets the variable's value in its environment and in place of ``{VARIABLE}`` in its
arguments, and its own metrics file (SWEEP_METRICS_FILE % I, cut at the contract's cap).
A run still going at its slot's end gets SIGINT (a Python program's KeyboardInterrupt, to
write what it has), SIGTERM a second later and SIGKILL to its group 2 s after that. Told
to stop (SIGTERM or SIGINT: the runner's deadline), it stops the current run the same way
at once and writes its record. Started as ``python -c BOOTSTRAP PACKAGE_ROOT CONFIG``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional

from .children import Child
from .contract import (
    SWEEP_FILE,
    SWEEP_METRICS_FILE,
    SWEEP_RUN_OUTPUT,
    SWEEP_SCHEMA,
    WORKLOAD_METRICS_MAX_BYTES,
)
from .files import keep_tail, write_json
from .workload import MetricsFile, with_metrics_file

BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from fleetprof_device.sweep import main; sys.exit(main(sys.argv[2:]))"
)
POLL_S = 0.05
TERM_AFTER_S = 1.0  # SIGINT -> SIGTERM
KILL_AFTER_S = 2.0  # SIGTERM -> SIGKILL to the group
CAP_CHECK_S = 1.0


def argv_for(template: List[str], variable: str, value: str) -> List[str]:
    """The command with ``{VARIABLE}`` replaced by the value in every argument."""
    mark = "{%s}" % variable
    return [arg.replace(mark, value) for arg in template]


class Supervisor:
    def __init__(self, config: Dict[str, Any]) -> None:
        self.config = config
        self.workdir: str = config["workdir"]
        self.stop_requested: Optional[float] = None
        self.runs: List[Dict[str, Any]] = []

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_requested is None:
            self.stop_requested = time.time()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        config = self.config
        start, slot = float(config["t0"]), float(config["slot_s"])
        deadline = float(config["deadline"])
        values: List[str] = list(config["values"])
        for index, value in enumerate(values):
            begin = start + index * slot
            while self.stop_requested is None and time.time() < begin:
                time.sleep(min(POLL_S, max(0.0, begin - time.time())))
            if self.stop_requested is not None:
                self.runs.append({"index": index, "value": value, "status": "not-run"})
                continue
            end = deadline if index == len(values) - 1 else min(begin + slot, deadline)
            self.runs.append(self._one(index, value, end))
            self._write()
        self._write()
        return 0

    def _one(self, index: int, value: str, end: float) -> Dict[str, Any]:
        config = self.config
        variable: str = config["variable"]
        env = with_metrics_file(dict(os.environ), self.workdir, SWEEP_METRICS_FILE % index)
        env[variable] = value
        out = os.path.join(self.workdir, SWEEP_RUN_OUTPUT % index)
        record: Dict[str, Any] = {"index": index, "value": value}
        cap = MetricsFile(self.workdir, WORKLOAD_METRICS_MAX_BYTES, SWEEP_METRICS_FILE % index)
        try:
            child = Child(
                argv_for(list(config["command"]), variable, value),
                config["cwd"],
                out + ".stdout",
                out + ".stderr",
                env,
            )
        except (OSError, ValueError) as exc:
            record.update({"status": "failed", "reason": "cannot start: %s" % exc})
            return record
        record["started_at_device"] = child.started_at
        ended_by = "itself"
        stop_from: Optional[float] = None
        capped_at = time.time() + CAP_CHECK_S
        while not child.exited() or child.group_alive():
            now = time.time()
            if stop_from is None and not child.exited():
                if self.stop_requested is not None:
                    stop_from, ended_by = now, "stopped"
                elif now >= end:
                    stop_from, ended_by = now, "slot end"
            if stop_from is not None:
                self._stop_step(child, now, stop_from)
            elif child.exited():  # the leader ended by itself; its group is ended too
                child.send(signal.SIGTERM, group=True)
                if now >= child.sent["SIGTERM(group)"] + KILL_AFTER_S:
                    child.send(signal.SIGKILL, group=True)
            if now >= capped_at:
                cap.enforce()
                capped_at = now + CAP_CHECK_S
            time.sleep(POLL_S)
        cap.enforce()
        for stream in (".stdout", ".stderr"):
            keep_tail(out + stream)
        record.update(
            {
                "status": "ok",
                "ended_by": ended_by,
                "exit_code": child.exit_code,
                "stopped_at_device": child.stopped_at,
                "cpu_s": child.cpu_s,
                "signals_sent": child.signals_sent(),
                "metrics": cap.entry(),
            }
        )
        return record

    @staticmethod
    def _stop_step(child: Child, now: float, stop_from: float) -> None:
        if child.exited():
            child.send(signal.SIGKILL, group=True)  # what the run left in its group
        elif now >= stop_from + TERM_AFTER_S + KILL_AFTER_S:
            child.send(signal.SIGKILL, group=True)
        elif now >= stop_from + TERM_AFTER_S:
            child.send(signal.SIGTERM, group=True)
        else:
            child.send(signal.SIGINT, group=True)

    def _write(self) -> None:
        config = self.config
        write_json(
            os.path.join(self.workdir, SWEEP_FILE),
            {
                "schema": SWEEP_SCHEMA,
                "variable": config["variable"],
                "values": list(config["values"]),
                "slot_s": config["slot_s"],
                "t0_device": config["t0"],
                "runs": self.runs,
            },
        )


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: sweep CONFIG_FILE\n")
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        config = json.load(handle)
    return Supervisor(config).run()
