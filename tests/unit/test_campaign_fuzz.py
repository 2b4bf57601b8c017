"""Campaign files fuzzed: whatever a file holds, ``load_campaign`` returns a Campaign or
raises CampaignError, and the command line exits 2 with one clear message, never a
traceback (DESIGN.md: bad input names the file and key, exit 2, no traceback).

The strategies start from valid campaigns of every kind (attach, launch, probe; every
profiler; compare, check, limits) and break them: a wrong value at any key path, a key
missing or unknown, odd text, deep nesting, and YAML-level damage written as text.
"""

from __future__ import annotations

import copy
import os
import random
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from orchestrator.campaign.loader import load_campaign
from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign

KeyPath = tuple[str | int, ...]

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# One load of a campaign file takes milliseconds (deep nesting alone about 0.65 s on a
# loaded machine): this guards against a blow-up (quadratic or runaway parsing), it is not
# a timing goal, so it leaves room for a machine shared with other work.
SLOW_S = 10.0
# Pydantic and Python words that must never reach a user.
FOREIGN = ("Traceback", "validation error", "Input should", "pydantic", "errors.pydantic.dev")


# ----------------------------------------------------------------------------- valid campaigns

DURATIONS = st.sampled_from(["30s", "2m", "1h", "1m30s", "500ms", "2m 15.5s", "45", 45, 0.5])
INTERVALS = st.sampled_from(["1s", "500ms", 0.1, 60, "1m"])
# Any character but a lone surrogate, which is no text (and which YAML refuses, see below).
TEXT_CHARS = st.characters(codec="utf-8")
PLAIN_TEXT = st.text(TEXT_CHARS, min_size=1, max_size=12)
ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
METRICS = st.from_regex(r"[A-Za-z0-9_.]{1,20}", fullmatch=True)

ATTACH = st.one_of(
    st.sampled_from([r"video_pipeline\.py", "python3 .*app", "^/usr/bin/x$"]).map(
        lambda regex: {"process": regex}
    ),
    st.integers(1, 4_194_304).map(lambda pid: {"pid": pid}),
    st.sampled_from(["/run/app.pid", "/var/run/my app.pid"]).map(lambda p: {"pidfile": p}),
)
LAUNCH_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "command": st.lists(PLAIN_TEXT, min_size=1, max_size=4)
}
LAUNCH = st.fixed_dictionaries(
    LAUNCH_KEYS,
    optional={
        "cwd": st.sampled_from(["/opt/app", "/", "/srv/with space"]),
        "env": st.dictionaries(ENV_NAMES, st.text(TEXT_CHARS)),
    },
)
PROBE = st.fixed_dictionaries(
    {"probe": st.lists(st.sampled_from(["cpu", "memory", "disk"]), min_size=1, unique=True)},
    optional={"repeats": st.integers(2, 50)},
)
PYSPY = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "rate": st.integers(1, 1000),
            **{flag: st.booleans() for flag in ("native", "idle", "gil", "subprocesses")},
            "nonblocking": st.booleans(),
        },
    ),
)
SAMPLER = st.fixed_dictionaries({}, optional={"interval": INTERVALS})
PROFILERS = {
    "py-spy": PYSPY,
    "system": SAMPLER,
    "iotop": SAMPLER,
    "memory": st.fixed_dictionaries(
        {}, optional={"leak_mb_per_min": st.floats(0.001, 1e6, allow_nan=False)}
    ),
    "nvidia-smi": SAMPLER,
    "tegrastats": SAMPLER,
    "nsys": st.fixed_dictionaries(
        {},
        optional={
            "trace": st.lists(st.sampled_from(["cuda", "nvtx", "osrt", "cublas"]), min_size=1),
            "keep_report": st.booleans(),
            "pytorch": st.sampled_from(["autograd-nvtx", "autograd-shapes-nvtx", "none"]),
        },
    ),
    "ncu": st.fixed_dictionaries(
        {},
        optional={
            "kernel": st.sampled_from(["gemm.*", "conv"]),
            "metrics": st.lists(METRICS, min_size=1, max_size=3),
            "set": st.sampled_from(["basic", "detailed", "full"]),
            "launch_count": st.integers(1, 10_000),
        },
    ),
}
OPTIONAL_SECTIONS = {
    "hosts": st.sampled_from(["all", "edge", "jetson:&lab", "rpi*"]),
    "start": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"lead": DURATIONS})),
    "compare": st.fixed_dictionaries(
        {},
        optional={
            "group_by": st.sampled_from(["hw_model", "arch", "rack"]),
            "threshold": st.floats(0.1, 100),
        },
    ),
    "check": st.fixed_dictionaries(
        {},
        optional={
            "metrics": st.lists(METRICS, min_size=1, max_size=3),
            "regression_pct": st.floats(0.1, 500),
            "alpha": st.floats(0.001, 0.999),
            "confirm": st.fixed_dictionaries(
                {}, optional={"enabled": st.booleans(), "duration": DURATIONS}
            ),
            "history": st.integers(2, 365),
        },
    ),
}
if "limits" in Campaign.model_fields:  # the disk floor; absent in older trees
    OPTIONAL_SECTIONS["limits"] = st.fixed_dictionaries(
        {}, optional={"min_free_mb": st.floats(0, 1e6)}
    )


