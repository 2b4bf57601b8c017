"""The reference pages cannot drift from the code: every campaign key the models accept is
in docs/campaigns.md (and nothing else is), every metric name the parsers emit is in
docs/metrics.md, every reason preflight and plan can give is explained in
docs/troubleshooting.md, and the docs' relative links lead somewhere.

Names and reasons are collected from the code itself (the pydantic models; an AST walk of
the profilers, the facts module, plan and flow), so a new key, metric or reason fails here
until its page says what it is.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from orchestrator.campaign.model import Campaign
from tests.support.paths import REPO

DOCS = REPO / "docs"
PROFILERS = REPO / "orchestrator" / "profilers"


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _flat(text: str) -> str:
    """Markdown text as one line: blockquote markers dropped, whitespace collapsed."""
    lines = [re.sub(r"^\s*>\s?", "", line) for line in text.splitlines()]
    return " ".join(" ".join(lines).split())


# -- campaign keys ---------------------------------------------------------------------------


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def campaign_keys(model: type[BaseModel] = Campaign, prefix: str = "") -> Iterator[str]:
    """Every key path a campaign file may hold, as YAML spells it (``profilers.py-spy.rate``);
    a mapping of settings yields its own path and its keys'."""
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        key = f"{prefix}{alias if isinstance(alias, str) else name}"
        yield key
        inner = _model_in(info.annotation)
        if inner is not None:
            yield from campaign_keys(inner, f"{key}.")


def _keys_table(text: str) -> list[str]:
    """The first column of the `## Keys` table of campaigns.md."""
    section = text.split("\n## Keys\n", 1)[1].split("\n## ", 1)[0]
    found = []
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            found.append(match.group(1))
    return found


def test_every_campaign_key_is_in_the_reference_table_and_every_row_is_a_key() -> None:
    table = _keys_table(_read("campaigns.md"))
    keys = list(campaign_keys())
    assert len(table) == len(set(table)), "a key is listed twice"
    # Leaves (a value, not a mapping of settings) each have their own row; a mapping may.
    leaves = [k for k in keys if not any(other.startswith(k + ".") for other in keys)]
    missing = [k for k in leaves if k not in table]
    assert not missing, f"campaign keys missing from docs/campaigns.md's Keys table: {missing}"
    stale = [k for k in table if k not in keys]
    assert not stale, f"docs/campaigns.md documents keys the code does not accept: {stale}"


def test_the_campaign_key_walk_sees_every_profiler_and_nested_key() -> None:
    keys = set(campaign_keys())
    assert {"profilers.py-spy.rate", "profilers.nvidia-smi.interval", "profilers.ncu.set"} <= keys
    assert {"check.confirm.duration", "limits.grace", "start.lead", "target.repeats"} <= keys


# -- metric names ----------------------------------------------------------------------------

METRIC_SOURCES = [*sorted(PROFILERS.glob("*.py")), REPO / "orchestrator/stages/probe.py"]
METRIC_SOURCES.append(REPO / "orchestrator/stages/parse.py")
METRIC_SOURCES.append(REPO / "orchestrator/stages/workload.py")
_METRIC_RE = re.compile(
    r"^(pyspy|system|target|thermal|cpufreq|memory|iotop|gpu|tegra|nsys|ncu|probe|session|"
    r"workload|overhead|cprofile|tracemalloc|memray|fds|strace|prom|net|tcpdump)"
    r"\.[A-Za-z0-9_.{}]+$"
)
# Strings in those modules that look like metric names and are not: the raw files, and
# the nvidia-smi query fields (`memory.used`).
_FILE_SUFFIXES = (
    ".json",
    ".jsonl",
    ".stdout",
    ".csv",
    ".folded",
    ".sqlite",
    ".nsys-rep",
    ".prof",
    ".bin",
    ".txt",
    ".pcap",
)
SERIES_SOURCES = ("system", "memory", "iotop", "fds")


def _template(node: ast.JoinedStr) -> str:
    return "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)


def code_metric_names() -> tuple[set[str], set[str]]:
    """(exact names, templates with ``{}``) of the metric-like strings in the parsers."""
    from orchestrator.profilers import nvidia_smi

    not_metrics = set(nvidia_smi.QUERY_FIELDS) | {
        name for names in nvidia_smi._COLUMNS.values() for name in names
    }
    exact: set[str] = set()
    templates: set[str] = set()
    for path in METRIC_SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in parts or not _METRIC_RE.match(node.value):
                    continue
                if node.value.endswith(_FILE_SUFFIXES) or node.value in not_metrics:
                    continue
                exact.add(node.value)
            elif isinstance(node, ast.JoinedStr):
                text = _template(node)
                if _METRIC_RE.match(text) and not text.endswith(_FILE_SUFFIXES):
                    templates.add(text)
                elif text.startswith("{}.") and not text.endswith(_FILE_SUFFIXES):
                    templates.add(text)  # f"{prefix}.util_pct.mean": gpu.<i>.util_pct.mean
    return exact, templates


