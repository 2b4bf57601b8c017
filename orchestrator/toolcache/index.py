"""The package index client: the files a project publishes with their sha256, from the
PEP 691 JSON page or the PEP 503 HTML page (http(s) or a file:// tree, credentials kept
out of every message)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

from orchestrator.toolcache.model import PipIndex, PublishedFile, ToolCacheError, Unreachable

_MAX_INDEX_PAGE_BYTES = 32 * 1024 * 1024
_INDEX_TIMEOUT_S = 30.0
_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def fetch_published_files(project: str, index: PipIndex) -> list[PublishedFile]:
    """The files the index lists for ``project`` with their published sha256.

    Asks for the PEP 691 JSON page and falls back to the PEP 503 HTML page, whose
    hashes sit in the link fragments.
    """
    base, auth = _split_credentials(index.url)
    page_url = base.rstrip("/") + f"/{project}/"
    shown = redact(page_url)
    request = urllib.request.Request(
        _file_index_page(page_url),
        headers={"Accept": f"{_SIMPLE_JSON}, text/html;q=0.1", "User-Agent": "fleetprof"},
    )
    if auth:
        request.add_header("Authorization", auth)
    try:
        with _opener(index).open(request, timeout=_INDEX_TIMEOUT_S) as response:
            body = response.read(_MAX_INDEX_PAGE_BYTES + 1)
            content_type = response.headers.get("Content-Type", "") or ""
            final_url = response.geturl() or page_url
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ToolCacheError(f"the package index {shown} has no project {project}") from exc
        raise Unreachable(
            f"the package index {shown} answered HTTP {exc.code} {exc.reason}"
        ) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Unreachable(f"cannot reach the package index {shown}: {reason}") from exc
    if len(body) > _MAX_INDEX_PAGE_BYTES:
        raise ToolCacheError(f"the index page {shown} is larger than expected; refusing it")

    text = body.decode("utf-8", errors="replace")
    if _SIMPLE_JSON in content_type or text.lstrip().startswith("{"):
        return _parse_simple_json(text, final_url, shown)
    return _parse_simple_html(text, final_url)


def _parse_simple_json(text: str, page_url: str, shown: str) -> list[PublishedFile]:
    try:
        data = json.loads(text)
        files = data["files"]
        if not isinstance(files, list):
            raise TypeError("'files' is not a list")
        published = []
        for item in files:
            hashes = item.get("hashes") or {}
            sha = hashes.get("sha256")
            published.append(
                PublishedFile(
                    filename=str(item["filename"]),
                    url=urllib.parse.urljoin(page_url, str(item["url"])),
                    sha256=str(sha).lower() if sha else None,
                )
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ToolCacheError(f"the index page {shown} is not a valid PEP 691 page: {exc}") from exc
    return published


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def _parse_simple_html(text: str, page_url: str) -> list[PublishedFile]:
    parser = _AnchorParser()
    parser.feed(text)
    published = []
    for href, label in parser.links:
        url = urllib.parse.urljoin(page_url, href)
        parts = urllib.parse.urlsplit(url)
        filename = label or urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
        fragment = urllib.parse.parse_qs(parts.fragment)
        hashes = fragment.get("sha256")
        sha = hashes[0] if hashes else None
        published.append(
            PublishedFile(
                filename=filename,
                url=urllib.parse.urlunsplit(parts._replace(fragment="")),
                sha256=sha.lower() if sha else None,
            )
        )
    return published


def _opener(index: PipIndex) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context(cafile=index.cert) if index.cert else None
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=context)]
    if index.proxy:
        proxy = index.proxy if "://" in index.proxy else f"http://{index.proxy}"
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return urllib.request.build_opener(*handlers)


def _file_index_page(url: str) -> str:
    # A file:// index is a directory tree; its project pages are index.html files.
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        if path.is_dir():
            return (path / "index.html").as_uri()
    return url


def _split_credentials(url: str) -> tuple[str, str | None]:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


def redact(url: str) -> str:
    return _split_credentials(url)[0]