@st.composite
def valid_campaigns(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(["attach", "launch", "probe"]))
    target = {"probe": PROBE, "attach": ATTACH.map(lambda a: {"attach": a})}.get(
        mode, LAUNCH.map(lambda launch: {"launch": launch})
    )
    names = draw(st.lists(st.sampled_from(sorted(PROFILERS)), min_size=0, max_size=3, unique=True))
    if mode != "probe" and not names:
        names = ["py-spy"]
    campaign: dict[str, Any] = {
        "name": draw(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)),
        "duration": draw(DURATIONS),
        "target": draw(target),
    }
    if names:
        campaign["profilers"] = {name: draw(PROFILERS[name]) for name in names}
    for key in draw(st.lists(st.sampled_from(sorted(OPTIONAL_SECTIONS)), unique=True)):
        campaign[key] = draw(OPTIONAL_SECTIONS[key])
    return campaign


# ----------------------------------------------------------------------------- mutations

ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\t",
        "\u202eevil\u202c",  # right-to-left override
        "\u200f\u200e",  # RTL / LTR marks
        "a\u0301\u0302\u0303",  # combining accents
        "\U0001f600\U0001f4a9",  # emoji
        "\x00",
        "\x1b[31mred",
        "\ud800",  # a lone surrogate: YAML writes it as a \u escape
        "\udfff tail",
        "\ufeffbom",
        "line\nbreak",
        "x" * 10_000,
        "\u00e9" * 3000,
        "{{ lookup('pipe', 'id') }}",
        "$(touch PWNED)",
        "yes",
        "1e308",
        "0x1F",
        "~",
        "-1",
        "1:2:3",
    ]
)
BAD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**64, -(2**63), -1, 0, 10**99, 10**300, 1e308, -1e308, 5e-324, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    ODD_TEXT,
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.integers(1, 400).map(lambda depth: Deep(depth)),
)
UNKNOWN_KEYS = st.one_of(
    st.sampled_from(
        ["atach", "Name", "durations", "py_spy", "profiler", " ", "\u202ename", "\U0001f600"]
    ),
    st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
    st.integers(-5, 5),
)
REQUIRED: dict[KeyPath, str] = {
    ("name",): "required key is missing",
    ("duration",): "required key is missing",
    ("target",): "required key is missing",
    ("target", "launch", "command"): "required key is missing",
    ("target", "attach", "process"): "expected exactly one of process, pid or pidfile",
    ("target", "attach", "pid"): "expected exactly one of process, pid or pidfile",
    ("target", "attach", "pidfile"): "expected exactly one of process, pid or pidfile",
}


