"""A fleet report with every section filled and hostile device strings, and readers of the
HTML and Markdown renderings (a browser's start tags, a table's cells)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

from orchestrator.analysis.lines import hot_lines, line_counts
from orchestrator.analysis.stacks import flame_tree, parse_folded, top_functions

PWN_IMG = "<img src=x onerror=\"document.title='pwned'\">"


PWN_SCRIPT = "\"><script>document.title='pwned'</script>"


PWN_LINK = "javascript:document.title='pwned'"


PWN_MD = "| [click](javascript:alert(1)) `code` # head"


def fleet_report() -> dict[str, Any]:
    """Two groups, five hosts, every section filled; hostile device strings throughout."""
    hosts_spec = [
        ("edge-01", "jetson-orin-nx", False, 45),
        ("edge-02", "jetson-orin-nx", False, 44),
        (PWN_IMG, "jetson-orin-nx", True, 70),
        ("pi-01", PWN_SCRIPT, False, 30),
        (PWN_MD, PWN_SCRIPT, False, 31),
    ]
    hosts = []
    trees = {}
    for i, (name, group, hot, decode) in enumerate(hosts_spec):
        folded = parse_folded(
            _folded(
                {
                    f"main (app.py:1);run (pipeline.py:10);{DECODE}": decode * 10,
                    "main (app.py:1);run (pipeline.py:10);infer (model.py:5)": 300,
                    f"main (app.py:1);run (pipeline.py:10);{PWN_SCRIPT} ({PWN_IMG}:3)": 80,
                    f"main (app.py:1);{PWN_LINK} (x.py:1)": 40 + i * 10,
                    "main (app.py:1);idle (sched.py:2)": 120,
                }
            )
        )
        tree = flame_tree(folded)
        trees[name] = tree
        host = _host_from(name, folded, status="partial" if hot else "ok")
        host.update(
            group=group,
            hw_model=group,
            series=_series(i, hot),
            data_quality=[f"py-spy fell behind {PWN_IMG}"] if hot else [],
        )
        host["metrics"].update(
            {"workload.fps": 12.0 if hot else 29.0 + i / 10, "thermal.max_c": 84.0 if hot else 55.0}
        )
        hosts.append(host)
    groups = []
    for group in ("jetson-orin-nx", PWN_SCRIPT):
        members = [h for h in hosts if h["group"] == group]
        groups.append(
            {
                "hw_model": group,
                "hosts": [h["name"] for h in members],
                "metrics": {
                    "workload.fps": {"median": 29.1, "mad": 0.2, "n": len(members)},
                    PWN_IMG: {"median": 1.0, "mad": 0.0, "n": len(members)},
                },
                "flamegraph": members[0]["flamegraph"],
                "hot_lines": members[0]["hot_lines"],
            }
        )
    functions = [
        {"function": "decode_frame", "file": "video_pipeline.py"},
        {"function": "infer", "file": "model.py"},
        {"function": PWN_SCRIPT, "file": PWN_IMG},
        {"function": PWN_LINK, "file": "x.py"},
    ]
    cells: list[list[float | None]] = []
    for f in functions:
        row: list[float | None] = []
        for h in hosts:
            match = [t["self_pct"] for t in h["top_functions"] if t["function"] == f["function"]]
            row.append(match[0] if match else None)
        cells.append(row)
    cells[1][4] = None
    deviant = [[j == 2 and i == 0 for j in range(5)] for i in range(4)]
    return {
        "schema": "fleetprof.report/1",
        "campaign": PWN_MD,
        "run_id": "20261125-111500-ab12",
        "started_at": "2026-11-25T11:15:00+00:00",
        "duration_s": 60.0,
        "mode": "attach",
        "summary": {"hosts": 5, "ok": 4, "partial": 1, "failed": 0, "unreachable": 0, "skipped": 0},
        "start_skew_ms": 8.5,
        "compare": {"group_by": "hw_model", "threshold": 3.5},
        "hosts": hosts,
        "groups": groups,
        "outliers": [
            {
                "host": PWN_IMG,
                "hw_model": "jetson-orin-nx",
                "metric": "workload.fps",
                "value": 12.0,
                "group_median": 29.1,
                "robust_z": -27.3,
                "kind": "metric",
                "function": None,
                "file": None,
            },
            {
                "host": PWN_IMG,
                "hw_model": "jetson-orin-nx",
                "metric": "self_pct",
                "value": 52.1,
                "group_median": 41.0,
                "robust_z": 9.4,
                "kind": "function_share",
                "function": PWN_SCRIPT,
                "file": PWN_LINK,
            },
        ],
        "function_matrix": {
            "functions": functions,
            "hosts": [h["name"] for h in hosts],
            "cells": cells,
            "deviant": deviant,
        },
        "diffs": {
            "host_vs_group": {
                h["name"]: _diff_tree(
                    trees[h["name"]],
                    groups[0 if h["group"] == "jetson-orin-nx" else 1]["flamegraph"],
                )
                for h in hosts
            },
            "group_vs_group": [
                {
                    "a": "jetson-orin-nx",
                    "b": PWN_SCRIPT,
                    "tree": _diff_tree(trees["edge-01"], trees["pi-01"]),
                }
            ],
        },
        "regressions": [],
    }


def start_tags(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every start tag the page really has, as a browser's tokenizer sees it."""
    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

    Collector().feed(page)
    return found


