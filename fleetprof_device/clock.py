"""The session's times: T0 and the deadline on the device clock, and the controller's offset."""

from __future__ import annotations

from typing import Any, Dict, Optional


class Clock:
    """The session's times: T0 and the deadline on the device clock, and the offset."""

    def __init__(self, plan: Dict[str, Any]) -> None:
        self.t0 = float(plan["t0_device"])
        self.deadline = float(plan["deadline_device"])
        self.grace = float(plan["grace_s"])
        self.offset = float(plan["clock_offset_s"])
        self.hard_deadline = self.deadline + self.grace

    def controller(self, device_time: Optional[float]) -> Optional[float]:
        return None if device_time is None else round(device_time - self.offset, 6)

    def since_t0(self, device_time: float) -> str:
        return "%+.1f s" % (device_time - self.t0)