def doc_metric_names(text: str) -> set[str]:
    """Names in the first column of metrics.md's tables; `a.b.mean` / `.max` is a.b.max."""
    names: set[str] = set()
    for line in text.splitlines():
        match = re.match(r"^\| (`[^|]+) \|", line)
        if not match:
            continue
        previous = ""
        for token in re.findall(r"`([^`]+)`", match.group(1)):
            if token.startswith(".") and previous:
                token = previous.rsplit(".", 1)[0] + token
            names.add(token)
            previous = token
    return names


def _documented(name: str, documented: set[str]) -> bool:
    candidates = {name} | {f"{source}.{name}" for source in SERIES_SOURCES}
    for doc in documented:
        pattern = "^" + re.sub(r"\\<[a-z]+\\>", r"[^`]+", re.escape(doc)) + "$"
        if any(re.match(pattern, c) for c in candidates):
            return True
    return False


def test_every_metric_the_parsers_emit_is_in_the_metrics_reference() -> None:
    documented = doc_metric_names(_read("metrics.md"))
    exact, templates = code_metric_names()
    assert len(exact) > 60 and len(templates) > 10, (len(exact), len(templates))
    missing = sorted(name for name in exact if not _documented(name, documented))
    assert not missing, f"metrics missing from docs/metrics.md: {missing}"
    # f"thermal.{name}.max_c" and the like: some documented name must have that shape.
    shapeless = sorted(
        t
        for t in templates
        if not any(fnmatch.fnmatchcase(doc, t.replace("{}", "*")) for doc in documented)
    )
    assert not shapeless, f"metric name patterns missing from docs/metrics.md: {shapeless}"