def unescape(text: str) -> str:
    """What a Markdown renderer shows for md_text's output."""
    text = re.sub(r"\\(.)", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def cells(row: str) -> list[str]:
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def _host_from(name: str, folded_profile: Any, status: str = "ok") -> dict[str, Any]:
    return {
        "name": name,
        "hw_model": "jetson-orin-nx",
        "arch": "aarch64",
        "status": status,
        "reason": None,
        "start_offset_ms": 1.25,
        "profilers": {"py-spy": {"status": "ok", "reason": None}},
        "metrics": {
            "pyspy.samples": float(folded_profile.total_samples),
            "pyspy.effective_rate_hz": 81.4,
            "pyspy.requested_rate_hz": 97,
            "workload.fps": 29.5,
        },
        "top_functions": [
            {
                "function": s.function,
                "file": s.file,
                "self_pct": s.self_pct,
                "total_pct": s.total_pct,
            }
            for s in top_functions(folded_profile)
        ],
        "flamegraph": flame_tree(folded_profile),
        # The device's source text of each line: hostile too.
        "hot_lines": [
            f.to_dict()
            for f in hot_lines(
                line_counts(folded_profile),
                folded_profile.total_samples,
                {PWN_IMG: {3: PWN_SCRIPT}, "x.py": {1: PWN_MD}, "video_pipeline.py": {20: PWN_IMG}},
            )
        ],
        "data_quality": [],
    }


DECODE = "decode_frame (video_pipeline.py:20)"


def _folded(stages: dict[str, int]) -> str:
    lines = []
    for stack, count in stages.items():
        lines.append(f"{stack} {count}")
    return "\n".join(lines) + "\n"


def _diff_tree(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """A diff tree (shares of two flame trees) as analysis would put it in report.json."""

    def walk(
        x: Mapping[str, Any] | None, y: Mapping[str, Any] | None, ta: float, tb: float
    ) -> dict[str, Any]:
        node = x or y or {}
        kids: dict[tuple[Any, Any], list[Mapping[str, Any] | None]] = {}
        for side, tree in ((0, x), (1, y)):
            for child in (tree or {}).get("children", []):
                kids.setdefault((child["name"], child.get("file")), [None, None])[side] = child
        return {
            "name": node["name"],
            "file": node.get("file"),
            "a": (x or {}).get("value", 0) / ta,
            "b": (y or {}).get("value", 0) / tb,
            "children": [walk(p, q, ta, tb) for p, q in kids.values()],
        }

    return walk(a, b, float(a["value"]), float(b["value"]))


def _series(seed: int, hot: bool) -> dict[str, list[float | None]]:
    n = 120
    t = [round(i * 0.5, 3) for i in range(n)]
    wave = [math.sin(i / 9.0 + seed) for i in range(n)]
    return {
        "system.t": t,
        "system.cpu_pct": [round(55 + 20 * w + seed, 2) for w in wave],
        "system.target.cpu_pct": [None] + [round(80 + 15 * w, 2) for w in wave[1:]],
        "system.target.rss_mb": [round(180 + i * (0.9 if hot else 0.05), 2) for i in range(n)],
        "system.target.read_bytes_per_s": [None] + [1000.0 * (5 + w) for w in wave[1:]],
        "system.target.write_bytes_per_s": [None] + [2.0e6 * (3 + w) for w in wave[1:]],
        "system.thermal.max_c": [
            round((78 if hot else 52) + 3 * w + i * 0.05, 1) for i, w in enumerate(wave)
        ],
        "system.cpufreq.min_ratio": [round(0.62 if hot and i > 40 else 1.0, 3) for i in range(n)],
        "system.mem.used_pct": [round(40 + 2 * w, 2) for w in wave],
        "memory.t": t[::2],
        "memory.rss_mb": [round(180 + i * (1.8 if hot else 0.1), 2) for i in range(n // 2)],
        "memory.pss_mb": [round(160 + i * (1.7 if hot else 0.1), 2) for i in range(n // 2)],
        "iotop.t": [float(i) for i in range(59)],
        "iotop.target.write_bytes_per_s": [3.0e6 * (2 + math.cos(i / 5 + seed)) for i in range(59)],
        "iotop.total.write_bytes_per_s": [4.0e6 * (2 + math.cos(i / 5 + seed)) for i in range(59)],
    }