class Deep:
    """A value nested ``depth`` lists deep, written into the YAML text as ``[[[...]]]``
    (PyYAML's own emitter recurses too deeply for it)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


def key_paths(data: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    items: list[tuple[str | int, Any]] = []
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = list(enumerate(data))
    paths: list[KeyPath] = []
    for key, value in items:
        paths.append((*prefix, key))
        paths += key_paths(value, (*prefix, key))
    return paths


def mapping_paths(data: Any) -> list[KeyPath]:
    return [()] + [path for path in key_paths(data) if isinstance(at(data, path), dict)]


def known_keys() -> set[str]:
    """Every key a campaign file may hold, in any section."""
    keys: set[str] = set()
    models: list[type[BaseModel]] = [Campaign]
    while models:
        model = models.pop()
        for name, info in model.model_fields.items():
            alias = info.validation_alias
            keys.add(alias if isinstance(alias, str) else name)
            for inner in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    models.append(inner)
    return keys


KNOWN_KEYS = known_keys()


def at(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def mutated_campaigns(draw: st.DrawFn) -> tuple[Any, str, KeyPath]:
    """(campaign data, mutation kind, the key path it touched)."""
    campaign = copy.deepcopy(draw(valid_campaigns()))
    kind = draw(st.sampled_from(["value", "value", "value", "missing", "unknown", "whole"]))
    if kind == "whole":  # the document itself is no mapping
        return draw(BAD_VALUES), kind, ()
    if kind == "unknown":
        # Not inside env: any name is allowed there.
        paths = [p for p in mapping_paths(campaign) if not p or p[-1] != "env"]
        path = draw(st.sampled_from(paths))
        mapping = at(campaign, path)
        key = draw(
            UNKNOWN_KEYS.filter(lambda k: str(k) not in KNOWN_KEYS | {str(m) for m in mapping})
        )
        mapping[key] = draw(st.one_of(st.integers(), st.text(max_size=5), st.none()))
        return campaign, kind, (*path, key)
    path = draw(st.sampled_from(key_paths(campaign)))
    parent = at(campaign, path[:-1])
    if kind == "missing":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(BAD_VALUES)
    return campaign, kind, path


def dump(data: Any, *, rng: random.Random | None = None) -> str:
    """The campaign as YAML text, Deep values as [[[...]]] flow sequences."""
    deep: dict[str, int] = {}

    def swap(value: Any) -> Any:
        if isinstance(value, Deep):
            marker = f"__deep_{len(deep)}__"
            deep[marker] = value.depth
            return marker
        if isinstance(value, dict):
            return {swap(k): swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    flow = None if rng is None else rng.choice([None, True, False])
    text = yaml.safe_dump(
        swap(data), allow_unicode=False, sort_keys=False, default_flow_style=flow, width=80
    )
    for marker, depth in deep.items():
        text = text.replace(marker, "[" * depth + "]" * depth)
    return text


# ----------------------------------------------------------------------------- properties


def shown_path(path: KeyPath, *, last_is_key: bool = False) -> str:
    """A key path as messages write it: odd keys escaped, a mapping's int key as a key."""
    text = ""
    for index, part in enumerate(path):
        if last_is_key and index == len(path) - 1:
            part = str(part)
        if isinstance(part, str) and not part.isprintable():
            part = repr(part)
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load(path: Path) -> tuple[Campaign | None, str]:
    """Load ``path``; any exception but CampaignError fails the test. (campaign, message)."""
    started = time.monotonic()
    try:
        campaign, message = load_campaign(path), ""
    except CampaignError as err:
        campaign, message = None, str(err)
    elapsed = time.monotonic() - started
    assert elapsed < SLOW_S, f"loading took {elapsed:.1f}s"
    if campaign is None:
        check_message(message, path)
    return campaign, message


def check_message(message: str, path: Path) -> None:
    shown = str(path)
    assert message.strip(), "an empty message"
    message.encode("utf-8")  # printable: no lone surrogate reaches the terminal
    for line in message.split("\n"):
        assert line.startswith(f"{shown}:"), f"does not start with the file name: {line!r}"
        assert len(line) < len(shown) + 1000, f"a message line of {len(line)} characters"
        assert line[len(shown) + 1 :].strip(), f"nothing said: {line!r}"
    for word in FOREIGN:
        assert word not in message, message


