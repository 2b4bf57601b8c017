"""The checks every campaign value goes through, its limits and defaults, and the strict
base model every part of a campaign is built on.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import shlex
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainValidator,
)
from pydantic_core import PydanticCustomError

from fleetprof_device.contract import MAX_SAMPLE_INTERVAL_S as MAX_INTERVAL_S
from fleetprof_device.contract import MIN_SAMPLE_INTERVAL_S as MIN_INTERVAL_S
from orchestrator.values import workload_name_problem

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
METRIC_RE = re.compile(r"[A-Za-z0-9_.]{1,200}")
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
ERROR_TYPE = "fleetprof"

KeyPath = tuple[str | int, ...]


# --- values ------------------------------------------------------------------------------


def parse_duration(value: str | int | float) -> float:
    """``"30s"``, ``"2m"``, ``"1h"``, ``"1m30s"``, ``"500ms"``, ``"45"``, ``45`` or ``0.5``
    -> seconds. Raises ValueError saying what was expected; ranges are the caller's."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration {_DURATION_EXAMPLES}, got {describe(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value)
    else:
        raise ValueError(f"expected a duration {_DURATION_EXAMPLES}, got {describe(value)}")
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


def describe(value: object) -> str:
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


def invalid(message: str, *subpath: str | int, on_key: bool = False) -> PydanticCustomError:
    """An error for the translator: ``subpath`` points below where the validator runs."""
    return PydanticCustomError(
        ERROR_TYPE, "{message}", {"message": message, "subpath": subpath, "on_key": on_key}
    )


def _check_name(value: object) -> str:
    expected = "1 to 64 letters, digits, '-' or '_' (the name is used in paths)"
    if not isinstance(value, str):
        raise invalid(f"expected {expected}, got {describe(value)}")
    if not _NAME_RE.fullmatch(value):
        raise invalid(f"expected {expected}, got {value!r}")
    return value


def check_hosts(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(
            f"expected an Ansible host pattern such as all, edge or 'jetson:&lab', "
            f"got {describe(value)}"
        )
    return value


def duration_check(low: float, high: float, *, zero_ok: bool) -> PlainValidator:
    def check(value: object) -> float:
        try:
            seconds = parse_duration(value)  # type: ignore[arg-type]  # checked inside
        except ValueError as err:
            raise invalid(str(err)) from None
        too_small = seconds < low if zero_ok else seconds <= low
        if too_small or seconds > high:
            bound = "0 or more" if zero_ok else "more than 0"
            raise invalid(f"expected a duration {bound} and at most {_human(high)}, got {value}")
        return seconds

    return PlainValidator(check)


def _interval_check(value: object) -> float:
    try:
        seconds = parse_duration(value)  # type: ignore[arg-type]  # checked inside
    except ValueError as err:
        raise invalid(str(err)) from None
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise invalid(
            f"expected a sampling interval from {MIN_INTERVAL_S:g}s to "
            f"{MAX_INTERVAL_S:g}s, got {value}"
        )
    return seconds


def positive_number(expected: str) -> PlainValidator:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise invalid(f"expected {expected}, got {describe(value)}")
        if not math.isfinite(value):
            raise invalid(f"expected {expected}, got {value}")
        return float(value)

    return PlainValidator(check)


def _human(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds:g}s"


def int_check(low: int, high: int | None, expected: str) -> PlainValidator:
    def check(value: object) -> int:
        # bool is an int to Python; `rate: yes` is still not a rate.
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"expected {expected}, got {describe(value)}")
        if value < low or (high is not None and value > high):
            raise invalid(f"expected {expected}, got {value}")
        return value

    return PlainValidator(check)


