"""A session's status and one-line reason (``ok``, ``partial``, ``failed``, ``busy``), from
everything that happened in it; the manifest's ``status`` and ``reason``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, cast

from .contract import TRACEMALLOC

if TYPE_CHECKING:
    from .session import Session


def outcome(session: Session, profilers: Dict[str, Dict[str, Any]]) -> Tuple[str, Optional[str]]:
    """The session's status and one-line reason, from everything that happened."""
    if session.busy is not None:
        return "busy", session.busy.reason
    if session.failure:
        return "failed", session.failure
    planned = [(name, e) for name, e in profilers.items() if e["status"] != "skipped"]
    reasons: List[str] = [session.disk_stop[0]] if session.disk_stop else []
    if session.runner_error:
        reasons.append(session.runner_error)
    if session.probe is not None:
        # A probe session is ok when its benchmarks ran; profilers are extras.
        if not session.probe.ran():
            reasons.append(
                "no probe benchmark ran: "
                + ("; ".join(session.probe.problems()) or "nothing was measured")
            )
            return "failed", "; ".join(reasons)
        reasons.extend(session.probe.problems())
    elif not any(e["status"] in ("ok", "partial") for _, e in planned) and not inside_only(
        session, [name for name, _ in planned]
    ):
        reasons.append(
            "no profiler produced output: "
            + "; ".join("%s: %s" % (name, e["reason"]) for name, e in planned)
        )
        return "failed", "; ".join(reasons)
    if session.abort is not None:
        reasons.append(
            "runner stopped by %s at %s"
            % (session.abort[0], session.clock.since_t0(session.abort[1]))
        )
    target = session.target
    # A launched program that failed did so whenever it ended by itself; an attached
    # process that ended is news only well before the deadline.
    failed = (
        target.mode == "launch"
        and target.exited_at is not None
        and not target.stopped_by_runner
        and not target.finished()
    )
    if failed or (
        target.mode != "launch"
        and target.exited_at is not None
        and target.ended_early(session.clock.deadline)
    ):
        reasons.append(
            "target exited at %s%s"
            % (
                session.clock.since_t0(cast(float, target.exited_at)),
                " with code %d" % target.exit_code if target.exit_code is not None else "",
            )
        )
    reasons.extend(
        "%s %s: %s" % (name, e["status"], e["reason"]) for name, e in planned if e["status"] != "ok"
    )
    return ("partial", "; ".join(reasons)) if reasons else ("ok", None)


def inside_only(session: Session, names: List[str]) -> bool:
    """Whether the runner launched the program and every profiler that produced nothing
    lived inside it (cProfile, the tracemalloc hook): the program ran, and how it ended
    (killed, or gone before their first write) is why; the session is ``partial``, with
    the program's end and each profiler's reason, not ``failed``."""
    runs = [p for p in session.profilers if p.name in names]
    return (
        session.target.mode == "launch"
        and session.target.child is not None
        and bool(runs)
        and all(p.in_target or p.builtin == TRACEMALLOC for p in runs)
    )