def has_position(message: str, path: Path) -> bool:
    return re.search(rf"^{re.escape(str(path))}:\d+:\d+: ", message, re.MULTILINE) is not None


@pytest.fixture(scope="module")
def campaign_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Spaces and non-ASCII in the name: the message still starts with it, as given.
    return tmp_path_factory.mktemp("fuzz") / "my campaign \u00e9.yml"


@FUZZ
@given(campaign=valid_campaigns(), seed=st.integers(0, 2**16))
def test_valid_campaigns_of_every_kind_load(
    campaign_file: Path, campaign: dict[str, Any], seed: int
) -> None:
    campaign_file.write_text(dump(campaign, rng=random.Random(seed)), encoding="utf-8")
    loaded, message = load(campaign_file)
    assert loaded is not None, message
    assert loaded.name == campaign["name"]
    assert loaded.target.mode in campaign["target"]
    if "launch" in campaign["target"]:
        launch = campaign["target"]["launch"]
        assert loaded.target.launch is not None
        # Odd unicode in argv and env survives YAML as written, element for element.
        assert loaded.target.launch.command == launch["command"]
        assert loaded.target.launch.env == launch.get("env", {})


@settings(FUZZ, max_examples=400)
@given(mutation=mutated_campaigns(), seed=st.integers(0, 2**16))
def test_a_broken_campaign_is_a_campaign_error_naming_where(
    campaign_file: Path, mutation: tuple[Any, str, KeyPath], seed: int
) -> None:
    data, kind, path = mutation
    campaign_file.write_text(dump(data, rng=random.Random(seed)), encoding="utf-8")

    loaded, message = load(campaign_file)

    if kind == "unknown":
        assert loaded is None
        assert re.search(r"unknown (key|profiler)", message), message
    if kind == "missing" and path in REQUIRED:
        assert loaded is None
        assert REQUIRED[path] in message, message
    if kind == "whole" and not isinstance(data, dict):
        assert loaded is None
    if loaded is None and path:
        # The message points at what broke: a key path leading to it, or, for problems
        # of the YAML itself (a lone surrogate, a 300-digit number), its line and column.
        unknown = kind == "unknown"
        prefixes = [shown_path(path[:end], last_is_key=unknown) for end in range(len(path), 0, -1)]
        named = any(
            re.search(rf"(^|: |[.\[]){re.escape(p)}([.\[:]|$)", message, re.MULTILINE)
            for p in prefixes
        )
        yaml_level = has_position(message, campaign_file) and "invalid YAML" in message
        too_deep = message == f"{campaign_file}: nested too deeply to be a campaign"
        assert named or yaml_level or too_deep, f"{path}: {message}"


# ----------------------------------------------------------------------------- YAML as text

BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
LAUGHS_HEAD = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"


def text_damage(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True) or [""]
    where = rng.randrange(len(text) + 1)
    choice = rng.randrange(14)
    if choice == 0:  # a line twice: usually a duplicate key
        index = rng.randrange(len(lines))
        lines.insert(index, lines[index])
        return "".join(lines)
    if choice == 1:  # a tab where indentation was
        return re.sub(r"^  ", "\t", text, count=rng.randint(1, 3), flags=re.MULTILINE)
    if choice == 2:  # cut anywhere
        return text[:where]
    if choice == 3:
        return "\ufeff" + text
    if choice == 4:
        return text[:where] + "\ufeff" + text[where:]
    if choice == 5:
        return text[:where] + rng.choice(["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028"])
    if choice == 6:
        return text + "---\nname: second\n"
    if choice == 7:
        return LAUGHS_HEAD + BILLION_LAUGHS + text
    if choice == 8:  # the laughs under a real key
        key = rng.choice(["hosts", "target", "profilers", "check", "compare", "start"])
        laughs = re.sub(rf"^{key}:.*$", f"{key}: *i", text, count=1, flags=re.MULTILINE)
        return LAUGHS_HEAD + BILLION_LAUGHS + laughs
    if choice == 9:  # a recursive alias
        return text + rng.choice(["loop: &l [*l]\n", "loop: &l {x: *l}\n"])
    if choice == 10:
        return text[:where] + rng.choice(["&", "*", "!", "|", ">", "%", "@", "`", "{", "[", "'"])
    if choice == 11:
        return text + rng.choice(["x: !!python/object/apply:os.system [id]\n", "x: !custom 1\n"])
    if choice == 12:
        return text + rng.choice(
            ["x: !!int nope\n", "x: !!bool maybe\n", "x: !!timestamp 2001-13-45\n", "x: !!float\n"]
        )
    return text[:where] + "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randint(1, 8)))


