"""Loading a campaign file: one YAML file -> one validated, frozen ``Campaign``, with the
line and column of every key and value kept for the messages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.campaign.messages import CampaignError, Marks, show_path, validate
from orchestrator.campaign.model import Campaign
from orchestrator.campaign.validators import MAX_FILE_BYTES, KeyPath, describe

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
            f"at the top level, got {describe(data)}"
        )
    return validate(data, shown, Path(path), marks)


def _read_yaml(path: Path, shown: str) -> tuple[Any, Marks]:
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
        marks = Marks(empty=node is None)
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


def _record_marks(node: yaml.Node, path: KeyPath, marks: Marks, walked: set[int]) -> None:
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
                    f"{line}:{column}: {show_path(child)}: duplicate key "
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
