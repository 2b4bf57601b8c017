"""report.html in a real browser: Debian's headless Chromium.

The page is rendered from a realistic report whose device strings try to inject markup
and script (each payload would set ``document.title``). The browser must show no
injected element, run no injected code, log no error from the page's own script (which
marks the page when it ran to its end), request nothing from the network, and draw it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from orchestrator.report.html import render_html
from tests.support.reports import fleet_report

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/system-deps.sh)"
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_messages(stderr: str) -> list[str]:
    """What the page logged: its errors, uncaught exceptions and CSP violations."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.title: list[str] = []  # the document's title: the first <title>, in <head>
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))
        self._in_title = tag == "title" and not any(t == "title" for t, _ in self.found[:-1])

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "report.html"
    path.write_text(render_html(fleet_report()), encoding="utf-8")
    return path


def test_dom_has_no_injected_element_and_no_injected_code_ran(tmp_path: Path, page: Path) -> None:
    done = chromium(tmp_path, page, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Elements()
    dom.feed(done.stdout)
    # Every payload would set the title to "pwned"; it is still the page's own.
    report = fleet_report()
    assert "".join(dom.title) == f"fleetprof · {report['campaign']} · {report['run_id']}"
    tags = [tag for tag, _ in dom.found]
    assert "img" not in tags and "iframe" not in tags
    assert tags.count("script") == 1
    assert not [a for _, attrs in dom.found for a in attrs if a.startswith("on")]
    # The page's own script ran to its last line: the CSP hash matches and nothing threw.
    html = next(attrs for tag, attrs in dom.found if tag == "html")
    assert html.get("data-script") == "done"
    assert console_messages(done.stderr) == []
    # Sections are there in the live DOM, not only in the file.
    assert any(attrs.get("class") == "matrix" for _, attrs in dom.found)
    assert sum(1 for tag, a in dom.found if tag == "svg" and a.get("class") == "chart") > 10


def test_page_requests_nothing_from_the_network(tmp_path: Path, page: Path) -> None:
    done = chromium(tmp_path, page, "--dump-dom")
    dom = Elements()
    dom.feed(done.stdout)
    links = [
        value or ""
        for _, attrs in dom.found
        for name, value in attrs.items()
        if name in ("src", "href", "action", "srcset", "poster", "data")
    ]
    assert links, "the fleet table links to host sections"
    assert all(link.startswith("#") for link in links), links
    assert not re.search(r"https?://|url\(", page.read_text())


def test_a_throwing_script_would_be_caught(tmp_path: Path) -> None:
    """The check above is not vacuous: a page whose script throws is seen as such."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><title>t</title><script>null.x;"
        'document.documentElement.setAttribute("data-script", "done");</script>'
    )
    done = chromium(tmp_path, bad, "--dump-dom")
    assert 'data-script="done"' not in done.stdout
    assert any("Uncaught" in line for line in console_messages(done.stderr))


def test_screenshot_draws_the_page(tmp_path: Path, page: Path) -> None:
    shot = tmp_path / "report.png"
    done = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1400,3000")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 100_000  # a blank 1400x3000 page is a few KiB
    assert console_messages(done.stderr) == []