def byte_damage(rng: random.Random, raw: bytes) -> bytes:
    where = rng.randrange(len(raw) + 1)
    junk = rng.choice(
        [b"\xff", b"\xc3(", b"\xe2\x82", b"\xed\xa0\x80", b"\xfe\xff", bytes(rng.randbytes(16))]
    )
    return raw[:where] + junk + raw[where:]


@settings(FUZZ, max_examples=250)
@given(campaign=valid_campaigns(), seed=st.integers(0, 2**32))
def test_damaged_yaml_text_is_a_campaign_error(
    campaign_file: Path, campaign: dict[str, Any], seed: int
) -> None:
    rng = random.Random(seed)
    text = dump(campaign, rng=rng)
    for _ in range(rng.randint(1, 3)):
        text = text_damage(rng, text)
    raw = text.encode("utf-8")
    if rng.random() < 0.2:
        raw = byte_damage(rng, raw)
    campaign_file.write_bytes(raw)

    loaded, _ = load(campaign_file)

    if "&i [" in text or "&l [*l]" in text or "&l {x: *l}" in text:
        assert loaded is None, "an unknown key 'b'..'i' or 'loop' must be refused"


LAUGHS_UNDER = {
    "top level": "",
    "hosts": "hosts: *i\n",
    "command": "target: {launch: {command: *i}}\n",
    "env": "target: {launch: {command: [a], env: {A: *i}}}\n",
    "probe": "target: {probe: *i}\n",
    "metrics": "check: {metrics: *i}\n",
    "profilers": "profilers: {py-spy: *i}\n",
    "merge": "target: {attach: {<<: [*i]}}\n",
}


@pytest.mark.parametrize("where", list(LAUGHS_UNDER))
def test_billion_laughs_are_refused_at_once(tmp_path: Path, where: str) -> None:
    path = tmp_path / "laughs.yml"
    body = LAUGHS_UNDER[where] or "target: {attach: {pid: 1}}\n"
    # Nine aliases of the level before on each line: 9**9 leaves if anything expanded them.
    path.write_text(LAUGHS_HEAD + BILLION_LAUGHS + VALID_HEAD + body)
    loaded, message = load(path)
    assert loaded is None
    assert "unknown key" in message or "expected" in message, message


@pytest.mark.parametrize(
    "text",
    [
        "name: &n x\nduration: 1s\ntarget: &t {attach: *t}\n",
        "&a {name: *a, duration: 1s, target: {attach: {pid: 1}}}\n",
        "&a [*a]\n",
        "name: x\nduration: 1s\ntarget: {launch: {command: &c [a, *c]}}\n",
        "name: x\nduration: 1s\ntarget: {launch: {command: [a], env: &e {A: *e}}}\n",
    ],
    ids=["target", "document", "list", "command", "env"],
)
def test_recursive_aliases_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "loop.yml"
    path.write_text(text)
    loaded, _ = load(path)
    assert loaded is None


