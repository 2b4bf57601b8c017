"""The Prometheus text exposition format (version 0.0.4), parsed on the device: what one
scrape of an endpoint says, reduced to what the campaign asked for.

Each kept metric family becomes one JSON-ready dict: ``{"type": ..., "v": value}`` for a
counter, gauge or untyped family (its samples summed over their label sets), plus ``"l"``:
``[[labels, value], ...]`` where the campaign keeps that family's labels;
``{"type": "histogram", "b": [[le, cumulative count], ...], "sum", "count"}`` (buckets
summed over label sets, ``le`` a number or ``"+Inf"``); ``{"type": "summary", "sum",
"count", "q": [[quantile, value], ...]}`` (``q`` only where the family has one label set:
quantiles of different series cannot be added). NaN and infinite values are skipped (JSON
has no word for them) and counted; ``<family>_created`` families, the creation times
prometheus_client adds beside its counters, histograms and summaries, are left out.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

# The metric name grammar (https://prometheus.io/docs/concepts/data_model/).
NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
MAX_NAME_CHARS = 200
MAX_LABEL_CHARS = 200  # a longer label value is cut, with "..."
SCALARS = ("counter", "gauge", "untyped")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class BadLine(ValueError):
    """A line that is not a sample, a comment or blank."""


_NAME_AT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# One label pair from where the last one ended: name, its quoted value (escapes kept for
# _unescape), and what follows: a comma or the closing brace.
_PAIR = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|\})')
_CLOSE = re.compile(r"[ \t]*\}")
_ESCAPE = re.compile(r"\\(.)")


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), value)


def parse_labels(line: str, start: int) -> Tuple[Dict[str, str], int]:
    """The labels of ``line`` from ``start`` (just after ``{``) -> (labels, index after
    ``}``). Values may hold ``\\\\``, ``\\"`` and ``\\n``; a trailing comma is allowed."""
    labels: Dict[str, str] = {}
    i = start
    while True:
        close = _CLOSE.match(line, i)
        if close:
            return labels, close.end()
        pair = _PAIR.match(line, i)
        if pair is None:
            raise BadLine("labels outside the grammar")
        value = _unescape(pair.group(2))
        if len(value) > MAX_LABEL_CHARS:
            value = value[: MAX_LABEL_CHARS - 3] + "..."
        labels[pair.group(1)] = value
        i = pair.end()
        if pair.group(3) == "}":
            return labels, i


def parse_value(text: str) -> float:
    """A sample value: a float, ``NaN``, ``+Inf``, ``-Inf``."""
    try:
        return float(text)
    except ValueError:
        raise BadLine("not a number") from None


