"""The campaign model and its loading: one YAML file -> one validated, frozen ``Campaign``.

Every problem with a campaign file becomes a ``CampaignError`` whose text names the file,
the line and column where they can be found, the key path and what was expected; pydantic's
own messages never reach the user. The reference for the format is docs/campaigns.md.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fleetprof_device.contract import MAX_SAMPLE_INTERVAL_S as MAX_INTERVAL_S
from fleetprof_device.contract import MIN_SAMPLE_INTERVAL_S as MIN_INTERVAL_S
from fleetprof_device.contract import PROBE_KINDS
from fleetprof_device.contract import PROBE_MAX_REPS as MAX_PROBE_REPEATS
from fleetprof_device.contract import PROBE_REPS as DEFAULT_PROBE_REPEATS

__all__ = [
    "AttachSpec",
    "Campaign",
    "CampaignError",
    "CompareSpec",
    "IotopSpec",
    "LaunchSpec",
    "LimitsSpec",
    "MemorySpec",
    "NcuSpec",
    "NsysSpec",
    "NvidiaSmiSpec",
    "ProfilersSpec",
    "PySpySpec",
    "StartSpec",
    "SystemSpec",
    "TargetSpec",
    "TegrastatsSpec",
    "load_campaign",
    "parse_duration",
]

MAX_DURATION_S = 24 * 3600.0
MAX_LEAD_S = 3600.0
DEFAULT_LEAD_S = 5.0
# A prime, so sampling does not lock step with periodic work (frame loops, timers).
DEFAULT_PYSPY_RATE = 97
MAX_PYSPY_RATE = 1000
# Samplers (system, iotop): finer than 100 ms costs more than it tells (MIN_INTERVAL_S and
# MAX_INTERVAL_S are the contract's, fleetprof_device/contract.py: the device checks the same).
DEFAULT_INTERVAL_S = 1.0
# A target whose memory grows faster than this (MB per minute) is flagged as a likely leak.
DEFAULT_LEAK_MB_PER_MIN = 1.0
# Campaign files are a screenful of YAML; anything this big is the wrong file.
MAX_FILE_BYTES = 1024 * 1024
# The device-side runner keeps at least this much free (MiB) on its workdir's filesystem.
DEFAULT_MIN_FREE_MB = 200.0

_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METRIC_RE = re.compile(r"[A-Za-z0-9_.]{1,200}")
_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
_PLAIN_SECONDS_RE = re.compile(rf"(?:{_NUMBER})")
# Units in falling order, each at most once: "1h30m", "1m30s", "500ms", "2m 15.5s".
_DURATION_RE = re.compile(
    rf"(?:(?P<h>{_NUMBER})h)?\s*"
    rf"(?:(?P<m>{_NUMBER})m(?!s))?\s*"
    rf"(?:(?P<s>{_NUMBER})s)?\s*"
    rf"(?:(?P<ms>{_NUMBER})ms)?"
)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_EXAMPLES = "like 30s, 2m, 1h, 1m30s, 500ms or a number of seconds"

# Pydantic's error type for every message written here; the text travels in ctx so that
# braces in user input are never taken for format fields.
_ERROR_TYPE = "fleetprof"

KeyPath = tuple[str | int, ...]


class CampaignError(Exception):
    """A campaign that cannot be used. ``str(err)`` is the whole user-facing message,
    one line per problem; ``problems`` holds the same lines."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# --- values ------------------------------------------------------------------------------


def parse_duration(value: str | int | float) -> float:
    """``"30s"``, ``"2m"``, ``"1h"``, ``"1m30s"``, ``"500ms"``, ``"45"``, ``45`` or ``0.5``
    -> seconds. Raises ValueError saying what was expected; ranges are the caller's."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration {_DURATION_EXAMPLES}, got {_describe(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value)
    else:
        raise ValueError(f"expected a duration {_DURATION_EXAMPLES}, got {_describe(value)}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {value}")
    if seconds < 0:
        raise ValueError(f"expected a duration that is not negative, got {value}")
    return seconds


def _parse_duration_text(text: str) -> float:
    stripped = text.strip()
    if _PLAIN_SECONDS_RE.fullmatch(stripped):
        return float(stripped)
    match = _DURATION_RE.fullmatch(stripped)
    if not stripped or match is None or not any(match.groupdict().values()):
        raise ValueError(f"expected a duration {_DURATION_EXAMPLES}, got {text!r}")
    return sum(
        float(amount) * _UNIT_SECONDS[unit]
        for unit, amount in match.groupdict().items()
        if amount is not None
    )


def _describe(value: object) -> str:
    """What the user wrote, in YAML words: 'a string ('97')', 'a list', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value:g})"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"a string ({shown!r})" if value else "an empty string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.datetime):
        return f"a timestamp ({value.isoformat()})"
    if isinstance(value, datetime.date):
        return f"a date ({value.isoformat()}; quote it if it is meant as text)"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, set):
        return "a set"
    return f"a {type(value).__name__}"