VALID_HEAD = "name: x\nduration: 1s\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", ": the file is empty"),
        (b"  \n# only a comment\n", ": the file is empty"),
        (b"~\n", ":1:1: expected a mapping of campaign keys"),
        (b"- a\n- b\n", ":1:1: expected a mapping of campaign keys"),
        (b"\xef\xbb\xbf" + VALID_HEAD.encode() + b"target: {attach: {pid: 1}}\n", None),
        (b"name: caf\xe9\n", ":1:10: not valid UTF-8 (byte 0xe9)"),
        (b"\xff\xfen\x00a\x00m\x00e\x00", ":1:1: not valid UTF-8"),
        (b"name: a\x00b\n", ":1:8: invalid YAML: character 0x0000 is not allowed"),
        (b"name: x\nduration: 1s\ntarget:\n\tattach: {pid: 1}\n", ":4:1: invalid YAML"),
        (b"name: x\nname: y\n", ":2:1: name: duplicate key (first given at line 1)"),
        (b"a: 1\n---\nb: 2\n", ":2:1: invalid YAML: but found another document"),
        (b"name: !!python/object/apply:os.system [id]\n", ":1:7: invalid YAML: could not"),
        (b"duration: !!int nope\n", ":1:11: invalid YAML: 'nope' is not a valid int"),
        (b"duration: !!bool maybe\n", ":1:11: invalid YAML: 'maybe' is not a valid bool"),
        (b"duration: 2001-13-45\n", ":1:11: invalid YAML: '2001-13-45' is not a valid timestamp"),
        (b"duration: !!timestamp soon\n", ":1:11: invalid YAML: 'soon' is not a valid timestamp"),
        (b"duration: " + b"9" * 5000 + b"\n", ":1:11: invalid YAML: a number of 5000 characters"),
        (b"duration: " + b"1:" * 50_000 + b"1\n", ":1:11: invalid YAML: a number of 100001"),
        (b"duration: " + b"1:" * 200 + b"1.5\n", ":1:11: invalid YAML: a number of 403"),
        (b'name: "\\ud800"\n', ":1:7: invalid YAML: a \\u escape for a lone surrogate"),
        (b'"\\udfff": 1\n', ":1:1: invalid YAML: a \\u escape for a lone surrogate"),
        (b"[" * 5000 + b"]" * 5000, ": nested too deeply to be a campaign"),
    ],
    ids=lambda value: value[:40].decode("latin-1") if isinstance(value, bytes) else None,
)
def test_yaml_oddities_get_a_position_and_a_reason(
    tmp_path: Path, content: bytes, expected: str | None
) -> None:
    path = tmp_path / "odd.yml"
    path.write_bytes(content)
    loaded, message = load(path)
    if expected is None:
        assert loaded is not None, message
    else:
        assert loaded is None
        assert f"{path}{expected}" in message, message


def test_a_two_megabyte_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    path.write_text(VALID_HEAD + "target: {attach: {pid: 1}}\n" + "# padding\n" * 200_000)
    loaded, message = load(path)
    assert loaded is None
    assert message == f"{path}: larger than 1024 KiB; is this a campaign file?"