def check_regex(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(
            "expected a non-empty regular expression matched against the full command line, "
            f"got {describe(value)}"
        )
    try:
        re.compile(value)
    except re.error as err:
        raise invalid(f"expected a valid Python regular expression, got {value!r}: {err}") from None
    except (OverflowError, RecursionError) as err:  # a{4294967296}; ((((...)))) too deep
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise invalid(
            f"expected a regular expression Python can compile, got one {reason}"
        ) from None
    return value


def _check_absolute(value: object) -> str:
    # Devices are POSIX; the controller's own OS does not decide what is absolute there.
    if not isinstance(value, str) or not PurePosixPath(value).is_absolute():
        shown = repr(value) if isinstance(value, str) else describe(value)
        raise invalid(f"expected an absolute path (starting with /), got {shown}")
    return value


def _check_command(value: object) -> list[str]:
    if isinstance(value, str):
        try:
            suggestion = json.dumps(shlex.split(value)) if value.strip() else '["program", "arg"]'
        except ValueError:
            suggestion = '["program", "arg"]'
        raise invalid(
            "expected a list of arguments (argv), not a string: commands are never run "
            f"through a shell; write it as command: {suggestion}"
        )
    if not isinstance(value, list):
        raise invalid(f"expected a non-empty list of arguments (argv), got {describe(value)}")
    if not value:
        raise invalid("expected a non-empty list of arguments (argv), got an empty list")
    for index, arg in enumerate(value):
        if not isinstance(arg, str):
            hint = f' (quote it: "{arg}")' if is_number(arg) else ""
            raise invalid(f"expected a string, got {describe(arg)}{hint}", index)
        if not arg:
            raise invalid("expected a non-empty string, got an empty string", index)
    return list(value)


def _check_env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME_RE.fullmatch(value):
        shown = repr(value) if isinstance(value, str) else describe(value)
        raise invalid(
            "expected an environment variable name (letters, digits and _, not starting "
            f"with a digit), got {shown}",
            on_key=True,
        )
    return value


def _check_workload_name(value: object) -> str:
    problem = workload_name_problem(value)
    if problem is not None:
        shown = repr(value) if isinstance(value, str) else describe(value)
        raise invalid(f"expected a workload metric name ({problem}), got {shown}", on_key=True)
    assert isinstance(value, str)
    return value


WORKLOAD_DIRECTIONS = ("higher", "lower")


def _check_workload_direction(value: object) -> str:
    if value not in WORKLOAD_DIRECTIONS:
        raise invalid(
            "expected higher or lower (which way is better for this metric), got "
            + (repr(value) if isinstance(value, str) else describe(value))
        )
    assert isinstance(value, str)
    return value


CampaignName = Annotated[str, PlainValidator(_check_name)]
Duration = Annotated[float, duration_check(0.0, MAX_DURATION_S, zero_ok=False)]
Lead = Annotated[float, duration_check(0.0, MAX_LEAD_S, zero_ok=True)]
Rate = Annotated[int, int_check(1, MAX_PYSPY_RATE, f"an integer from 1 to {MAX_PYSPY_RATE} (Hz)")]
Pid = Annotated[int, int_check(1, None, "a positive integer")]
Interval = Annotated[float, PlainValidator(_interval_check)]
LeakRate = Annotated[float, positive_number("a positive number of MB per minute")]
AbsolutePath = Annotated[str, PlainValidator(_check_absolute)]
EnvName = Annotated[str, PlainValidator(_check_env_name)]
WorkloadName = Annotated[str, PlainValidator(_check_workload_name)]
WorkloadDirection = Annotated[str, PlainValidator(_check_workload_direction)]
Argv = Annotated[list[str], PlainValidator(_check_command)]


# --- the model -----------------------------------------------------------------------------


class Spec(BaseModel):
    # strict: "97" is not an int and 1 is not a string; forbid: a typo is an error, not
    # a silently ignored key. YAML keys that are not identifiers are validation aliases;
    # Python code may use the attribute names too, files never do (see validate).
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )


def yaml_keys(model: type[BaseModel]) -> dict[str, str]:
    """YAML key -> attribute name, in declaration order."""
    keys: dict[str, str] = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        keys[alias if isinstance(alias, str) else name] = name
    return keys


def _known_keys(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields) | set(yaml_keys(model))


def exactly_one(model: type[BaseModel], data: Any, choices: tuple[str, ...], where: str) -> None:
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
        raise invalid(f"expected exactly one of {wanted} {where}, got none")
    raise invalid(f"expected exactly one of {wanted} {where}, got {' and '.join(given)}")


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