def _fail(message: str, *subpath: str | int, on_key: bool = False) -> PydanticCustomError:
    """An error for the translator: ``subpath`` points below where the validator runs."""
    return PydanticCustomError(
        _ERROR_TYPE, "{message}", {"message": message, "subpath": subpath, "on_key": on_key}
    )


def _check_name(value: object) -> str:
    expected = "1 to 64 letters, digits, '-' or '_' (the name is used in paths)"
    if not isinstance(value, str):
        raise _fail(f"expected {expected}, got {_describe(value)}")
    if not _NAME_RE.fullmatch(value):
        raise _fail(f"expected {expected}, got {value!r}")
    return value


def _check_hosts(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(
            f"expected an Ansible host pattern such as all, edge or 'jetson:&lab', "
            f"got {_describe(value)}"
        )
    return value


def _duration_check(low: float, high: float, *, zero_ok: bool) -> PlainValidator:
    def check(value: object) -> float:
        try:
            seconds = parse_duration(value)  # type: ignore[arg-type]  # checked inside
        except ValueError as err:
            raise _fail(str(err)) from None
        too_small = seconds < low if zero_ok else seconds <= low
        if too_small or seconds > high:
            bound = "0 or more" if zero_ok else "more than 0"
            raise _fail(f"expected a duration {bound} and at most {_human(high)}, got {value}")
        return seconds

    return PlainValidator(check)


def _interval_check(value: object) -> float:
    try:
        seconds = parse_duration(value)  # type: ignore[arg-type]  # checked inside
    except ValueError as err:
        raise _fail(str(err)) from None
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise _fail(
            f"expected a sampling interval from {MIN_INTERVAL_S:g}s to "
            f"{MAX_INTERVAL_S:g}s, got {value}"
        )
    return seconds


def _positive_number(expected: str) -> PlainValidator:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise _fail(f"expected {expected}, got {_describe(value)}")
        if not math.isfinite(value):
            raise _fail(f"expected {expected}, got {value}")
        return float(value)

    return PlainValidator(check)


def _human(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds:g}s"


def _int_check(low: int, high: int | None, expected: str) -> PlainValidator:
    def check(value: object) -> int:
        # bool is an int to Python; `rate: yes` is still not a rate.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(f"expected {expected}, got {_describe(value)}")
        if value < low or (high is not None and value > high):
            raise _fail(f"expected {expected}, got {value}")
        return value

    return PlainValidator(check)


def _check_regex(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(
            "expected a non-empty regular expression matched against the full command line, "
            f"got {_describe(value)}"
        )
    try:
        re.compile(value)
    except re.error as err:
        raise _fail(f"expected a valid Python regular expression, got {value!r}: {err}") from None
    except (OverflowError, RecursionError) as err:  # a{4294967296}; ((((...)))) too deep
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise _fail(f"expected a regular expression Python can compile, got one {reason}") from None
    return value


def _check_absolute(value: object) -> str:
    # Devices are POSIX; the controller's own OS does not decide what is absolute there.
    if not isinstance(value, str) or not PurePosixPath(value).is_absolute():
        shown = repr(value) if isinstance(value, str) else _describe(value)
        raise _fail(f"expected an absolute path (starting with /), got {shown}")
    return value


def _check_command(value: object) -> list[str]:
    if isinstance(value, str):
        try:
            suggestion = json.dumps(shlex.split(value)) if value.strip() else '["program", "arg"]'
        except ValueError:
            suggestion = '["program", "arg"]'
        raise _fail(
            "expected a list of arguments (argv), not a string: commands are never run "
            f"through a shell; write it as command: {suggestion}"
        )
    if not isinstance(value, list):
        raise _fail(f"expected a non-empty list of arguments (argv), got {_describe(value)}")
    if not value:
        raise _fail("expected a non-empty list of arguments (argv), got an empty list")
    for index, arg in enumerate(value):
        if not isinstance(arg, str):
            hint = f' (quote it: "{arg}")' if _is_number(arg) else ""
            raise _fail(f"expected a string, got {_describe(arg)}{hint}", index)
        if not arg:
            raise _fail("expected a non-empty string, got an empty string", index)
    return list(value)


def _check_env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME_RE.fullmatch(value):
        shown = repr(value) if isinstance(value, str) else _describe(value)
        raise _fail(
            "expected an environment variable name (letters, digits and _, not starting "
            f"with a digit), got {shown}",
            on_key=True,
        )
    return value


CampaignName = Annotated[str, PlainValidator(_check_name)]
Duration = Annotated[float, _duration_check(0.0, MAX_DURATION_S, zero_ok=False)]
Lead = Annotated[float, _duration_check(0.0, MAX_LEAD_S, zero_ok=True)]
Rate = Annotated[int, _int_check(1, MAX_PYSPY_RATE, f"an integer from 1 to {MAX_PYSPY_RATE} (Hz)")]
Pid = Annotated[int, _int_check(1, None, "a positive integer")]
Interval = Annotated[float, PlainValidator(_interval_check)]
LeakRate = Annotated[float, _positive_number("a positive number of MB per minute")]
AbsolutePath = Annotated[str, PlainValidator(_check_absolute)]
EnvName = Annotated[str, PlainValidator(_check_env_name)]
Argv = Annotated[list[str], PlainValidator(_check_command)]


# --- the model -----------------------------------------------------------------------------


class _Spec(BaseModel):
    # strict: "97" is not an int and 1 is not a string; forbid: a typo is an error, not
    # a silently ignored key. YAML keys that are not identifiers are validation aliases;
    # Python code may use the attribute names too, files never do (see _validate).
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )


def _yaml_keys(model: type[BaseModel]) -> dict[str, str]:
    """YAML key -> attribute name, in declaration order."""
    keys: dict[str, str] = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        keys[alias if isinstance(alias, str) else name] = name
    return keys


def _known_keys(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields) | set(_yaml_keys(model))


def _exactly_one(model: type[BaseModel], data: Any, choices: tuple[str, ...], where: str) -> None:
    """Raise unless exactly one of ``choices`` is given (null counts as not given).
    Skipped while unknown keys are present: the unknown-key message is the better hint
    (``atach`` for ``attach``)."""
    if not isinstance(data, dict) or not set(data) <= _known_keys(model):
        return
    given = [key for key in choices if data.get(key) is not None]
    if len(given) == 1:
        return
    wanted = ", ".join(choices[:-1]) + " or " + choices[-1]
    if not given:
        raise _fail(f"expected exactly one of {wanted} {where}, got none")
    raise _fail(f"expected exactly one of {wanted} {where}, got {' and '.join(given)}")


class StartSpec(_Spec):
    """When the coordinated session starts: T0 = now (on the controller) + lead."""

    lead_s: Lead = Field(
        default=DEFAULT_LEAD_S, validation_alias="lead", serialization_alias="lead"
    )


class AttachSpec(_Spec):
    """Profile a process that is already running; exactly one way to find it."""

    process: Annotated[str, PlainValidator(_check_regex)] | None = None
    pid: Pid | None = None
    pidfile: AbsolutePath | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_way(cls, data: Any) -> Any:
        _exactly_one(cls, data, ("process", "pid", "pidfile"), "to find the process")
        return data


class LaunchSpec(_Spec):
    """Start the program under the profiler for the session."""

    command: Argv
    cwd: AbsolutePath | None = None
    env: dict[EnvName, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _null_env(cls, data: Any) -> Any:
        if isinstance(data, dict) and "env" in data and data["env"] is None:
            data = {k: v for k, v in data.items() if k != "env"}
        return data


def _check_probe(value: object) -> list[str]:
    allowed = ", ".join(PROBE_KINDS)
    if not isinstance(value, list) or not value:
        shown = "an empty list" if value == [] else _describe(value)
        raise _fail(f"expected a non-empty list of benchmarks ({allowed}), got {shown}")
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, str) or item not in PROBE_KINDS:
            raise _fail(f"expected one of {allowed}, got {_describe(item)}", index)
        if item in seen:
            raise _fail(f"{item} is listed twice; each benchmark runs once", index)
        seen.add(item)
    return list(value)


class TargetSpec(_Spec):
    attach: AttachSpec | None = None
    launch: LaunchSpec | None = None
    # Run fixed micro-benchmarks instead of profiling a process (see docs/campaigns.md).
    probe: Annotated[list[str], PlainValidator(_check_probe)] | None = None
    # How many repetitions each probe measurement is split into: a distribution per host
    # for the nightly check's tests (probe targets only).
    repeats: (
        Annotated[
            int,
            _int_check(2, MAX_PROBE_REPEATS, f"an integer from 2 to {MAX_PROBE_REPEATS}"),
        ]
        | None
    ) = None

    @model_validator(mode="before")
    @classmethod
    def _repeats_for_probe(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("repeats") is not None and data.get("probe") is None:
            raise _fail("repeats applies to a probe target only (target.probe)", "repeats")
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
                raise _fail(
                    f"expected a non-empty list of benchmarks ({', '.join(PROBE_KINDS)}), got null",
                    "probe",
                )
            if data["probe"] is not None:
                modes = ("attach", "launch", "probe")
                where = "(profile a running process, start one or run benchmarks)"
                _exactly_one(cls, data, modes, where)
                return data
        if isinstance(data, dict) and all(data.get(mode) is None for mode in modes):
            nulls = [mode for mode in modes if mode in data]
            if len(nulls) == 1:  # `attach:` with nothing under it
                raise _fail("expected a mapping, got null (see docs/campaigns.md)", nulls[0])
        _exactly_one(cls, data, modes, "(profile a running process or start one)")
        return data

    @property
    def mode(self) -> Literal["attach", "launch", "probe"]:
        if self.probe is not None:
            return "probe"
        return "attach" if self.attach is not None else "launch"


class PySpySpec(_Spec):
    rate: Rate = DEFAULT_PYSPY_RATE
    native: bool = False
    idle: bool = False
    gil: bool = False
    subprocesses: bool = False
    # py-spy pauses the target at each sample unless told not to; not pausing can tear stacks.
    nonblocking: bool = False


class _SamplerSpec(_Spec):
    """A profiler that takes a sample every ``interval``."""

    interval_s: Interval = Field(
        default=DEFAULT_INTERVAL_S, validation_alias="interval", serialization_alias="interval"
    )


class SystemSpec(_SamplerSpec):
    """The runner's own sampler: CPU, memory, I/O of the system and the target, thermal."""


class IotopSpec(_SamplerSpec):
    """iotop in batch mode: per-process read/write rates."""


class MemorySpec(_Spec):
    """The target's RSS/PSS over the window: peak, growth slope, likely leaks."""

    leak_mb_per_min: LeakRate = DEFAULT_LEAK_MB_PER_MIN


class NvidiaSmiSpec(_SamplerSpec):
    """GPU utilization, memory, SM clock, temperature and power, from nvidia-smi."""


class TegrastatsSpec(_SamplerSpec):
    """Jetson boards' own sampler: RAM, CPU and GPU load and clocks, temperatures, power."""


NSYS_TRACES = ("cuda", "nvtx", "osrt", "cublas", "cudnn", "opengl", "vulkan")
NCU_SETS = ("basic", "detailed", "full")


def _check_traces(value: object) -> list[str]:
    allowed = ", ".join(NSYS_TRACES)
    if not isinstance(value, list) or not value:
        raise _fail(f"expected a non-empty list of traces ({allowed}), got {_describe(value)}")
    for index, item in enumerate(value):
        if item not in NSYS_TRACES:
            raise _fail(f"expected one of {allowed}, got {_describe(item)}", index)
    return list(dict.fromkeys(value))


def _check_metric_names(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _fail(f"expected a non-empty list of metric names, got {_describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _METRIC_RE.fullmatch(item):
            raise _fail(
                "expected a metric name (letters, digits, _ and .), such as "
                f"sm__throughput.avg.pct_of_peak_sustained_elapsed, got {_describe(item)}",
                index,
            )
    return list(value)


class NsysSpec(_Spec):
    """Nsight Systems (launch mode only: it starts the program; it cannot attach)."""

    trace: Annotated[list[str], PlainValidator(_check_traces)] = Field(
        default_factory=lambda: ["cuda", "nvtx", "osrt"]
    )
    # Also bring back the .nsys-rep report (within the size cap) for the Nsight GUI.
    keep_report: bool = False


class NcuSpec(_Spec):
    """Nsight Compute (launch mode only): per-kernel metrics for the kernels it matches."""

    kernel: Annotated[str, PlainValidator(_check_regex)] | None = None
    metrics: Annotated[list[str], PlainValidator(_check_metric_names)] | None = None
    set: Literal["basic", "detailed", "full"] | None = None
    launch_count: Annotated[int, _int_check(1, 10_000, "an integer from 1 to 10000")] = 20


class ProfilersSpec(_Spec):
    """Which profilers run and how; a profiler that is absent (None) does not run."""

    py_spy: PySpySpec | None = Field(
        default=None, validation_alias="py-spy", serialization_alias="py-spy"
    )
    system: SystemSpec | None = None
    iotop: IotopSpec | None = None
    memory: MemorySpec | None = None
    nvidia_smi: NvidiaSmiSpec | None = Field(
        default=None, validation_alias="nvidia-smi", serialization_alias="nvidia-smi"
    )
    tegrastats: TegrastatsSpec | None = None
    nsys: NsysSpec | None = None
    ncu: NcuSpec | None = None

    @model_serializer(mode="wrap")
    def _only_enabled(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A profiler that does not run is left out: in a campaign file `py-spy: null`
        # means "py-spy with its defaults", so a dump must not say null for "off".
        dumped: dict[str, Any] = handler(self)
        return {key: value for key, value in dumped.items() if value is not None}

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        available = ", ".join(_yaml_keys(cls))
        if data is None or (isinstance(data, dict) and not data):
            raise _fail(f"enable at least one profiler (available: {available})")
        if isinstance(data, dict):
            # `py-spy:` with nothing under it means "py-spy with its defaults".
            data = {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @property
    def enabled(self) -> dict[str, BaseModel]:
        """YAML name -> settings of every profiler that runs, in declaration order."""
        specs = ((key, getattr(self, name)) for key, name in _yaml_keys(type(self)).items())
        return {key: spec for key, spec in specs if spec is not None}


def _default_profilers() -> ProfilersSpec:
    return ProfilersSpec.model_validate({"py-spy": {}})


_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
DEFAULT_OUTLIER_THRESHOLD = 3.5


def _check_group_by(value: object) -> str:
    if not isinstance(value, str) or not _VAR_NAME_RE.fullmatch(value):
        raise _fail(
            "expected hw_model, arch, or the name of an inventory variable (letters, digits "
            f"and _), got {_describe(value)}"
        )
    return value


class CompareSpec(_Spec):
    """How hosts are grouped and when one stands out from its group."""

    # hw_model (default), arch, or any inventory variable (hostvar) of the hosts.
    group_by: Annotated[str, PlainValidator(_check_group_by)] = "hw_model"
    # Robust z-score (0.6745 * (x - median) / MAD) beyond which a host is an outlier.
    threshold: Annotated[float, _positive_number("a positive number (robust z)")] = (
        DEFAULT_OUTLIER_THRESHOLD
    )


DEFAULT_REGRESSION_PCT = 10.0
DEFAULT_CHECK_ALPHA = 0.05
DEFAULT_CHECK_HISTORY = 14


def _check_alpha(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise _fail(f"expected a false discovery rate between 0 and 1, got {_describe(value)}")
    return float(value)


class ConfirmSpec(_Spec):
    """Re-measure the flagged hosts alone before reporting them (fleetprof check)."""

    enabled: bool = True
    # The re-measure's window; the campaign's duration when not given.
    duration_s: Duration | None = Field(
        default=None, validation_alias="duration", serialization_alias="duration"
    )


class CheckSpec(_Spec):
    """How `fleetprof check` judges each host against its own baseline (docs/check.md)."""

    # Metrics to test against the baseline; by default every metric with repetitions
    # behind it (the probe's).
    metrics: Annotated[list[str], PlainValidator(_check_metric_names)] | None = None
    # The smallest change, in percent of the baseline, that counts as a regression.
    regression_pct: Annotated[float, _positive_number("a positive percentage")] = (
        DEFAULT_REGRESSION_PCT
    )
    # False discovery rate controlled across every host x metric tested.
    alpha: Annotated[float, PlainValidator(_check_alpha)] = DEFAULT_CHECK_ALPHA
    confirm: ConfirmSpec = Field(default_factory=ConfirmSpec)
    # How many past checks the stability figures and trend charts look back on.
    history: Annotated[int, _int_check(2, 365, "an integer from 2 to 365 (checks)")] = (
        DEFAULT_CHECK_HISTORY
    )


def _check_mib(value: object) -> float:
    expected = "a number of MiB, 0 or more"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"expected {expected}, got {_describe(value)}")
    if not math.isfinite(value) or value < 0:
        raise _fail(f"expected {expected}, got {value}")
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
        raise _fail(f"expected {expected}, got {_describe(value)}")
    if not math.isfinite(value) or not 0 <= value <= MAX_WINDOW_LOSS_PCT:
        raise _fail(f"expected {expected}, got {value}")
    return float(value)


class LimitsSpec(_Spec):
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
    grace_s: Annotated[float, _duration_check(0.0, MAX_GRACE_S, zero_ok=False)] = Field(
        default=DEFAULT_GRACE_S, validation_alias="grace", serialization_alias="grace"
    )
    max_window_loss_pct: Annotated[float, PlainValidator(_check_loss_pct)] = (
        DEFAULT_MAX_WINDOW_LOSS_PCT
    )


class Campaign(_Spec):
    """One profiling campaign, as validated from its YAML file."""

    name: CampaignName
    hosts: Annotated[str, PlainValidator(_check_hosts)] = "all"
    duration_s: Duration = Field(validation_alias="duration", serialization_alias="duration")
    start: StartSpec = Field(default_factory=StartSpec)
    target: TargetSpec
    profilers: ProfilersSpec = Field(default_factory=_default_profilers)
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
    def source(self) -> Path:
        """The file this campaign was loaded from (``<mapping>`` when built from a dict)."""
        return self._source

    @classmethod
    def from_mapping(cls, data: Any, source: str | Path = "<mapping>") -> Campaign:
        """Validate already-parsed campaign data (YAML keys), as load_campaign does for a
        file. Raises CampaignError whose lines start with ``source``."""
        return _validate(data, str(source), Path(source), None)


# --- loading -------------------------------------------------------------------------------


def load_campaign(path: str | Path) -> Campaign:
    """Read, parse and validate one campaign file. Every failure is a CampaignError."""
    shown = str(path)
    data, marks = _read_yaml(Path(path), shown)
    if marks.empty:
        raise CampaignError(
            f"{shown}: the file is empty; a campaign needs at least name, duration and target"
        )
    if not isinstance(data, dict):
        raise CampaignError(
            f"{shown}:1:1: expected a mapping of campaign keys (name, duration, target, ...) "
            f"at the top level, got {_describe(data)}"
        )
    return _validate(data, shown, Path(path), marks)


@dataclass
class _Marks:
    """1-based (line, column) of every mapping key and value, by key path."""

    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    empty: bool = False

    def find(self, loc: KeyPath, *, on_key: bool) -> tuple[int, int] | None:
        if on_key and loc in self.keys:
            return self.keys[loc]
        # The node itself, else the closest enclosing one that is in the file.
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.values:
                return self.values[loc[:end]]
        return None


def _read_yaml(path: Path, shown: str) -> tuple[Any, _Marks]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise CampaignError(
            f"{shown}: cannot read the campaign file: {err.strerror or err}"
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise CampaignError(
            f"{shown}: larger than {MAX_FILE_BYTES // 1024} KiB; is this a campaign file?"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise CampaignError(
            f"{shown}:{line}:{column}: not valid UTF-8 (byte 0x{raw[err.start]:02x}); "
            "save the file as UTF-8"
        ) from None

    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        marks = _Marks(empty=node is None)
        if node is not None:
            _record_marks(node, (), marks, set())
            marks.problems += _scalar_problems(node)
        if marks.problems:
            raise CampaignError([f"{shown}:{d}" for d in marks.problems])
        data = loader.construct_document(node) if node is not None else None
    except _CONSTRUCT_ERRORS as err:  # what _scalar_problems did not foresee
        raise CampaignError(f"{shown}: invalid YAML: a value cannot be read ({err})") from None
    except yaml.MarkedYAMLError as err:
        raise CampaignError(_yaml_problem(err, shown)) from None
    except yaml.reader.ReaderError as err:  # control characters and the like
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        raise CampaignError(
            f"{shown}:{line}:{column}: invalid YAML: character {err.character:#06x} "
            "is not allowed in YAML"
        ) from None
    except yaml.YAMLError as err:
        raise CampaignError(f"{shown}: invalid YAML: {err}") from None
    except RecursionError:
        raise CampaignError(f"{shown}: nested too deeply to be a campaign") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, marks


def _yaml_problem(err: yaml.MarkedYAMLError, shown: str) -> str:
    mark = err.problem_mark or err.context_mark
    where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    problem = err.problem or "invalid YAML"
    context = ""
    if err.context:
        context = f" ({err.context}"
        if err.context_mark is not None and err.context_mark is not mark:
            context += f" at line {err.context_mark.line + 1}"
        context += ")"
    return f"{shown}{where}: invalid YAML: {problem}{context}"


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _record_marks(node: yaml.Node, path: KeyPath, marks: _Marks, walked: set[int]) -> None:
    # Each node once, under the first path that reaches it: a recursive alias would never
    # end, and aliases of aliases (billion laughs) would reach a node 9**9 times.
    if id(node) in walked:
        return
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                line, column = _pos(key_node.start_mark)
                marks.problems.append(
                    f"{line}:{column}: {_show_path(child)}: duplicate key "
                    f"(first given at line {seen[key][0]})"
                )
            seen.setdefault(key, _pos(key_node.start_mark))
            marks.keys[child] = _pos(key_node.start_mark)
            marks.values[child] = _pos(value_node.start_mark)
            _record_marks(value_node, child, marks, walked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            marks.keys[(*path, index)] = marks.values[(*path, index)] = _pos(item.start_mark)
            _record_marks(item, (*path, index), marks, walked)


_YAML_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_YAML_TAG}{kind}": kind for kind in ("int", "float", "bool", "timestamp")}
# Longer numbers are no setting, and PyYAML's int() of a long one is slow (1:2:3:...
# in base 60) or refused (more than 4300 digits).
_MAX_NUMBER_CHARS = 100
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# What PyYAML's constructors raise, besides YAMLError, for scalars they cannot build:
# `!!int x`, `!!bool x`, an empty `!!float`, `!!timestamp x`, 2001-13-45, 1:2:...:1.5 (overflow).
_CONSTRUCT_ERRORS = (ValueError, LookupError, AttributeError, TypeError, OverflowError)


def _scalar_problems(root: yaml.Node) -> list[str]:
    """'line:col: problem' for each scalar that is no text (a lone surrogate from a \\u
    escape) or that PyYAML could not build, in file order. Each node once (aliases)."""
    found: list[tuple[tuple[int, int], str]] = []
    constructor = yaml.constructor.SafeConstructor()
    stack, walked = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.ScalarNode):
            problem = _scalar_problem(node, constructor)
            if problem:
                line, column = _pos(node.start_mark)
                found.append(((line, column), f"{line}:{column}: invalid YAML: {problem}"))
    return [text for _, text in sorted(found)]


def _scalar_problem(node: yaml.ScalarNode, constructor: yaml.constructor.SafeConstructor) -> str:
    value = str(node.value)
    if _SURROGATE_RE.search(value):
        return "a \\u escape for a lone surrogate (U+D800 to U+DFFF) is not a character"
    kind = _SCALAR_TAGS.get(node.tag)
    if kind is None:
        return ""
    if kind in ("int", "float") and len(value) > _MAX_NUMBER_CHARS:
        return f"a number of {len(value)} characters is too long to be a setting"
    try:
        constructor.construct_object(node)
    except (*_CONSTRUCT_ERRORS, yaml.YAMLError):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"{shown!r} is not a valid {kind}; quote it if it is meant as text"
    return ""


# --- validation and its messages ---------------------------------------------------------

_MISSING_HINTS: dict[KeyPath, str] = {
    ("name",): "the campaign name, e.g. name: nightly-variability",
    ("duration",): "how long to profile, e.g. duration: 30s",
    ("target",): "what to profile: target: {attach: {process: REGEX}} or "
    "target: {launch: {command: [argv...]}}",
    ("target", "launch", "command"): "the program to start as an argv list, "
    'e.g. command: ["python3", "app.py"]',
}

_TYPE_EXPECTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _validate(data: Any, shown: str, source: Path, marks: _Marks | None) -> Campaign:
    try:
        campaign = Campaign.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as err:
        raise CampaignError(_problems(err, shown, marks)) from None
    campaign._source = source
    return campaign


def _problems(err: ValidationError, shown: str, marks: _Marks | None) -> list[str]:
    found: list[tuple[tuple[int, int], str]] = []
    for error in err.errors(include_url=False):
        loc: KeyPath = tuple(error["loc"])
        kind = error["type"]
        ctx: dict[str, Any] = dict(error.get("ctx") or {})
        value = error.get("input")
        on_key = False
        if loc and loc[-1] == "[key]":
            # A bad mapping key (1 in env): name it as a key, not as a list index.
            loc, on_key = (*loc[:-2], str(loc[-2])), True

        if kind == _ERROR_TYPE:
            loc = (*loc, *ctx.get("subpath", ()))
            on_key = on_key or bool(ctx.get("on_key"))
            message = str(ctx["message"])
        elif kind in ("extra_forbidden", "invalid_key"):
            on_key = True
            message = _unknown_key(loc, value if kind == "invalid_key" else None)
            if loc and not isinstance(loc[-1], str):  # `1: x`: a key, not a list index
                loc = (*loc[:-1], str(loc[-1]))
        elif kind == "missing":
            hint = _MISSING_HINTS.get(loc)
            message = "required key is missing" + (f": {hint}" if hint else "")
        elif kind in _TYPE_EXPECTED:
            message = f"expected {_TYPE_EXPECTED[kind]}, got {_describe(value)}"
            if kind == "string_type" and _is_number(value):
                message += f' (quote it: "{value}")'
            if not loc and kind.startswith("model"):
                message = (
                    "expected a mapping of campaign keys (name, duration, target, ...) "
                    f"at the top level, got {_describe(value)}"
                )
        elif kind == "literal_error":
            message = f"expected one of {ctx.get('expected', '...')}, got {_describe(value)}"
        else:  # not expected to happen; still no pydantic wording
            message = f"invalid value: {_describe(value)}"

        position = None
        if marks is not None:
            position = marks.find(loc[:-1] if kind == "missing" else loc, on_key=on_key)
        where = f":{position[0]}:{position[1]}" if position else ""
        path = _clip(_show_path(loc), 200)
        message = _clip(message, 400)
        found.append(
            (position or (0, 0), f"{shown}{where}: {path + ': ' if path else ''}{message}")
        )

    lines: list[str] = []
    for _, line in sorted(found, key=lambda item: item[0]):
        if line not in lines:
            lines.append(line)
    return lines


def _unknown_key(loc: KeyPath, bad_key: object) -> str:
    model = _model_at(loc[:-1])
    prefix = "unknown key" if bad_key is None else f"unknown key {_describe(bad_key)}"
    if model is None:
        return prefix
    allowed = ", ".join(_yaml_keys(model))
    if model is ProfilersSpec:
        return f"unknown profiler (available: {allowed})"
    return f"{prefix} (allowed: {allowed})"


def _model_at(loc: KeyPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc``, following field types."""
    model: type[BaseModel] = Campaign
    for part in loc:
        name = _yaml_keys(model).get(str(part))
        if name is None:
            return None
        info = model.model_fields[name]
        inner = next((t for t in _union_members(info.annotation) if _is_model(t)), None)
        if inner is None:
            return None
        model = inner
    return model


def _union_members(annotation: Any) -> Iterator[Any]:
    yield annotation
    yield from getattr(annotation, "__args__", ())


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show_path(loc: KeyPath) -> str:
    text = ""
    for part in loc:
        # Keys with control, bidi or surrogate characters are shown escaped, as values are.
        part = part if isinstance(part, int) or part.isprintable() else repr(part)
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _clip(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters, cut in the middle: a 100 kB value in a
    message helps nobody, while its start and the hint at its end do."""
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"