@pytest.mark.parametrize("seed", range(8))
def test_binary_garbage_is_refused(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "garbage.yml"
    path.write_bytes(random.Random(seed).randbytes(4096))
    loaded, _ = load(path)
    assert loaded is None


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("process", "'" + "(" * 2000 + ")" * 2000 + "'", "Python can compile, got one nested"),
        ("process", "'a{4294967296}'", "the repetition number is too large"),
        ("process", "'(unclosed'", "expected a valid Python regular expression"),
        ("pid", "18446744073709551616.5", "expected a positive integer, got a number"),
        ("pid", ".nan", "expected a positive integer, got a number (nan)"),
    ],
)
def test_values_python_chokes_on_are_campaign_errors(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    path = tmp_path / "values.yml"
    path.write_text(f"{VALID_HEAD}target:\n  attach:\n    {key}: {value}\n")
    loaded, message = load(path)
    assert loaded is None
    assert message.startswith(f"{path}:5:")
    assert f"target.attach.{key}: " in message and expected in message, message


def test_odd_keys_are_shown_escaped_and_long_values_cut(tmp_path: Path) -> None:
    path = tmp_path / "keys.yml"
    path.write_text(
        f"name: {'n' * 50_000}\nduration: 1s\ntarget: {{attach: {{pid: 1}}}}\n"
        '"\\u202eevil": 1\n"a\\x1bb": 2\nprofilers: {ncu: {set: [1]}}\n'
    )
    loaded, message = load(path)
    assert loaded is None
    [name, rtl, escape, ncu] = message.split("\n")
    assert name.startswith(f"{path}:1:7: name: expected 1 to 64 letters")
    assert " ... " in name and name.endswith("nnn'")  # 50 000 n's, cut in the middle
    assert rtl.startswith(f"{path}:4:1: '\\u202eevil': unknown key (allowed: name, ")
    assert escape.startswith(f"{path}:5:1: 'a\\x1bb': unknown key")
    assert "\u202e" not in message and "\x1b" not in message
    assert ncu == (
        f"{path}:6:24: profilers.ncu.set: expected one of 'basic', 'detailed' or 'full', got a list"
    )


# ----------------------------------------------------------------------------- command line


def cli_cases(directory: Path) -> list[Path]:
    """Bad campaign files: some drawn by the mutation strategy, some YAML oddities. Each
    is checked to fail in-process first, so the command line never starts a campaign."""
    files: list[Path] = []

    @settings(FUZZ, max_examples=40)
    @given(mutation=mutated_campaigns(), seed=st.integers(0, 2**16))
    def draw(mutation: tuple[Any, str, KeyPath], seed: int) -> None:
        if len(files) >= 14:
            return
        path = directory / f"drawn-{len(files)}.yml"
        path.write_text(dump(mutation[0], rng=random.Random(seed)), encoding="utf-8")
        try:
            load_campaign(path)
        except CampaignError:
            files.append(path)
        else:
            path.unlink()

    draw()
    fixed = {
        "empty.yml": b"",
        "laughs.yml": (LAUGHS_HEAD + BILLION_LAUGHS + VALID_HEAD).encode(),
        "latin1.yml": b"name: caf\xe9\n",
        "surrogate-key.yml": VALID_HEAD.encode() + b'target: {attach: {pid: 1}}\n"\\ud800": 1\n',
        "huge-int.yml": VALID_HEAD.encode() + b"target: {attach: {pid: " + b"9" * 5000 + b"}}\n",
        "deep-regex.yml": VALID_HEAD.encode()
        + b"target: {attach: {process: '"
        + b"(" * 2000
        + b")" * 2000
        + b"'}}\n",
        "bad-tag.yml": VALID_HEAD.encode() + b"target: !!timestamp 2001-13-45\n",
        "big.yml": b"#" * (2 * 1024 * 1024),
    }
    for name, content in fixed.items():
        path = directory / name
        path.write_bytes(content)
        files.append(path)
    for path in files:
        with pytest.raises(CampaignError):
            load_campaign(path)
    return files


def test_the_command_line_exits_2_with_one_message_for_bad_files(tmp_path: Path) -> None:
    files = cli_cases(tmp_path)
    assert 15 <= len(files) <= 25
    out = tmp_path / "out"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", str(path), "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(run, files))

    for path, result in zip(files, results, strict=True):
        shown = f"{path.name}: rc={result.returncode} stderr={result.stderr!r}"
        assert result.returncode == 2, shown
        assert result.stderr.startswith(f"error: {path}"), shown
        assert "Traceback" not in result.stderr, shown
        assert result.stdout == "", shown
    assert not out.exists(), "nothing may run on bad input"


def test_nan_and_infinity_never_pass_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "nan.yml"
    for key in ("duration: .nan", "duration: .inf", "duration: -.inf"):
        path.write_text(f"name: x\n{key}\ntarget: {{attach: {{pid: 1}}}}\n")
        loaded, message = load(path)
        assert loaded is None and f"{path}:2:11: duration: expected a finite" in message
    threshold = "compare: {threshold: .nan}\ncheck: {alpha: .inf, regression_pct: .nan}\n"
    path.write_text(f"{VALID_HEAD}target: {{attach: {{pid: 1}}}}\n{threshold}")
    loaded, message = load(path)
    assert loaded is None
    for key in ("compare.threshold", "check.alpha", "check.regression_pct"):
        assert f": {key}: expected a " in message, message