def _all_constants() -> set[str]:
    return {
        node.value
        for path in METRIC_SOURCES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_the_metrics_reference_names_only_what_the_code_can_emit() -> None:
    exact, templates = code_metric_names()
    # "{}.{}" (a series key: source and column) would match anything.
    templates = {t for t in templates if re.search(r"[a-z]", t.replace("{}", ""))}
    # Series: "<source>.<column>", the column a string in the parsers ("cpu_pct").
    columns = exact | _all_constants()
    code = (
        exact
        | {f"{s}.{n}" for n in columns for s in SERIES_SOURCES}
        | {f"{s}.t" for s in SERIES_SOURCES}
    )
    stale = []
    for doc in doc_metric_names(_read("metrics.md")):
        if "<" in doc:
            continue  # a family of names (gpu.<i>...): checked against the templates above
        if doc in code or any(fnmatch.fnmatchcase(doc, t.replace("{}", "*")) for t in templates):
            continue
        if doc.endswith("_cv") and doc[: -len("_cv")] in code:
            continue  # every probe metric's coefficient of variation: f"{metric}_cv"
        stale.append(doc)
    assert not stale, f"docs/metrics.md names metrics the code does not emit: {sorted(stale)}"


# -- preflight and plan reasons ----------------------------------------------------------------

REASON_FUNCTIONS = {
    # module: functions whose returned strings are reasons an operator sees
    "orchestrator/profilers/*.py": ("skip_reason", "launcher_taken"),
    "orchestrator/stages/plan.py": ("_unavailable",),
    "fleetprof_device/facts.py": ("attach_permission",),
    "fleetprof_device/*.py": ("busy_reason", "too_little", "fell"),
    "orchestrator/toolcache/*.py": ("_offline_hint",),
}
# Module constants that are reasons or notes by their name (NOT_INSTALLED, NO_DRIVER,
# NO_DELAYACCT, COUNTERS_ADMIN_ONLY, PERMISSION_NOTE, ...).
_REASON_CONSTANT = re.compile(r"^(NOT|NO|COUNTERS|PERMISSION)_[A-Z_]+$")


def _strings(node: ast.AST | None, scope: dict[str, list[ast.AST]], module: Any) -> list[str]:
    """The reason texts an expression can evaluate to; ``{}`` where a value is filled in."""
    if node is None:
        return []
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else []
    if isinstance(node, ast.JoinedStr):
        return [_template(node)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return [re.sub(r"%[-0-9.]*[sdfr]", "{}", s) for s in _strings(node.left, scope, module)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        lefts = _strings(node.left, scope, module)
        return [a + b for a in lefts for b in _strings(node.right, scope, module)]
    if isinstance(node, ast.BoolOp):
        return [s for value in node.values for s in _strings(value, scope, module)]
    if isinstance(node, ast.IfExp):
        return _strings(node.body, scope, module) + _strings(node.orelse, scope, module)
    if isinstance(node, ast.Tuple):
        return [s for element in node.elts for s in _strings(element, scope, module)]
    if isinstance(node, ast.Name):
        if node.id in scope:
            return [s for value in scope[node.id] for s in _strings(value, {}, module)]
        value = getattr(module, node.id, None) if module is not None else None
        return [value] if isinstance(value, str) else []
    return []


def _local_assignments(function: ast.AST) -> dict[str, list[ast.AST]]:
    found: dict[str, list[ast.AST]] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(node.value)
    return found


def _load(path: Path) -> ModuleType | None:
    relative = path.relative_to(REPO)
    if relative.parts[0] != "orchestrator":
        return None  # device modules: their reasons are literals in the functions
    return importlib.import_module(".".join(relative.with_suffix("").parts))


def code_reasons() -> dict[str, str]:
    """Reason text (``{}`` for filled-in values) -> where the code gives it."""
    reasons: dict[str, str] = {}
    for pattern, functions in REASON_FUNCTIONS.items():
        for path in sorted(REPO.glob(pattern)):
            module = _load(path)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            where = str(path.relative_to(REPO))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and node.name in functions:
                    scope = _local_assignments(node)
                    for ret in (n for n in ast.walk(node) if isinstance(n, ast.Return)):
                        for text in _strings(ret.value, scope, module):
                            reasons.setdefault(text, f"{where}:{ret.lineno}")
                if isinstance(node, ast.FunctionDef):
                    # ProfilerPlan.skipped(NAME, REASON, ...): the reason as planned.
                    scope = _local_assignments(node)
                    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                        func = call.func
                        if isinstance(func, ast.Attribute) and func.attr == "skipped":
                            for text in _strings(call.args[1], scope, module):
                                reasons.setdefault(text, f"{where}:{call.lineno}")
            for statement in tree.body:
                if isinstance(statement, ast.Assign) and module is not None:
                    for target in statement.targets:
                        if isinstance(target, ast.Name) and _REASON_CONSTANT.match(target.id):
                            value = getattr(module, target.id)
                            if isinstance(value, str):
                                reasons.setdefault(value, f"{where}:{statement.lineno}")
    # What the controller writes when a host drops out at preflight or plan.
    flow = REPO / "orchestrator/stages/flow.py"
    for node in ast.walk(ast.parse(flow.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name in ("preflight", "plan"):
            for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                if isinstance(call.func, ast.Attribute) and call.func.attr == "_drop":
                    for text in _strings(call.args[3], {}, None):
                        reasons.setdefault(text, f"orchestrator/stages/flow.py:{call.lineno}")
    # ToolUnavailable: no py-spy build for a device's architecture (py-spy is skipped);
    # TargetError: the session's target cannot be found when the window opens.
    for pattern, exception in (
        ("orchestrator/toolcache/*.py", "ToolUnavailable"),
        ("fleetprof_device/procfs.py", "TargetError"),
        ("fleetprof_device/target.py", "TargetError"),
    ):
        for path in sorted(REPO.glob(pattern)):
            where = str(path.relative_to(REPO))
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                    func = node.exc.func
                    if isinstance(func, ast.Name) and func.id == exception:
                        for text in _strings(node.exc.args[0], {}, None):
                            reasons.setdefault(text, f"{where}:{node.lineno}")
    # The note on a device that started after the common start (a clock or lead problem).
    parse = REPO / "orchestrator/stages/parse.py"
    for node in ast.walk(ast.parse(parse.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if node.func.attr == "append" and getattr(owner, "attr", "") == "data_quality":
                for text in _strings(node.args[0], {}, None):
                    reasons.setdefault(text, f"orchestrator/stages/parse.py:{node.lineno}")
    return {text: where for text, where in reasons.items() if len(text.strip("{} ")) > 3}


def _quoted(reason: str, page: str) -> bool:
    parts = [re.escape(" ".join(p.split())) for p in reason.split("{}")]
    return re.search(r".{1,200}?".join(parts), page) is not None


def test_every_preflight_and_plan_reason_is_explained_in_troubleshooting() -> None:
    reasons = code_reasons()
    # The walk must keep finding the reasons the page is about, or it proves nothing.
    for known in (
        "kernel.yama.ptrace_scope=3: no process may be attached, even by root",
        "py-spy profiles a Python process; a probe target has none",
        "preflight returned no facts",
    ):
        assert known in reasons, known
    assert any("ERR_NVGPUCTRPERM" in r for r in reasons)
    assert any("task_delayacct" in r for r in reasons)
    assert any(r.startswith("busy: ") for r in reasons)
    assert any("below the floor" in r for r in reasons)
    assert len(reasons) >= 25, len(reasons)
    page = _flat(_read("troubleshooting.md"))
    missing = [
        f"{where}: {text}" for text, where in sorted(reasons.items()) if not _quoted(text, page)
    ]
    assert not missing, "reasons not quoted in docs/troubleshooting.md:\n" + "\n".join(missing)


def test_the_reason_match_needs_the_whole_message() -> None:
    page = _flat("> iotop needs root (or CAP_NET_ADMIN) to read the kernel's\n> per-process I/O")
    assert _quoted("iotop needs root (or CAP_NET_ADMIN) to read the kernel's per-process I/O", page)
    assert not _quoted("iotop needs root (or CAP_NET_ADMIN) to read the kernel's files", page)
    assert _quoted(
        "busy: another session holds {} (campaign {})",
        "busy: another session holds the host (campaign nightly)",
    )


# -- links --------------------------------------------------------------------------------------

_LINK_RE = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in text.splitlines():
        match = re.match(r"^#{1,6} (.+)$", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower().replace("`", ""))
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_relative_links_in_the_docs_lead_to_files_and_headings() -> None:
    pages = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        for target in _LINK_RE.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
