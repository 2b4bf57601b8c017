"""`fleetprof tools fetch`: fills and verifies the controller's tool cache (what the
offline hint tells an operator to run on a connected machine)."""

from __future__ import annotations

import json
import platform
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import toolcache
from orchestrator.cli.app import main


def test_fetch_reports_each_cached_binary_with_its_sha256() -> None:
    arch = toolcache.normalize_arch(platform.machine())
    cached = toolcache.ensure_pyspy(arch)  # the cache the tests use (filled once per machine)
    result = CliRunner().invoke(main, ["tools", "fetch", "--arch", platform.machine(), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["tools"] == [
        {
            "arch": arch,
            "cached": True,
            "version": cached.version,
            "path": str(cached.path),
            "sha256": cached.sha256,
        }
    ]


def test_an_unknown_architecture_is_bad_input() -> None:
    result = CliRunner().invoke(main, ["tools", "fetch", "--arch", "sparc64"])
    assert result.exit_code == 2
    assert "--arch sparc64: not an architecture py-spy is built for" in result.stderr
    assert "Traceback" not in result.output


def test_an_unreachable_index_fails_with_the_offline_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    monkeypatch.setenv("FLEETPROF_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["tools", "fetch", "--arch", "aarch64"])
    assert result.exit_code == 1
    assert "cannot reach the package index" in result.stderr
    assert "fleetprof tools fetch" in result.stderr
    assert "Traceback" not in result.output
