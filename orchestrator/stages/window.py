"""Complete windows: whether a host measured the whole window it was asked to.

A host that started late, whose measurement was cut short, or whose probe repetitions ran
shorter than asked did not measure what its peers did: comparing its figures with theirs
(or with a baseline) judges the truncation, not the device. More than the campaign's
``limits.max_window_loss_pct`` lost makes the host ``incomplete``: report.json's
``hosts[].incomplete`` is then a short reason, the host is ``partial``, and the nightly
check neither flags nor baselines it. Pure functions over the manifest and probe.json
(device output: untrusted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.values import mapping, number

# How a session's measurement may end and still be whole: at the deadline, a launched
# program that ended by itself without failing, a probe whose benchmarks all ran.
COMPLETE_ENDS = ("deadline", "target finished", "probe finished", "profilers finished")
PROFILERS_DONE = "profilers stopped"


def _all_profilers_ok(manifest: Mapping[str, Any]) -> bool:
    """Whether every profiler the session ran ended ``ok`` (none failed or was cut)."""
    entries = [mapping(e) for e in mapping(manifest.get("profilers")).values()]
    ran = [e for e in entries if e.get("status") != "skipped"]
    return bool(ran) and all(e.get("status") == "ok" for e in ran)


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def window_loss(manifest: Mapping[str, Any]) -> tuple[float, float, float, str | None] | None:
    """(window, late, cut, why it ended) in seconds from the manifest, or None when the
    manifest has no usable window. ``cut`` is the time between the measurement's end and
    the deadline when it ended some way other than a complete one."""
    t0, deadline = number(manifest.get("t0_device")), number(manifest.get("deadline_device"))
    if t0 is None or deadline is None or deadline <= t0:
        return None
    window = deadline - t0
    late = min(window, max(0.0, number(manifest.get("late_by_s")) or 0.0))
    ended_info = mapping(manifest.get("window"))
    why = ended_info.get("ended_by")
    why = why[:100] if isinstance(why, str) else None
    ended = number(ended_info.get("ended_at_device"))
    cut = 0.0
    if why == PROFILERS_DONE and _all_profilers_ok(manifest):
        # Each profiler ran its own course (py-spy's --duration counts its sampling ticks,
        # and a late sampler catches up in bursts: at 19 Hz on a 0.25-core board it was
        # done 4.7 s before the deadline with every tick it was asked for): a whole window.
        why = "profilers finished"
    if why is not None and why not in COMPLETE_ENDS and ended is not None:
        cut = max(0.0, deadline - max(ended, t0 + late))
    return window, late, cut, why


def probe_shortfalls(probe: Mapping[str, Any] | None, max_loss_pct: float) -> list[str]:
    """``cpu ran 1.35 s instead of 2 s`` for each benchmark whose budget fell short of
    the nominal time by more than the allowed share (a late start or a short window)."""
    if probe is None:
        return []
    nominal = number(probe.get("nominal_s"))
    if nominal is None or nominal <= 0:
        return []
    short = []
    for kind, section in sorted(mapping(probe.get("results")).items()):
        budget = number(mapping(section).get("budget_s"))
        if budget is None or budget < 0:
            continue
        if (nominal - budget) / nominal * 100.0 > max_loss_pct:
            short.append(f"{str(kind)[:20]} ran {budget:.2f} s instead of {nominal:g} s")
    return short


def incomplete_reason(
    manifest: Mapping[str, Any], probe: Mapping[str, Any] | None, max_loss_pct: float
) -> str | None:
    """None when the host measured the whole window (within ``max_loss_pct`` percent),
    else why not, e.g. ``started 10.7 s late in a 15 s window``."""
    reasons = []
    loss = window_loss(manifest)
    if loss is not None:
        window, late, cut, why = loss
        if (late + cut) / window * 100.0 > max_loss_pct:
            started = f"started {_seconds(late)} s late" if late >= 0.05 else ""
            if cut > 0:
                ended = f"cut short at +{_seconds(window - cut)} s of a {window:g} s window ({why})"
                reasons.append(f"{started} and {ended}" if started else ended)
            else:
                reasons.append(f"started {_seconds(late)} s late in a {window:g} s window")
    short = probe_shortfalls(probe, max_loss_pct)
    if short:
        reasons.append("probe repetitions cut short: " + ", ".join(short))
    return "; ".join(reasons) or None
