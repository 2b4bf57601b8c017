"""`fleetprof inspect` for every profiler the registry knows: a real file of each is parsed
into something (exit 0), or, where the parse needs a setting only the run's campaign gives,
the user is told which (exit 2, the key and --campaign named); never a traceback, not even
for a file of the wrong kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator import profilers
from orchestrator.cli.app import main
from tests.support.paths import FIXTURES
from tests.unit.test_profiler_ncu import HEADER, row

# A real output of each profiler (tests/fixtures/SOURCES.md says how each was made). ncu
# has none yet (SOURCES.md): its file is written below in ncu's layout, as its own tests do.
REAL = {
    "py-spy": FIXTURES / "py-spy" / "io-writer.folded.txt",
    "iotop": FIXTURES / "iotop" / "iotop-b-o-t-k-P.txt",
    "system": FIXTURES / "system" / "system.net.jsonl",
    "memory": FIXTURES / "memory" / "memory.jsonl",
    "nvidia-smi": FIXTURES / "nvidia-smi" / "gtx-loop-index-units.520.csv",
    "tegrastats": FIXTURES / "tegrastats" / "agx-orin-jp6.txt",
    "nsys": FIXTURES / "nsys" / "cuda_gpu_kern_sum.nsys-2024.6.2.csv",
    "ncu": None,
    "cprofile": FIXTURES / "cprofile" / "finished.py3.11.json",
    "tracemalloc": FIXTURES / "tracemalloc" / "tracemalloc.json",
    "memray": FIXTURES / "memray" / "holder.memray.json",
    "line-profiler": FIXTURES / "line-profiler" / "hot.line_profiler.json",
    "open-files": FIXTURES / "open-files" / "open_files.jsonl",
    "strace": FIXTURES / "strace" / "c-f-w.txt",
    "prometheus": FIXTURES / "prometheus" / "prometheus.jsonl",
    "tcpdump": FIXTURES / "tcpdump" / "lo-mixed.tcpdump.json",
}
# The profilers whose parse needs the run's own settings, and the campaign that ran them.
CAMPAIGN = {"prometheus": FIXTURES / "prometheus" / "campaign.yml"}


def real_file(name: str, tmp_path: Path) -> Path:
    path = REAL[name]
    if path is not None:
        return path
    written = tmp_path / "ncu.csv"
    written.write_text(
        "\n".join(
            [
                HEADER,
                row(1, "saxpy", "GPU Speed Of Light", "Duration", "usecond", "12.5"),
                row(1, "saxpy", "GPU Speed Of Light", "Memory Throughput", "%", "81.2"),
            ]
        )
    )
    return written


def inspect(*args: str) -> Result:
    return CliRunner().invoke(main, ["inspect", *args])


def no_traceback(result: Result) -> None:
    """Exited on its own (0, or 2 through the CLI's bad-input exit), with no Python error."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output


def test_every_registered_profiler_has_a_file_here() -> None:
    assert set(REAL) == set(profilers.REGISTRY)
    assert all(path is None or path.is_file() for path in REAL.values())


@pytest.mark.parametrize("name", sorted(profilers.REGISTRY))
def test_a_real_file_of_every_profiler_is_parsed_or_the_missing_setting_named(
    name: str, tmp_path: Path
) -> None:
    path = real_file(name, tmp_path)
    result = inspect(name, str(path), "--json")
    no_traceback(result)
    if name in CAMPAIGN:
        assert result.exit_code == 2
        assert result.stdout == ""
        message = " ".join(result.stderr.split())
        assert str(path) in message and "--campaign" in message, message
        result = inspect(name, str(path), "--campaign", str(CAMPAIGN[name]), "--json")
        no_traceback(result)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["profiler"] == name and data["file"] == str(path)
    assert data["metrics"] or data["tables"] or data["top_functions"], data


def test_prometheus_without_its_campaign_names_the_key_it_needs() -> None:
    result = inspect("prometheus", str(REAL["prometheus"]))
    assert result.exit_code == 2
    assert "endpoints" in result.stderr and "--campaign" in result.stderr


def test_the_campaign_s_settings_are_the_parse_s() -> None:
    """The run's campaign names prometheus' endpoints: the table says which one answered."""
    path = REAL["prometheus"]
    result = inspect("prometheus", str(path), "--campaign", str(CAMPAIGN["prometheus"]), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["metrics"]["prom.work_items_total.rate_per_s"] > 0
    endpoints = {row["endpoint"] for row in data["tables"]["prometheus"]}
    assert len(endpoints) == 1 and next(iter(endpoints)).startswith("http://127.0.0.1:")


@pytest.mark.parametrize("name", sorted(profilers.REGISTRY))
def test_a_file_of_the_wrong_kind_is_no_traceback(name: str, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b'\x00\xff{"t": "x", "ep": 7}\n<html>\n[1, 2]\nnot, a, csv\n' * 20)
    args = ["--campaign", str(CAMPAIGN[name])] if name in CAMPAIGN else []
    result = inspect(name, str(junk), *args)
    no_traceback(result)
    assert result.exit_code in (0, 2), result.output


def test_a_campaign_that_did_not_run_the_profiler_is_named(tmp_path: Path) -> None:
    result = inspect("strace", str(REAL["strace"]), "--campaign", str(CAMPAIGN["prometheus"]))
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"{CAMPAIGN['prometheus']}: profilers.strace" in message
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\n")
    result = inspect("strace", str(REAL["strace"]), "--campaign", str(bad))
    assert result.exit_code == 2 and str(bad) in result.stderr
    no_traceback(result)
