"""py-spy's own words about how well it sampled, read in one place: the runner keeps them
in the manifest (``data_quality``) and the controller's py-spy parser reads them back.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

BEHIND_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|\xb5s|us|ms|s) behind in sampling")
SAMPLES_RE = re.compile(r"Samples: ([0-9]+) Errors: ([0-9]+)")
LAG_UNITS = {"ns": 1e-9, "\xb5s": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def sampling_quality(paths: List[str], argv: List[str], ran_s: Optional[float]) -> Dict[str, Any]:
    """py-spy's own words about how well it sampled (it prints them on stdout).

    "1.23s behind in sampling" lines are counted (with the largest lag); the final
    "Samples: N Errors: M" is kept as said. N counts thread samples (one per kept thread
    per tick), not ticks, so it is no sampling rate: the controller counts ticks from the
    folded stacks' thread frames. "Stopped sampling because process exited" says the
    target ended while py-spy sampled it.
    """
    behind = 0
    max_lag = 0.0
    exited = False
    samples: Optional[int] = None
    errors: Optional[int] = None
    for line in _lines(paths):
        match = BEHIND_RE.search(line)
        if match:
            behind += 1
            max_lag = max(max_lag, float(match.group(1)) * LAG_UNITS[match.group(2)])
        match = SAMPLES_RE.search(line)
        if match:
            samples, errors = int(match.group(1)), int(match.group(2))
        exited = exited or "Stopped sampling because process exited" in line
    quality: Dict[str, Any] = {
        "behind_warnings": behind,
        "max_lag_s": round(max_lag, 3) if behind else None,
    }
    if samples is not None:
        quality["samples"], quality["errors"] = samples, errors
    if exited:
        quality["target_exited"] = True
    if ran_s:
        quality["ran_s"] = round(ran_s, 3)
    rate = option_value(argv, ("--rate", "-r"))
    if rate is not None:
        quality["requested_rate_hz"] = rate
    return quality


def _lines(paths: List[str]) -> Iterator[str]:
    for path in paths:
        try:
            with open(path, "rb") as handle:
                for raw in handle:
                    yield raw.decode("utf-8", "replace")
        except OSError:
            continue


def option_value(argv: Sequence[Any], names: Tuple[str, ...]) -> Optional[float]:
    """The number a py-spy argv gives an option (``--rate 97`` or ``--rate=97``), or None.
    The controller reads manifests with it too: argv is device data, anything may be in it."""
    for index, arg in enumerate(argv):
        value = None
        if arg in names and index + 1 < len(argv):
            value = argv[index + 1]
        elif (
            isinstance(arg, str)
            and arg.startswith("--")
            and arg.split("=", 1)[0] in names
            and "=" in arg
        ):
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None
