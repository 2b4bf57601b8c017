"""The builtin "prometheus": the runner scrapes Prometheus endpoints on the device itself
during the window, one thread per endpoint, and writes one JSON line per scrape.

Only ``http://`` URLs whose host is a loopback address or ``localhost`` are accepted, and
the name is resolved here: every address it resolves to must be loopback, and the
connection goes to that address (no second lookup). http.client, not urllib: urllib would
follow redirects and the environment's proxies, either of which could reach another host;
http.client does neither. A scrape gets ``timeout_s`` in all (not per socket read: an
endpoint that drips bytes is cut too), never past the deadline, and at most
``max_response_bytes`` of answer; a longer answer is not parsed. The text is reduced on the
device (exposition.py) to the families the campaign keeps.

A record is ``{"t", "ep", "ms", "bytes", "m": {family: ...}, "samples", ...}`` for a scrape
that answered, ``{"t", "ep", "error"}`` for one that did not (``ep``: the endpoint's index in
the plan's list).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import re
import socket
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from . import exposition
from .contract import (
    MIB,
    PROM_MAX_ENDPOINTS,
    PROM_MAX_LINES,
    PROM_MAX_METRICS,
    PROM_MAX_RESPONSE_BYTES,
    PROM_MAX_SERIES,
    PROM_MAX_TIMEOUT_S,
    PROM_MIN_TIMEOUT_S,
)
from .procfs import os_error_text
from .procread import SAMPLER_JOIN_S
from .runlog import RunnerLog

DEFAULTS = {
    "timeout_s": 2.0,
    "max_response_bytes": 4 * MIB,
    "max_metrics": 100,
    "max_series": 100,
}
MAX_ERROR_KINDS = 5  # distinct error texts kept per endpoint; the rest count as "other"
CHUNK = 64 * 1024
ACCEPT = "text/plain;version=0.0.4"


def url_problem(url: Any) -> Optional[str]:
    """Why ``url`` is not an endpoint the runner may scrape (by its text alone), or None."""
    if not isinstance(url, str) or not url or len(url) > 2000:
        return "expected an http:// URL"
    if any(ch in url for ch in "\r\n\t #"):
        return "a URL without spaces or a #fragment"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return "not a URL (%s)" % exc
    if parts.scheme != "http":
        return "only http:// is scraped (got %s://)" % (parts.scheme or "?")
    if parts.username is not None or parts.password is not None:
        return "a URL with a user or password is not scraped"
    if port is None or port == 0:
        return "name the port, like http://127.0.0.1:9100/metrics"
    host = parts.hostname or ""
    if host == "localhost":
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "the host must be localhost or a loopback address (127.0.0.1, ::1), got %r" % host
    if not address.is_loopback:
        return "only the device's own loopback is scraped, not %s" % host
    return None


def resolve(url: str) -> Tuple[Tuple[List[str], int], str, str]:
    """((the addresses to connect to, in the resolver's order, the port), the Host header,
    the path), every address the host resolves to being loopback; raises ValueError saying
    why not."""
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    parts = urlsplit(url)
    host, port = parts.hostname or "", int(parts.port or 0)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError("%s does not resolve: %s" % (host, os_error_text(exc))) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    strange = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if not addresses or strange:
        shown = ", ".join(strange) or "nothing"
        raise ValueError("%s resolves to %s, not loopback" % (host, shown))
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return (addresses, port), parts.netloc, path


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _regex_list_error(key: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        return "options.%s must be a list of regular expressions or null" % key
    for pattern in value:
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError):
            return "options.%s: %r is not a regular expression" % (key, pattern)
    return None


def option_errors(options: Dict[str, Any]) -> List[str]:
    """The plan's options for the builtin prometheus, beyond the samplers' interval."""
    errors: List[str] = []
    endpoints = options.get("endpoints")
    if not isinstance(endpoints, list) or not 1 <= len(endpoints) <= PROM_MAX_ENDPOINTS:
        errors.append("options.endpoints must be a list of 1 to %d URLs" % PROM_MAX_ENDPOINTS)
    else:
        for index, url in enumerate(endpoints):
            problem = url_problem(url)
            if problem is not None:
                errors.append("options.endpoints[%d]: %s" % (index, problem))
    for key in ("metrics", "labels"):
        error = _regex_list_error(key, options.get(key))
        if error:
            errors.append(error)
    timeout = options.get("timeout_s", DEFAULTS["timeout_s"])
    if not (
        isinstance(timeout, (int, float))
        and not isinstance(timeout, bool)
        and PROM_MIN_TIMEOUT_S <= timeout <= PROM_MAX_TIMEOUT_S
    ):
        errors.append(
            "options.timeout_s must be a number from %g to %g"
            % (PROM_MIN_TIMEOUT_S, PROM_MAX_TIMEOUT_S)
        )
    for key, high in (
        ("max_response_bytes", PROM_MAX_RESPONSE_BYTES),
        ("max_metrics", PROM_MAX_METRICS),
        ("max_series", PROM_MAX_SERIES),
    ):
        if not _int_in(options.get(key, DEFAULTS[key]), 1, high):
            errors.append("options.%s must be an integer from 1 to %d" % (key, high))
    return errors


class ScrapeError(Exception):
    """Why one scrape brought nothing back, in words for the report."""


class Endpoint:
    """One URL: its thread, its in-flight connection, and what its scrapes did."""

    def __init__(self, index: int, url: str) -> None:
        self.index = index
        self.url = url
        self.target: Optional[Tuple[Tuple[List[str], int], str, str]] = None
        self.refused: Optional[str] = None  # why it is never scraped
        self.thread: Optional[threading.Thread] = None
        self.conn: Optional[http.client.HTTPConnection] = None
        self.scrapes = 0
        self.answered = 0
        self.failed_before = 0  # failures before its first answer (a server still starting)
        self.failed_after = 0
        self.errors: Dict[str, int] = {}
        self.first_answer_t: Optional[float] = None
        self.bytes_max = 0
        self.ms_max = 0.0
        self.missed = 0
        self.cpu_s = 0.0

    def failed(self, text: str) -> None:
        if self.answered:
            self.failed_after += 1
        else:
            self.failed_before += 1
        key = text if text in self.errors or len(self.errors) < MAX_ERROR_KINDS else "other"
        self.errors[key] = self.errors.get(key, 0) + 1

    def worst_error(self) -> str:
        return max(self.errors.items(), key=lambda kv: kv[1])[0] if self.errors else "unknown"

    def problem(self) -> Optional[str]:
        """Why this endpoint makes the profiler partial: it never answered, or it failed
        after it had answered."""
        if self.refused is not None:
            return "%s: not scraped: %s" % (self.url, self.refused)
        if self.scrapes and not self.answered:
            return "%s: no scrape answered (%d tried; %s)" % (
                self.url,
                self.scrapes,
                self.worst_error(),
            )
        if self.failed_after:
            return "%s: %d of %d scrapes failed (%s)" % (
                self.url,
                self.failed_after + self.failed_before,
                self.scrapes,
                self.worst_error(),
            )
        return None

    def quality(self) -> Dict[str, Any]:
        return {
            "url": self.url,
            "scrapes": self.scrapes,
            "answered": self.answered,
            "failed_before_first_answer": self.failed_before,
            "failed_after_first_answer": self.failed_after,
            "first_answer_at": self.first_answer_t,
            "errors": dict(self.errors),
            "refused": self.refused,
            "bytes_max": self.bytes_max,
            "ms_max": round(self.ms_max, 1),
            "missed": self.missed,
        }


class Scraper:
    """The builtin "prometheus", with the interface of samplers.Sampler (start, alive, stop,
    quality, samples, dropped, error, cpu_s, started_at, stopped_at)."""

    def __init__(
        self, path: str, options: Dict[str, Any], max_bytes: int, deadline: float, log: RunnerLog
    ) -> None:
        self.path = path
        self.interval = float(options.get("interval_s", 1.0))
        self.timeout = float(options.get("timeout_s", DEFAULTS["timeout_s"]))
        self.max_response = int(options.get("max_response_bytes", DEFAULTS["max_response_bytes"]))
        self.max_metrics = int(options.get("max_metrics", DEFAULTS["max_metrics"]))
        self.max_series = int(options.get("max_series", DEFAULTS["max_series"]))
        self.keep = exposition.regex_filter(options.get("metrics"))
        labels = options.get("labels")
        self.labelled = exposition.regex_filter(labels) if labels else (lambda name: False)
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.log = log
        self.endpoints = [Endpoint(i, str(u)) for i, u in enumerate(options.get("endpoints") or [])]
        self.samples = 0
        self.dropped = 0
        self.written = 0
        self.cpu_s = 0.0
        self.started_at: Optional[float] = None
        self.stopped_at: Optional[float] = None
        self.ended: Optional[str] = None
        self.crash: Optional[str] = None
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.handle: Any = None

    # ------------------------------------------------------------------ control

    def start(self, pid: Optional[int]) -> None:
        self.started_at = time.time()
        try:
            self.handle = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop
        except OSError as exc:
            self.crash = "sampler error: %s" % os_error_text(exc)
            self.stopped_at = time.time()
            return
        for endpoint in self.endpoints:
            try:
                endpoint.target = resolve(endpoint.url)
            except ValueError as exc:
                endpoint.refused = str(exc)
                self.log("prometheus: %s not scraped: %s" % (endpoint.url, exc))
                continue
            endpoint.thread = threading.Thread(
                target=self._run, args=(endpoint,), name="fleetprof-prometheus-%d" % endpoint.index
            )
            endpoint.thread.daemon = True
            endpoint.thread.start()

    def alive(self) -> bool:
        return any(e.thread is not None and e.thread.is_alive() for e in self.endpoints)

    def stop(self, final_sample: bool = True, reason: str = "stopped") -> None:
        """End every endpoint's thread now: a scrape in flight is cut (its socket shut)."""
        self.stop_event.set()
        for endpoint in self.endpoints:
            conn = endpoint.conn
            if conn is not None and conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
        until = time.time() + SAMPLER_JOIN_S
        for endpoint in self.endpoints:
            if endpoint.thread is not None:
                endpoint.thread.join(max(0.0, until - time.time()))
        if self.ended is None:
            self.ended = "deadline" if time.time() >= self.deadline else reason
        with self.lock:
            if self.handle is not None:
                with contextlib.suppress(OSError):
                    self.handle.close()
                self.handle = None
        self.cpu_s = round(sum(e.cpu_s for e in self.endpoints), 4)
        if self.stopped_at is None:
            self.stopped_at = time.time()

    @property
    def error(self) -> Optional[str]:
        """Each endpoint's problem (see Endpoint.problem), joined; None when all answered."""
        problems = [p for p in (e.problem() for e in self.endpoints) if p]
        if self.crash:
            problems.insert(0, self.crash)
        return "; ".join(problems) or None

    # ------------------------------------------------------------------ one endpoint

    def _run(self, endpoint: Endpoint) -> None:
        started_cpu = time.thread_time() if hasattr(time, "thread_time") else None
        try:
            next_at = time.time()
            while not self.stop_event.is_set() and time.time() < self.deadline:
                self._scrape(endpoint)
                next_at += self.interval
                now = time.time()
                if next_at <= now:  # a slow scrape: skip the intervals it used up
                    skipped = int((now - next_at) // self.interval) + 1
                    endpoint.missed += skipped
                    next_at += skipped * self.interval
                self.stop_event.wait(max(0.0, min(next_at, self.deadline) - time.time()))
        except Exception as exc:  # a scraper bug must not take the session down
            self.crash = "sampler error: %s: %s" % (type(exc).__name__, exc)
            self.log("prometheus: %s\n%s" % (self.crash, traceback.format_exc()))
        finally:
            if started_cpu is not None:
                endpoint.cpu_s = time.thread_time() - started_cpu

    def _scrape(self, endpoint: Endpoint) -> None:
        began = time.time()
        endpoint.scrapes += 1
        try:
            body, answered_at = self._fetch(endpoint, min(began + self.timeout, self.deadline))
            text = body.decode("utf-8", errors="replace")
            parsed = exposition.parse(
                text, self.keep, self.labelled, self.max_metrics, self.max_series, PROM_MAX_LINES
            )
            if not parsed.samples and (parsed.bad_lines or text.strip()):
                raise ScrapeError(
                    "not the Prometheus text format (%d lines unreadable)" % parsed.bad_lines
                )
        except ScrapeError as exc:
            if self.stop_event.is_set():
                endpoint.scrapes -= 1  # cut by stop(): not the endpoint's doing
                return
            endpoint.failed(str(exc))
            self._write({"t": round(began, 3), "ep": endpoint.index, "error": str(exc)})
            return
        if not endpoint.answered:
            endpoint.first_answer_t = round(answered_at, 3)
        endpoint.answered += 1
        endpoint.bytes_max = max(endpoint.bytes_max, len(body))
        took_ms = (answered_at - began) * 1000.0
        endpoint.ms_max = max(endpoint.ms_max, took_ms)
        record: Dict[str, Any] = {
            "t": round(answered_at, 3),
            "ep": endpoint.index,
            "ms": round(took_ms, 1),
            "bytes": len(body),
            "m": parsed.metrics,
        }
        record.update(parsed.counts())
        self._write(record, answered=True)

    def _fetch(self, endpoint: Endpoint, limit_at: float) -> Tuple[bytes, float]:
        """The answer's body and when its headers came; ScrapeError saying why not."""
        assert endpoint.target is not None
        (addresses, port), host, path = endpoint.target
        conn = None
        try:
            # localhost is often ::1 and 127.0.0.1: the next one where one refuses, and the
            # one that answered first from then on.
            order = list(addresses)
            for position, address in enumerate(order):
                remaining = limit_at - time.time()
                if remaining <= 0:
                    raise ScrapeError("no time left before the deadline")
                conn = http.client.HTTPConnection(address, port, timeout=remaining)
                endpoint.conn = conn
                try:
                    conn.connect()
                except ConnectionRefusedError:
                    conn.close()
                    if position == len(order) - 1:
                        raise
                    continue
                if position:
                    addresses[:] = [address] + [a for a in order if a != address]
                break
            assert conn is not None
            conn.request(
                "GET", path, headers={"Host": host, "Accept": ACCEPT, "User-Agent": "fleetprof"}
            )
            response = conn.getresponse()
            answered_at = time.time()
            if response.status != 200:
                hint = " (redirects are not followed)" if 300 <= response.status < 400 else ""
                raise ScrapeError("answered HTTP %d%s" % (response.status, hint))
            length = response.getheader("Content-Length")
            length = (length or "").strip()
            if length.isdigit() and int(length) > self.max_response:
                raise ScrapeError(
                    "answered %s bytes, over max_response_bytes (%d): not read"
                    % (length, self.max_response)
                )
            chunks: List[bytes] = []
            total = 0
            while True:
                remaining = limit_at - time.time()
                if remaining <= 0:
                    raise socket.timeout()
                if conn.sock is not None:
                    conn.sock.settimeout(remaining)
                chunk = response.read(min(CHUNK, self.max_response + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > self.max_response:
                    raise ScrapeError(
                        "answered more than max_response_bytes (%d): not parsed" % self.max_response
                    )
            return b"".join(chunks), answered_at
        except socket.timeout:
            raise ScrapeError("no whole answer within %g s" % self.timeout) from None
        except ConnectionRefusedError:
            raise ScrapeError("connection refused") from None
        except http.client.HTTPException as exc:
            raise ScrapeError("not an HTTP answer (%s)" % type(exc).__name__) from None
        except OSError as exc:
            raise ScrapeError(os_error_text(exc)) from None
        finally:
            endpoint.conn = None
            if conn is not None:
                conn.close()

    def _write(self, record: Dict[str, Any], answered: bool = False) -> None:
        """One line, flushed at once; ``answered``: a scrape that answered (a sample)."""
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with self.lock:
            if self.handle is None:
                return
            if self.written + len(line) > self.max_bytes:
                self.dropped += 1
                return
            self.handle.write(line)
            self.handle.flush()
            self.written += len(line)
            if answered:
                self.samples += 1

    # ------------------------------------------------------------------ manifest

    def quality(self) -> Dict[str, Any]:
        ran = (self.stopped_at or time.time()) - (self.started_at or time.time())
        return {
            "samples": self.samples,
            "interval_s": self.interval,
            "timeout_s": self.timeout,
            "max_response_bytes": self.max_response,
            "dropped": self.dropped,
            "sampler_cpu_s": self.cpu_s,
            "ran_s": round(max(0.0, ran), 3),
            "ended": self.ended,
            "endpoints": [e.quality() for e in self.endpoints],
        }
