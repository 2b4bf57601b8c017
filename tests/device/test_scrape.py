"""The builtin "prometheus" scraper on the device (Python 3.8): real HTTP servers on
127.0.0.1, one good and the others hanging, answering garbage, megabytes or a redirect, or
not listening; each endpoint's fate is its own."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetprof_device import scrape

GOOD = b"# TYPE work_total counter\nwork_total 5\n# TYPE depth gauge\ndepth 2\n"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://192.0.2.1/metrics")
            self.end_headers()
            return
        body = {
            "/metrics": GOOD,
            "/garbage": b"\x00\xffnot {metrics at all\n<html>\n",
            "/huge": b"x" * (3 * 1024 * 1024),
        }[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if self.path != "/huge":  # no length: the cap must hold while reading
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def hanging():
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def run(tmp_path, endpoints, seconds=1.2, **options):
    path = tmp_path / "prometheus.jsonl"
    opts = {"endpoints": endpoints, "interval_s": 0.2, "timeout_s": 0.3}
    opts.update(options)
    assert scrape.option_errors(opts) == []
    scraper = scrape.Scraper(str(path), opts, 10 * 1024 * 1024, time.time() + seconds, print)
    scraper.start(None)
    time.sleep(seconds + 0.1)
    began = time.time()
    scraper.stop()
    assert time.time() - began < 1.0 and not scraper.alive()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return scraper, lines


def test_a_good_endpoint_beside_bad_ones(tmp_path, server, hanging):
    base = f"http://127.0.0.1:{server}"
    endpoints = [
        base + "/metrics",
        f"http://localhost:{hanging}/metrics",
        base + "/garbage",
        base + "/huge",
        f"http://127.0.0.1:{free_port()}/metrics",
        base + "/redirect",
    ]
    scraper, lines = run(tmp_path, endpoints, max_response_bytes=1024 * 1024)
    good = [r for r in lines if r["ep"] == 0]
    assert len(good) >= 5 and all("error" not in r for r in good)
    assert good[0]["m"] == {
        "work_total": {"type": "counter", "v": 5.0},
        "depth": {"type": "gauge", "v": 2.0},
    }
    errors = {r["ep"]: r["error"] for r in lines if "error" in r}
    assert errors[1] == "no whole answer within 0.3 s"
    assert errors[2].startswith("not the Prometheus text format")
    assert errors[3] == "answered more than max_response_bytes (1048576): not parsed"
    assert errors[4] == "connection refused"
    assert errors[5] == "answered HTTP 302 (redirects are not followed)"
    quality = scraper.quality()["endpoints"]
    assert quality[0]["answered"] == len(good) and quality[0]["errors"] == {}
    # The hanging endpoint costs its own thread only: it was tried about every 0.3 s.
    assert 2 <= quality[1]["scrapes"] <= 5
    assert scraper.samples == len(good)
    problem = scraper.error
    assert problem is not None and endpoints[0] + ":" not in problem
    for url in endpoints[1:]:
        assert url + ": no scrape answered" in problem


def test_hosts_other_than_loopback_are_never_scraped(tmp_path):
    assert "loopback" in scrape.url_problem("http://192.0.2.1:9100/metrics")
    assert "localhost or a loopback" in scrape.url_problem("http://example.com:9100/metrics")
    assert "only http://" in scrape.url_problem("https://127.0.0.1:9100/metrics")
    assert "name the port" in scrape.url_problem("http://127.0.0.1/metrics")
    assert "user or password" in scrape.url_problem("http://u:p@127.0.0.1:9/metrics")
    assert scrape.url_problem("http://[::1]:9100/metrics") is None
    assert scrape.option_errors({"endpoints": ["http://10.0.0.1:9100/metrics"]}) == [
        "options.endpoints[0]: only the device's own loopback is scraped, not 10.0.0.1"
    ]
    assert scrape.option_errors({"endpoints": [], "metrics": ["("], "timeout_s": 99}) == [
        "options.endpoints must be a list of 1 to 8 URLs",
        "options.metrics: '(' is not a regular expression",
        "options.timeout_s must be a number from 0.1 to 30",
    ]


def test_a_stop_before_the_deadline_cuts_a_hanging_scrape(tmp_path, hanging):
    path = tmp_path / "prometheus.jsonl"
    opts = {"endpoints": [f"http://127.0.0.1:{hanging}/m"], "interval_s": 1.0, "timeout_s": 10}
    scraper = scrape.Scraper(str(path), opts, 1024, time.time() + 30, print)
    scraper.start(None)
    time.sleep(0.3)
    began = time.time()
    scraper.stop(reason="target exited")
    assert time.time() - began < 0.5 and not scraper.alive()
    # Cut by the runner, not by the endpoint: not counted against it.
    assert scraper.quality()["endpoints"][0]["scrapes"] == 0
    assert scraper.quality()["ended"] == "target exited"


def test_localhost_falls_back_to_its_next_address_where_one_refuses(tmp_path, server, monkeypatch):
    """localhost resolving to two loopback addresses, the server on the second only (an
    application on 127.0.0.1 where localhost is ::1 first)."""

    real = socket.getaddrinfo

    def two(host, port, *args, **kwargs):
        if host != "localhost":
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(scrape.socket, "getaddrinfo", two)
    scraper, lines = run(tmp_path, [f"http://localhost:{server}/metrics"], seconds=0.6)
    assert lines and all("error" not in r for r in lines)
    endpoint = scraper.endpoints[0]
    assert endpoint.target[0] == (["127.0.0.1", "127.0.0.2"], server)
