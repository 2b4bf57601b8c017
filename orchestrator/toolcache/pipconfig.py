"""Which package index pip is configured with (``pip config list``): its URL, CA bundle and
proxy, so the tool cache downloads through the same network settings as pip."""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys

from orchestrator.toolcache.model import PipIndex

DEFAULT_INDEX_URL = "https://pypi.org/simple"


def pip_index() -> PipIndex:
    """The index URL, CA bundle and proxy pip is configured with (``pip config list``)."""
    values: dict[str, str] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0:
            values = parse_pip_config(done.stdout)

    def pick(option: str) -> str | None:
        # pip's own precedence for `pip download`: environment, command section, global.
        for section in (":env:", "download", "global"):
            value = values.get(f"{section}.{option}", "").strip()
            if value:
                return value
        return None

    return PipIndex(
        url=pick("index-url") or DEFAULT_INDEX_URL,
        cert=pick("cert"),
        proxy=pick("proxy"),
    )


def parse_pip_config(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        values[key.strip()] = str(value)
    return values
