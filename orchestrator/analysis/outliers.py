"""Hosts that stand out from their group (pure).

The score is the robust z of Iglewicz and Hoaglin: ``0.6745 * (x - median) / MAD``, with
the median and the median absolute deviation taken over the group's hosts (the host
itself included, so one bad host cannot hide by moving the mean, as it would a standard
deviation). A host is an outlier when ``|z|`` reaches the campaign's
``compare.threshold`` (3.5 by default, their recommendation) on the side that hurts
(:mod:`orchestrator.analysis.directions`).

Four guards keep the score honest on real fleets:

- **The spread has a floor.** Identical boards running identical work differ by a
  fraction of a percent, so their MAD is close to zero and any wobble would score a huge
  z. The spread used is ``max(MAD, floor)``, where the floor is the largest of 5% of
  ``max(|median|, |x|)`` (a host has to be about 26% off its peers, 3.5 / 0.6745 x 5%,
  before a tight group flags it: beyond run-to-run noise of a CPU-bound loop, well within
  what a throttled or starved board shows), the metric's own noise floor from the
  direction table (100 ms of start lateness, 2 degrees, 1 MiB/s of I/O, ...), and an
  absolute epsilon. Taking the host's own value into the relative part keeps the score
  finite where the whole group reads the same number, zero included: with no spread
  ``z = 13.5 x (x - median) / max(|x|, |median|)``, so a host reading 101,302 B/s where
  its peers read 0 scores 13.5 (all of its value is the difference), not 7e10.
- **A value is no surer than its own repetitions.** Where the hosts' values are medians
  of repetitions (the probe's ``samples``), the spread is also floored at the typical
  standard error of those medians (:func:`noise_floor`): six identical hosts on a loaded
  machine, each measured with a 22% coefficient of variation, can land three of six
  within 2% of each other by chance, and that small MAD would flag a host 28% off as
  z = -3.8.
- **A large relative loss is flagged whatever the group's MAD.** Small groups on shared
  or noisy machines have a large, unstable MAD: with three peers spread from 1.5M to
  2.3M ops/s a host at a third of them scores only z = -1.8. For a higher-is-better metric
  (throughput, rates, clocks) the host is also scored against the median of its peers
  (the other hosts of its group) with the spread taken as 10% of that median,
  ``0.6745 * (x - peers) / (0.1 * peers)``, and flagged when that reaches the threshold
  (``rule: relative_loss``): at the default 3.5, a host at 48% of its peers or less
  (-4.4 at 35%), provided it also reads under 75% of its lowest peer (it stands alone:
  two hosts of four reading a fifth of the others, as a loaded test fleet's all-core
  probe did on identical boards, are not one host that lost). Identical hosts do not
  lose half their throughput to noise (see docs/check.md for the false-positive cost
  measured on real probe repetitions), while a throttled, starved or capped board is
  caught every time.
- **Small groups never flag.** With fewer than three hosts there is no majority to
  call normal; such groups are still summarised in ``groups[]``.

Function shares get the same treatment (py-spy's self %, and cProfile's own time as a % of
the host's profiled time, ``cprofile.tottime_pct``): each function's share on each host
against the group's per-host values, with a floor of 2 percentage points (a profile of a few
hundred samples moves a 45% function by about that much between runs), and only for
functions that matter (at least 5% self on the flagged host or on its peers' median).
The relative-loss rule does not apply to shares: a function taking less of a host's time
is not a loss.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.analysis.directions import HIGHER, SKIP, is_bad_side, rule_for

Z_FACTOR = 0.6745
RELATIVE_FLOOR = 0.05
ABSOLUTE_EPSILON = 1e-6
MIN_GROUP_HOSTS = 3
MIN_REPS = 3  # repetitions behind a host's value before their spread counts as noise
SHARE_FLOOR_PP = 2.0
SHARE_MIN_PCT = 5.0
SHARE_METRIC = "function.self_pct"
# cProfile's own time of a function as a % of the host's profiled time, compared the same way.
CPROFILE_SHARE_METRIC = "cprofile.tottime_pct"
# The relative-loss rule's spread: 10% of the peers' median, whatever the group's MAD
# (a loss of 3.5 / 0.6745 x 10% = 52% at the default threshold).
LOSS_SPREAD = 0.10
# ... and only for a host that stands alone below its peers: under this share of the
# lowest of them (a group where another peer reads nearly as low has no single host that
# lost, and on a loaded test fleet two of four identical hosts can read a fifth of the
# others on a probe whose workers started late).
LOSS_SEPARATION = 0.75
RULE_Z = "robust_z"
RULE_LOSS = "relative_loss"

FunctionKey = tuple[str, str | None]


@dataclass(frozen=True)
class Outlier:
    host: str
    group: str  # the group's key value (hw_model by default), "hw_model" in report.json
    metric: str
    value: float
    group_median: float
    robust_z: float
    kind: str = "metric"  # metric | function_share
    function: str | None = None
    file: str | None = None
    rule: str = RULE_Z  # robust_z | relative_loss: which rule flagged it
    peers_median: float | None = None  # the other hosts' median (metric outliers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "hw_model": self.group,
            "metric": self.metric,
            "value": self.value,
            "group_median": self.group_median,
            "robust_z": self.robust_z,
            "kind": self.kind,
            "function": self.function,
            "file": self.file,
            "rule": self.rule,
            "peers_median": self.peers_median,
        }


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    median = statistics.median(values)
    return median, statistics.median(abs(v - median) for v in values)


def spread_floor(median: float, metric_floor: float | None = None, value: float = 0.0) -> float:
    """The smallest spread ``value`` is compared with; see the module docstring."""
    scale = max(abs(median), abs(value))
    return max(RELATIVE_FLOOR * scale, metric_floor or 0.0, ABSOLUTE_EPSILON)


def noise_floor(repetitions: Iterable[Sequence[float]]) -> float:
    """The spread (in MAD units) that the hosts' own measurement noise alone gives: the
    median over the hosts with at least MIN_REPS repetitions of the standard error of
    their median (1.2533 x stdev / sqrt(n)), times 0.6745. A host's value can be no
    surer than that, however close its peers happened to land; 0 without repetitions."""
    errors = [
        1.2533 * statistics.stdev(reps) / math.sqrt(len(reps))
        for reps in repetitions
        if len(reps) >= MIN_REPS
    ]
    return Z_FACTOR * statistics.median(errors) if errors else 0.0


def robust_z(value: float, median: float, mad: float, floor: float = ABSOLUTE_EPSILON) -> float:
    return Z_FACTOR * (value - median) / max(mad, floor, ABSOLUTE_EPSILON)


def loss_z(metric: str, value: float, peers_median: float | None) -> float | None:
    """A higher-is-better metric's robust z against its peers' median with the spread
    taken as 10% of that median (-4.4 for a host at 35% of its peers); None where the
    rule does not apply (other directions, a peers' median that is not positive)."""
    if rule_for(metric).direction != HIGHER or peers_median is None or peers_median <= 0:
        return None
    return Z_FACTOR * (value - peers_median) / (LOSS_SPREAD * peers_median)


@dataclass(frozen=True)
class Score:
    robust_z: float
    rule: str | None  # the rule that flags it, None when it is not an outlier


def score(
    metric: str,
    value: float,
    values: Sequence[float],
    peers: Sequence[float],
    threshold: float,
    noise: float = 0.0,
) -> Score:
    """One host's value against its group's ``values`` (itself included) and its
    ``peers`` (the others): its robust z, and the rule that flags it, if any. ``noise``:
    the group's :func:`noise_floor` for the metric."""
    median, mad = median_mad(values)
    floor = max(spread_floor(median, rule_for(metric).floor, value), noise)
    z = robust_z(value, median, mad, floor)
    if abs(z) >= threshold and is_bad_side(metric, z):
        return Score(z, RULE_Z)
    loss = loss_z(metric, value, statistics.median(peers) if peers else None)
    if loss is not None and loss <= -threshold and value < LOSS_SEPARATION * min(peers):
        return Score(z, RULE_LOSS)
    return Score(z, None)


def metric_outliers(
    group: str,
    metrics: Mapping[str, Mapping[str, float]],
    threshold: float,
    samples: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> list[Outlier]:
    """``metrics``: host -> {metric: value} for the group's hosts that produced data;
    ``samples``: host -> {metric: repetitions} where the value is their median (probe)."""
    by_metric: dict[str, dict[str, float]] = {}
    for host, values in metrics.items():
        for name, value in values.items():
            by_metric.setdefault(name, {})[host] = value
    found = []
    for name in sorted(by_metric):
        values = by_metric[name]
        if rule_for(name).direction == SKIP or len(values) < MIN_GROUP_HOSTS:
            continue
        median = statistics.median(values.values())
        noise = noise_floor((samples or {}).get(h, {}).get(name, ()) for h in values)
        for host in sorted(values):
            peers = [v for h, v in values.items() if h != host]
            result = score(name, values[host], list(values.values()), peers, threshold, noise)
            if result.rule is not None:
                found.append(
                    Outlier(
                        host,
                        group,
                        name,
                        values[host],
                        round(median, 4),
                        round(result.robust_z, 2),
                        rule=result.rule,
                        peers_median=round(statistics.median(peers), 4),
                    )
                )
    return found


def function_share_outliers(
    group: str,
    shares: Mapping[str, Mapping[FunctionKey, float]],
    threshold: float,
    metric: str = SHARE_METRIC,
) -> list[Outlier]:
    """``shares``: host -> {(function, file): self %} for the group's hosts with a profile
    (``metric`` names the share: py-spy's self %, or cProfile's own time %).

    A function missing from a host's profile took 0% there. Either side counts: a
    function taking far more (a hot spot) or far less (work that moved elsewhere) of one
    host's time than of its peers' is worth a look.
    """
    if len(shares) < MIN_GROUP_HOSTS:
        return []
    candidates = {key for per_host in shares.values() for key, pct in per_host.items()}
    candidates = {
        key for key in candidates if any(s.get(key, 0.0) >= SHARE_MIN_PCT for s in shares.values())
    }
    hosts = sorted(shares)
    found = []
    for key in sorted(candidates, key=lambda k: (k[0], k[1] or "")):
        values = [shares[h].get(key, 0.0) for h in hosts]
        median, mad = median_mad(values)
        for host, value in zip(hosts, values, strict=True):
            z = robust_z(value, median, mad, spread_floor(median, SHARE_FLOOR_PP, value))
            if abs(z) < threshold:
                continue
            peers = statistics.median(v for h, v in zip(hosts, values, strict=True) if h != host)
            if value < SHARE_MIN_PCT and peers < SHARE_MIN_PCT:
                continue
            found.append(
                Outlier(
                    host,
                    group,
                    metric,
                    round(value, 2),
                    round(median, 2),
                    round(z, 2),
                    kind="function_share",
                    function=key[0],
                    file=key[1],
                )
            )
    return found


def severity(outliers: Sequence[Outlier]) -> dict[str, float]:
    """Per host, the largest |robust z| among its outliers."""
    worst: dict[str, float] = {}
    for item in outliers:
        worst[item.host] = max(worst.get(item.host, 0.0), abs(item.robust_z))
    return worst