class Exposition:
    """One scrape's text reduced to the kept families (see the module's docstring).

    ``keep(name)``: whether a family is wanted; ``labelled(name)``: whether its label sets
    are kept apart. At most ``max_metrics`` families are kept (the first in the text), at
    most ``max_series`` labelled series in all, at most ``max_lines`` lines read."""

    def __init__(
        self,
        keep: Callable[[str], bool],
        labelled: Callable[[str], bool],
        max_metrics: int,
        max_series: int,
        max_lines: int,
    ) -> None:
        self.keep = keep
        self.labelled = labelled
        self.max_metrics = max_metrics
        self.max_series = max_series
        self.max_lines = max_lines
        self.types: Dict[str, str] = {}
        self.metrics: Dict[str, Dict[str, Any]] = {}
        self.samples = 0  # sample lines read (kept or not)
        self.bad_lines = 0
        self.not_finite = 0  # NaN or infinite values skipped
        self.over_metrics = 0  # families left out: max_metrics reached
        self.over_series = 0  # labelled series summed only: max_series reached
        self.lines_cut = False  # the text had more than max_lines lines
        self._series = 0
        self._wanted: Dict[str, bool] = {}
        self._family_of: Dict[str, Tuple[str, str, str]] = {}
        self._label_sets: Dict[str, int] = {}
        self._buckets: Dict[str, Dict[str, float]] = {}

    def feed(self, text: str) -> Exposition:
        lines = text.split("\n")
        if len(lines) > self.max_lines:
            self.lines_cut = True
            lines = lines[: self.max_lines]
        for raw in lines:
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                self._comment(line)
                continue
            try:
                self._sample(line)
            except BadLine:
                self.bad_lines += 1
        self._finish()
        return self

    def _comment(self, line: str) -> None:
        parts = line.split(None, 3)
        if len(parts) >= 4 and parts[1] == "TYPE" and NAME_RE.match(parts[2]):
            kind = parts[3].strip()
            self.types.setdefault(
                parts[2],
                kind if kind in ("counter", "gauge", "histogram", "summary") else "untyped",
            )

    def _family(self, name: str) -> Tuple[str, str, str]:
        """(family, its type, the sample's part: value, bucket, sum, count or created)."""
        found = self._family_of.get(name)
        if found is None:
            found = self._family_of[name] = self._find_family(name)
        return found

    def _find_family(self, name: str) -> Tuple[str, str, str]:
        kind = self.types.get(name)
        if kind is not None and kind != "histogram":
            return name, kind, "value"
        for suffix in ("_bucket", "_sum", "_count", "_created", "_total"):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                base_kind = self.types.get(base)
                if base_kind in ("histogram", "summary") and suffix != "_total":
                    return base, base_kind, suffix[1:]
                if base_kind == "counter" and suffix in ("_total", "_created"):
                    return base, base_kind, "value" if suffix == "_total" else "created"
        return name, kind or "untyped", "value"

    def _creation_time(self, name: str) -> bool:
        """``x_created`` beside a counter ``x_total``/``x``, a histogram or a summary."""
        if not name.endswith("_created"):
            return False
        base = name[: -len("_created")]
        return self.types.get(base) in ("counter", "histogram", "summary") or (
            self.types.get(base + "_total") == "counter"
        )

    def _wants(self, family: str) -> bool:
        wanted = self._wanted.get(family)
        if wanted is None:
            wanted = (
                len(family) <= MAX_NAME_CHARS
                and NAME_RE.match(family) is not None
                and not self._creation_time(family)
                and self.keep(family)
            )
            if wanted and len(self.metrics) >= self.max_metrics:
                self.over_metrics += 1
                wanted = False
            self._wanted[family] = wanted
        return wanted

    def _sample(self, line: str) -> None:
        found = _NAME_AT.match(line)
        if found is None or (found.end() < len(line) and line[found.end()] not in "{ \t"):
            raise BadLine("not a metric name")
        name, rest = found.group(), found.end()
        family, kind, part = self._family(name)
        if part == "created" or not self._wants(family):
            # Not kept: only checked to end in a number (its value or its timestamp).
            parse_value(line.rsplit(None, 1)[-1])
            self.samples += 1
            return
        labels: Dict[str, str] = {}
        if rest < len(line) and line[rest] == "{":
            labels, rest = parse_labels(line, rest + 1)
        fields = line[rest:].split()
        if not fields or len(fields) > 2:
            raise BadLine("not one value (and a timestamp)")
        value = parse_value(fields[0])
        self.samples += 1
        if not math.isfinite(value):
            self.not_finite += 1
            return
        metric = self.metrics.setdefault(family, {"type": kind})
        if kind == "histogram":
            self._histogram(metric, family, part, labels, value)
        elif kind == "summary":
            self._summary(metric, family, part, labels, value)
        else:
            metric["v"] = metric.get("v", 0.0) + value
            if labels and self.labelled(family):
                if self._series >= self.max_series:
                    self.over_series += 1
                else:
                    self._series += 1
                    metric.setdefault("l", []).append([labels, value])

    def _histogram(
        self, metric: Dict[str, Any], family: str, part: str, labels: Dict[str, str], value: float
    ) -> None:
        if part == "bucket":
            le = labels.get("le")
            if le is None:
                raise BadLine("a bucket without le")
            bound = parse_value(le)
            key = "+Inf" if bound == math.inf else repr(bound)
            buckets = self._buckets.setdefault(family, {})
            buckets[key] = buckets.get(key, 0.0) + value
        elif part in ("sum", "count"):
            metric[part] = metric.get(part, 0.0) + value

    def _summary(
        self, metric: Dict[str, Any], family: str, part: str, labels: Dict[str, str], value: float
    ) -> None:
        if part in ("sum", "count"):
            metric[part] = metric.get(part, 0.0) + value
            if part == "count":
                self._label_sets[family] = self._label_sets.get(family, 0) + 1
            return
        quantile = labels.get("quantile")
        if quantile is None:
            raise BadLine("a summary sample without quantile")
        metric.setdefault("q", []).append([parse_value(quantile), value])

    def _finish(self) -> None:
        for family, buckets in self._buckets.items():
            ordered = sorted(
                buckets.items(), key=lambda kv: math.inf if kv[0] == "+Inf" else float(kv[0])
            )
            self.metrics[family]["b"] = [
                [le if le == "+Inf" else float(le), count] for le, count in ordered
            ]
        for family, sets in self._label_sets.items():
            if sets > 1:
                self.metrics[family].pop("q", None)

    def counts(self) -> Dict[str, Any]:
        """What the scrape's record says besides the metrics."""
        out: Dict[str, Any] = {"samples": self.samples}
        for key, value in (
            ("bad_lines", self.bad_lines),
            ("not_finite", self.not_finite),
            ("over_metrics", self.over_metrics),
            ("over_series", self.over_series),
        ):
            if value:
                out[key] = value
        if self.lines_cut:
            out["lines_cut"] = True
        return out


def parse(
    text: str,
    keep: Callable[[str], bool] = lambda name: True,
    labelled: Callable[[str], bool] = lambda name: False,
    max_metrics: int = 100,
    max_series: int = 100,
    max_lines: int = 100000,
) -> Exposition:
    """``text`` (one scrape) -> its kept families (see :class:`Exposition`)."""
    return Exposition(keep, labelled, max_metrics, max_series, max_lines).feed(text)


def regex_filter(patterns: Optional[List[str]]) -> Callable[[str], bool]:
    """Whether a family name fully matches one of ``patterns`` (None: every name)."""
    if patterns is None:
        return lambda name: True
    compiled = [re.compile(p) for p in patterns]
    return lambda name: any(c.fullmatch(name) for c in compiled)
