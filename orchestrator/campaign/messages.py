"""Every problem with a campaign file as a ``CampaignError`` whose text names the file,
the line and column, the key path and what was expected; pydantic's own words never reach the user.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import ProfilersSpec
from orchestrator.campaign.validators import ERROR_TYPE, KeyPath, describe, is_number, yaml_keys


class CampaignError(Exception):
    """A campaign that cannot be used. ``str(err)`` is the whole user-facing message,
    one line per problem; ``problems`` holds the same lines."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class Marks:
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


def validate(data: Any, shown: str, source: Path, marks: Marks | None) -> Campaign:
    try:
        campaign = Campaign.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as err:
        raise CampaignError(_problems(err, shown, marks)) from None
    campaign._source = source
    return campaign


def _problems(err: ValidationError, shown: str, marks: Marks | None) -> list[str]:
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

        if kind == ERROR_TYPE:
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
            message = f"expected {_TYPE_EXPECTED[kind]}, got {describe(value)}"
            if kind == "string_type" and is_number(value):
                message += f' (quote it: "{value}")'
            if not loc and kind.startswith("model"):
                message = (
                    "expected a mapping of campaign keys (name, duration, target, ...) "
                    f"at the top level, got {describe(value)}"
                )
        elif kind == "literal_error":
            message = f"expected one of {ctx.get('expected', '...')}, got {describe(value)}"
        else:  # not expected to happen; still no pydantic wording
            message = f"invalid value: {describe(value)}"

        position = None
        if marks is not None:
            position = marks.find(loc[:-1] if kind == "missing" else loc, on_key=on_key)
        where = f":{position[0]}:{position[1]}" if position else ""
        path = _clip(show_path(loc), 200)
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
    prefix = "unknown key" if bad_key is None else f"unknown key {describe(bad_key)}"
    if model is None:
        return prefix
    allowed = ", ".join(yaml_keys(model))
    if model is ProfilersSpec:
        return f"unknown profiler (available: {allowed})"
    return f"{prefix} (allowed: {allowed})"


def _model_at(loc: KeyPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc``, following field types."""
    model: type[BaseModel] = Campaign
    for part in loc:
        name = yaml_keys(model).get(str(part))
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


def show_path(loc: KeyPath) -> str:
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
