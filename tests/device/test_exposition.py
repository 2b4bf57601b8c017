"""The Prometheus text format parsed on the device (Python 3.8): real output of
prometheus_client 0.26.0 and node_exporter 1.5.0 (tests/fixtures/SOURCES.md), and lines
that are not the format."""

import math
from pathlib import Path

import pytest

from fleetprof_device import exposition

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus"


def text(name):
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_prometheus_client_output_every_family_type():
    parsed = exposition.parse(
        text("client_python-0.26.0.txt"),
        labelled=lambda name: name == "frames_processed_total",
    )
    metrics = parsed.metrics
    assert parsed.bad_lines == 0
    # The counter: summed over its label sets, each kept apart as asked, escapes undone.
    frames = metrics["frames_processed_total"]
    assert frames["type"] == "counter" and frames["v"] == 240.0
    labels = {series[0]["stage"]: series[1] for series in frames["l"]}
    assert labels == {"decode": 120.0, "infer": 118.0, 'say "hi"\\ back\nslash': 2.0}
    # Creation times are no metrics.
    assert not [name for name in metrics if name.endswith("_created")]
    assert metrics["queue_depth"] == {"type": "gauge", "v": 7.0}
    # NaN and +Inf cannot be carried: skipped and counted.
    assert "temperature_celsius" not in metrics and "headroom" not in metrics
    assert parsed.not_finite == 2
    # The histogram: buckets summed over both models, +Inf last; count and sum.
    infer = metrics["infer_seconds"]
    assert infer["type"] == "histogram"
    assert infer["b"] == [
        [0.01, 1.0],
        [0.025, 4.0],
        [0.05, 7.0],
        [0.1, 9.0],
        [0.25, 10.0],
        ["+Inf", 11.0],
    ]
    assert infer["count"] == 11.0 and infer["sum"] == pytest.approx(0.801)
    payload = metrics["payload_bytes"]
    assert payload == {"type": "summary", "count": 3.0, "sum": 1200.0}
    # Labels are kept only where asked.
    assert [name for name, metric in metrics.items() if "l" in metric] == ["frames_processed_total"]


def test_node_exporter_output():
    parsed = exposition.parse(
        text("node_exporter-1.5.0.txt"),
        keep=exposition.regex_filter(
            [
                r"node_cpu_seconds_total",
                r"node_network_.*_bytes_total",
                r"node_load1",
                r"go_gc_duration_seconds",
                r"node_scrape_collector_success",
            ]
        ),
        labelled=exposition.regex_filter([r"node_cpu_seconds_total"]),
        max_series=1000,
    )
    metrics = parsed.metrics
    assert parsed.bad_lines == 0 and parsed.samples > 500
    assert set(metrics) == {
        "node_cpu_seconds_total",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
        "node_load1",
        "go_gc_duration_seconds",
        "node_scrape_collector_success",
    }
    cpu = metrics["node_cpu_seconds_total"]
    assert cpu["type"] == "counter"
    modes = {series[0]["mode"] for series in cpu["l"]}
    assert {"idle", "user", "system"} <= modes
    assert cpu["v"] == pytest.approx(sum(series[1] for series in cpu["l"]))
    assert metrics["node_load1"]["type"] == "gauge"
    # A summary with one label set keeps its quantiles.
    gc = metrics["go_gc_duration_seconds"]
    assert gc["type"] == "summary" and [q for q, _ in gc["q"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # node_exporter's untyped families have no TYPE counter/gauge of their own.
    assert metrics["node_scrape_collector_success"]["type"] == "gauge"


def test_caps_on_families_and_labelled_series():
    parsed = exposition.parse(text("node_exporter-1.5.0.txt"), max_metrics=10)
    assert len(parsed.metrics) == 10 and parsed.over_metrics > 200
    parsed = exposition.parse(
        text("node_exporter-1.5.0.txt"), labelled=lambda name: True, max_series=5
    )
    kept = sum(len(m.get("l", [])) for m in parsed.metrics.values())
    assert kept == 5 and parsed.over_series > 0
    assert parsed.counts()["over_metrics"] == parsed.over_metrics


@pytest.mark.parametrize(
    "line",
    [
        "<html><body>not metrics</body></html>",
        'metric{a="unterminated} 1',
        "metric{a=unquoted} 1",
        "metric one",
        "metric 1 2 3",
        "9metric 1",
        '{a="b"} 1',
    ],
)
def test_lines_outside_the_format_are_counted_not_kept(line):
    parsed = exposition.parse(line + "\nok_total 3\n")
    assert parsed.bad_lines == 1
    assert parsed.metrics == {"ok_total": {"type": "untyped", "v": 3.0}}


def test_labels_escapes_trailing_comma_and_timestamps():
    labels, _end = exposition.parse_labels('a="x\\"y",b="\\\\",c="l1\\nl2",} 1', 0)
    assert labels == {"a": 'x"y', "b": "\\", "c": "l1\nl2"}
    parsed = exposition.parse(
        '# TYPE t gauge\nt{a="1"} 2 1700000000000\nt{a="2"} -Inf\nt{a="3"} +Inf\n',
        labelled=lambda name: True,
    )
    assert parsed.metrics["t"]["v"] == 2.0 and parsed.not_finite == 2
    assert math.isinf(exposition.parse_value("+Inf"))


def test_a_long_text_is_read_up_to_its_line_cap():
    body = "".join(f"m{i} 1\n" for i in range(50))
    parsed = exposition.parse(body, max_lines=10, max_metrics=100)
    assert len(parsed.metrics) == 10 and parsed.counts()["lines_cut"] is True
