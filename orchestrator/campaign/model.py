"""The campaign model: one validated, frozen ``Campaign`` and its parts (target, start,
compare, check, limits); the profilers' own settings are in profiler_specs. The
reference for the format is docs/campaigns.md.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PlainValidator,
    PrivateAttr,
    model_validator,
)

from fleetprof_device.contract import PROBE_KINDS
from fleetprof_device.contract import PROBE_MAX_REPS as MAX_PROBE_REPEATS
from fleetprof_device.contract import PROBE_REPS as DEFAULT_PROBE_REPEATS
from orchestrator.campaign.profiler_specs import (
    ProfilersSpec,
    check_metric_names,
    default_profilers,
)
from orchestrator.campaign.validators import (
    DEFAULT_LEAD_S,
    DEFAULT_MIN_FREE_MB,
    AbsolutePath,
    Argv,
    CampaignName,
    Duration,
    EnvName,
    Lead,
    Pid,
    Spec,
    SweepValues,
    WorkloadDirection,
    WorkloadName,
    check_hosts,
    check_regex,
    describe,
    duration_check,
    exactly_one,
    int_check,
    invalid,
    parse_duration,
    positive_number,
)


class StartSpec(Spec):
    """When the coordinated session starts: T0 = now (on the controller) + lead."""

    lead_s: Lead = Field(
        default=DEFAULT_LEAD_S, validation_alias="lead", serialization_alias="lead"
    )


class AttachSpec(Spec):
    """Profile a process that is already running; exactly one way to find it."""

    process: Annotated[str, PlainValidator(check_regex)] | None = None
    pid: Pid | None = None
    pidfile: AbsolutePath | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_way(cls, data: Any) -> Any:
        exactly_one(cls, data, ("process", "pid", "pidfile"), "to find the process")
        return data


class SweepSpec(Spec):
    """Run the command once per value of one variable, each in its own slot of the window."""

    variable: EnvName
    values: SweepValues
    # Each run's time; the window split equally among the values when not given.
    each_s: Duration | None = Field(
        default=None, validation_alias="each", serialization_alias="each"
    )


class LaunchSpec(Spec):
    """Start the program under the profiler for the session."""

    command: Argv
    cwd: AbsolutePath | None = None
    env: dict[EnvName, str] = Field(default_factory=dict)
    # The workload's own metrics (FLEETPROF_METRICS_FILE) and which way is better for each:
    # outliers and the nightly check judge only the worse side of a named one.
    metrics: dict[WorkloadName, WorkloadDirection] = Field(default_factory=dict)
    # A benchmark sweep: the command once per value, the value in the environment variable
    # and in place of {VARIABLE} in the arguments.
    sweep: SweepSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_env(cls, data: Any) -> Any:
        if isinstance(data, dict) and "env" in data and data["env"] is None:
            data = {k: v for k, v in data.items() if k != "env"}
        return data


def _check_probe(value: object) -> list[str]:
    allowed = ", ".join(PROBE_KINDS)
    if not isinstance(value, list) or not value:
        shown = "an empty list" if value == [] else describe(value)
        raise invalid(f"expected a non-empty list of benchmarks ({allowed}), got {shown}")
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, str) or item not in PROBE_KINDS:
            raise invalid(f"expected one of {allowed}, got {describe(item)}", index)
        if item in seen:
            raise invalid(f"{item} is listed twice; each benchmark runs once", index)
        seen.add(item)
    return list(value)


def _check_host_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise invalid(f"expected an inventory host name, got {describe(value)}")
    return value


class TargetSpec(Spec):
    attach: AttachSpec | None = None
    launch: LaunchSpec | None = None
    # Run fixed micro-benchmarks instead of profiling a process (see docs/campaigns.md).
    probe: Annotated[list[str], PlainValidator(_check_probe)] | None = None
    # How many repetitions each probe measurement is split into: a distribution per host
    # for the nightly check's tests (probe targets only).
    repeats: (
        Annotated[
            int,
            int_check(2, MAX_PROBE_REPEATS, f"an integer from 2 to {MAX_PROBE_REPEATS}"),
        ]
        | None
    ) = None

    # The network probe's peer: an inventory host the others measure against (default:
    # the controller).
    network_peer: Annotated[str, PlainValidator(_check_host_name)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _peer_for_network(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("network_peer") is not None:
            probe = data.get("probe")
            if not (isinstance(probe, list) and "network" in probe):
                raise invalid(
                    "network_peer applies to a network probe only (target.probe: [network])",
                    "network_peer",
                )
        return data

    @model_validator(mode="before")
    @classmethod
    def _repeats_for_probe(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("repeats") is not None and data.get("probe") is None:
            raise invalid("repeats applies to a probe target only (target.probe)", "repeats")
        return data

    @property
    def probe_repeats(self) -> int:
        return self.repeats if self.repeats is not None else DEFAULT_PROBE_REPEATS

    @model_validator(mode="before")
    @classmethod
    def _one_mode(cls, data: Any) -> Any:
        modes: tuple[str, ...] = ("attach", "launch")
        if isinstance(data, dict) and "probe" in data:
            if data["probe"] is None and all(data.get(mode) is None for mode in modes):
                raise invalid(
                    f"expected a non-empty list of benchmarks ({', '.join(PROBE_KINDS)}), got null",
                    "probe",
                )
            if data["probe"] is not None:
                modes = ("attach", "launch", "probe")
                where = "(profile a running process, start one or run benchmarks)"
                exactly_one(cls, data, modes, where)
                return data
        if isinstance(data, dict) and all(data.get(mode) is None for mode in modes):
            nulls = [mode for mode in modes if mode in data]
            if len(nulls) == 1:  # `attach:` with nothing under it
                raise invalid("expected a mapping, got null (see docs/campaigns.md)", nulls[0])
        exactly_one(cls, data, modes, "(profile a running process or start one)")
        return data

    @property
    def mode(self) -> Literal["attach", "launch", "probe"]:
        if self.probe is not None:
            return "probe"
        return "attach" if self.attach is not None else "launch"


_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
DEFAULT_OUTLIER_THRESHOLD = 3.5


def _check_group_by(value: object) -> str:
    if not isinstance(value, str) or not _VAR_NAME_RE.fullmatch(value):
        raise invalid(
            "expected hw_model, arch, or the name of an inventory variable (letters, digits "
            f"and _), got {describe(value)}"
        )
    return value


class CompareSpec(Spec):
    """How hosts are grouped and when one stands out from its group."""

    # hw_model (default), arch, or any inventory variable (hostvar) of the hosts.
    group_by: Annotated[str, PlainValidator(_check_group_by)] = "hw_model"
    # Robust z-score (0.6745 * (x - median) / MAD) beyond which a host is an outlier.
    threshold: Annotated[float, positive_number("a positive number (robust z)")] = (
        DEFAULT_OUTLIER_THRESHOLD
    )


DEFAULT_REGRESSION_PCT = 10.0
DEFAULT_CHECK_ALPHA = 0.05
DEFAULT_CHECK_HISTORY = 14


def _check_alpha(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise invalid(f"expected a false discovery rate between 0 and 1, got {describe(value)}")
    return float(value)


class ConfirmSpec(Spec):
    """Re-measure the flagged hosts alone before reporting them (fleetprof check)."""

    enabled: bool = True
    # The re-measure's window; the campaign's duration when not given.
    duration_s: Duration | None = Field(
        default=None, validation_alias="duration", serialization_alias="duration"
    )


class CheckSpec(Spec):
    """How `fleetprof check` judges each host against its own baseline (docs/check.md)."""

    # Metrics to test against the baseline; by default every metric with repetitions
    # behind it (the probe's).
    metrics: Annotated[list[str], PlainValidator(check_metric_names)] | None = None
    # The smallest change, in percent of the baseline, that counts as a regression.
    regression_pct: Annotated[float, positive_number("a positive percentage")] = (
        DEFAULT_REGRESSION_PCT
    )
    # False discovery rate controlled across every host x metric tested.
    alpha: Annotated[float, PlainValidator(_check_alpha)] = DEFAULT_CHECK_ALPHA
    confirm: ConfirmSpec = Field(default_factory=ConfirmSpec)
    # How many past checks the stability figures and trend charts look back on.
    history: Annotated[int, int_check(2, 365, "an integer from 2 to 365 (checks)")] = (
        DEFAULT_CHECK_HISTORY
    )


def _check_mib(value: object) -> float:
    expected = "a number of MiB, 0 or more"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"expected {expected}, got {describe(value)}")
    if not math.isfinite(value) or value < 0:
        raise invalid(f"expected {expected}, got {value}")
    return float(value)


DEFAULT_GRACE_S = 10.0
MAX_GRACE_S = 60.0
# A host whose measurement lost more than this share of the window (a late start, a cut
# end, probe repetitions shorter than asked) is incomplete: partial, and not judged.
DEFAULT_MAX_WINDOW_LOSS_PCT = 10.0
MAX_WINDOW_LOSS_PCT = 90.0


def _check_loss_pct(value: object) -> float:
    expected = f"a percentage of the window from 0 to {MAX_WINDOW_LOSS_PCT:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"expected {expected}, got {describe(value)}")
    if not math.isfinite(value) or not 0 <= value <= MAX_WINDOW_LOSS_PCT:
        raise invalid(f"expected {expected}, got {value}")
    return float(value)


class LimitsSpec(Spec):
    """What a session may take from a device.

    ``min_free_mb``: the disk floor, in MiB free on the filesystem of the session's work
    directory. Below it the runner starts nothing (the host fails, saying free vs floor);
    falling below it during the window, it stops every profiler early and the host is
    partial. 0 turns the floor off.

    ``grace``: after the deadline, how long profilers get to stop and flush before the
    runner kills whatever is left (the device's own bound; a hung device holds the
    controller about 30 s more, see docs/faults.md).

    ``max_window_loss_pct``: how much of the measurement window a host may lose (started
    late, cut short, probe repetitions shorter than asked) and still count as complete;
    beyond it the host is ``partial`` with report.json's ``incomplete`` saying why.
    """

    min_free_mb: Annotated[float, PlainValidator(_check_mib)] = DEFAULT_MIN_FREE_MB
    grace_s: Annotated[float, duration_check(0.0, MAX_GRACE_S, zero_ok=False)] = Field(
        default=DEFAULT_GRACE_S, validation_alias="grace", serialization_alias="grace"
    )
    max_window_loss_pct: Annotated[float, PlainValidator(_check_loss_pct)] = (
        DEFAULT_MAX_WINDOW_LOSS_PCT
    )


class Campaign(Spec):
    """One profiling campaign, as validated from its YAML file."""

    name: CampaignName
    hosts: Annotated[str, PlainValidator(check_hosts)] = "all"
    duration_s: Duration = Field(validation_alias="duration", serialization_alias="duration")
    start: StartSpec = Field(default_factory=StartSpec)
    target: TargetSpec
    profilers: ProfilersSpec = Field(default_factory=default_profilers)
    compare: CompareSpec = Field(default_factory=CompareSpec)
    check: CheckSpec = Field(default_factory=CheckSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)

    _source: Path = PrivateAttr(default=Path("<mapping>"))

    @model_validator(mode="before")
    @classmethod
    def _null_start(cls, data: Any) -> Any:
        if isinstance(data, dict) and "start" in data and data["start"] is None:
            data = {k: v for k, v in data.items() if k != "start"}
        return data

    @model_validator(mode="before")
    @classmethod
    def _sweep_fits(cls, data: Any) -> Any:
        """A sweep's runs of ``each`` must fit in the window, one after the other."""
        try:
            sweep = data["target"]["launch"]["sweep"]
            runs = len(sweep["values"])
            each, duration = parse_duration(sweep["each"]), parse_duration(data["duration"])
        except (KeyError, TypeError, ValueError):
            return data  # missing or malformed: the field's own check says so
        if each * runs > duration + 1e-9:
            raise invalid(
                f"{runs} values x {sweep['each']} do not fit in the duration "
                f"({data['duration']}): shorten each or lengthen duration",
                "target",
                "launch",
                "sweep",
                "each",
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def _probe_profilers(cls, data: Any) -> Any:
        # A probe target has no process: no profiler is needed (py-spy is not the
        # default), and `profilers:` omitted, null or {} means none.
        target = data.get("target") if isinstance(data, dict) else None
        if (
            isinstance(target, dict)
            and target.get("probe") is not None
            and data.get("profilers") in (None, {})
        ):
            data = {**data, "profilers": ProfilersSpec.model_construct()}
        return data

    @property
    def workload_directions(self) -> dict[str, str]:
        """The launched program's own metrics and which way is better for each
        (``target.launch.metrics``); empty for other targets."""
        launch = self.target.launch
        return dict(launch.metrics) if launch is not None else {}

    @property
    def sweep_values(self) -> tuple[str, list[str]] | None:
        """A sweep campaign's variable and values (``target.launch.sweep``); else None."""
        launch = self.target.launch
        if launch is None or launch.sweep is None:
            return None
        return launch.sweep.variable, list(launch.sweep.values)

    @property
    def source(self) -> Path:
        """The file this campaign was loaded from (``<mapping>`` when built from a dict)."""
        return self._source

    @classmethod
    def from_mapping(cls, data: Any, source: str | Path = "<mapping>") -> Campaign:
        """Validate already-parsed campaign data (YAML keys), as load_campaign does for a
        file. Raises CampaignError whose lines start with ``source``."""
        # messages names the models it explains: imported here, not at the top.
        from orchestrator.campaign.messages import validate

        return validate(data, str(source), Path(source), None)
