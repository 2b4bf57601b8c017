"""Interface counters (system.jsonl's ``net``) as rates over the window: the first sample
is the real /proc/net/dev text captured on this machine, parsed by the device's own code."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from fleetprof_device.contract import NET_DEV_FIELDS
from fleetprof_device.netdev import parse_net_dev
from orchestrator.profilers import netdev, system
from orchestrator.report.charts import group_charts, host_charts

FIXTURE = Path(__file__).parents[1] / "fixtures" / "netdev" / "proc-net-dev.txt"
RX_BYTES, RX_PACKETS, RX_ERRORS, RX_DROPS, TX_BYTES = range(5)


def real_sample() -> dict[str, list[int]]:
    return parse_net_dev(FIXTURE.read_text())


def series(start: dict[str, list[int]], steps: list[dict[str, list[int]]], dt: float = 1.0):
    """Records at t = 100, 100 + dt, ...: each step adds its per-interface increments."""
    records: list[dict[str, Any]] = [{"t": 100.0, "cpu_pct": 1.0, "net": copy.deepcopy(start)}]
    current = copy.deepcopy(start)
    for index, grow in enumerate(steps, 1):
        for name, add in grow.items():
            current[name] = [a + b for a, b in zip(current[name], add, strict=True)]
        records.append({"t": 100.0 + index * dt, "cpu_pct": 1.0, "net": copy.deepcopy(current)})
    return records


def grow(rx: int = 0, tx: int = 0, packets: int = 0, errors: int = 0, drops: int = 0) -> list[int]:
    return [rx, packets, errors, drops, tx, packets, errors, drops]


def metrics_of(records: list[dict[str, Any]]) -> tuple[dict[str, float], list[str]]:
    metrics: dict[str, float] = {}
    notes: list[str] = []
    netdev.net_metrics(records, metrics, notes)
    return metrics, notes


def test_rates_per_interface_and_totals_without_loopback() -> None:
    steps = [{"eth0": grow(rx=1000, tx=500, packets=10, errors=1), "lo": grow(rx=64, tx=64)}] * 4
    metrics, notes = metrics_of(series(real_sample(), steps, dt=0.5))
    assert metrics["net.eth0.rx_bytes_per_s"] == 2000.0
    assert metrics["net.eth0.tx_bytes_per_s"] == 1000.0
    assert metrics["net.eth0.rx_packets_per_s"] == metrics["net.eth0.tx_packets_per_s"] == 20.0
    assert metrics["net.eth0.rx_errors"] == 4.0 and metrics["net.eth0.rx_drops"] == 0.0
    assert metrics["net.lo.rx_bytes_per_s"] == metrics["net.lo.tx_bytes_per_s"] == 128.0
    assert metrics["net.ifb0.rx_bytes_per_s"] == 0.0  # idle, still reported
    # Totals: every interface but lo.
    assert metrics["net.rx_bytes_per_s"] == 2000.0 and metrics["net.tx_bytes_per_s"] == 1000.0
    assert metrics["net.errors"] == 8.0 and metrics["net.drops"] == 0.0
    assert notes == []


def test_a_counter_that_goes_down_is_a_reset_never_negative_traffic() -> None:
    records = series(real_sample(), [{"eth0": grow(rx=1000)}] * 4)
    records[2]["net"]["eth0"][RX_BYTES] = 5  # the interface came back with fresh counters
    for later in records[3:]:
        later["net"]["eth0"][RX_BYTES] = 5 + 1000 * (later["t"] - records[2]["t"])
    metrics, notes = metrics_of(records)
    # 0->1, 2->3 and 3->4 at 1000 B/s; 1->2 went down: left out, not negative.
    assert metrics["net.eth0.rx_bytes_per_s"] == 1000.0
    assert notes == ["system: interface counters went down 1 times (reset: skipped)"]
    columns = netdev.net_columns(records)
    assert columns[netdev.SERIES_RX][2] is None
    assert all(v is not None and v >= 0 for v in columns[netdev.SERIES_RX][3:])


def test_a_32_bit_counter_that_wraps_counts_the_bytes_past_the_wrap() -> None:
    start = {"eth0": grow(rx=(1 << 32) - 300, tx=10)}
    records = series(start, [{"eth0": grow(rx=1000, tx=10)}] * 3)
    for record in records:
        record["net"]["eth0"][RX_BYTES] %= 1 << 32
    metrics, notes = metrics_of(records)
    assert metrics["net.eth0.rx_bytes_per_s"] == 1000.0
    assert notes == []
    assert netdev.step(10.0, 5.0) is None  # a small drop is a reset, not a wrap
    assert netdev.step(float(1 << 40), 5.0) is None  # a 64-bit counter never wraps here


def test_names_are_device_data_cleaned_and_capped() -> None:
    start = {f"veth{i}": grow(rx=1) for i in range(12)}
    start["<b>x</b>"] = grow()
    start["a.b"] = grow()
    start["a_b"] = grow()  # cleans to the same name as "a.b": the second one is dropped
    steps = [{f"veth{i}": grow(rx=100 * i) for i in range(12)}]
    metrics, notes = metrics_of(series(start, steps))
    names = {key.split(".")[1] for key in metrics if key.count(".") == 2}
    assert len(names) == netdev.REPORT_IFACES
    assert "veth11" in names and "veth0" not in names  # the busiest kept
    assert all(name.replace("_", "").replace("-", "").isalnum() for name in names)
    assert "system: 6 quieter interfaces beyond the busiest 8 not reported" in notes
    assert "system: 1 interface names unusable, repeated or past the first 64 (skipped)" in notes
    assert netdev.iface_name("<b>x</b>") == "b_x_b" and netdev.iface_name("...") is None


def test_malformed_samples_are_skipped() -> None:
    records = series({"eth0": grow(rx=1)}, [{"eth0": grow(rx=100)}] * 2)
    records[1]["net"]["eth0"] = [1, 2, "3"]
    records.insert(1, {"t": 100.5, "net": "garbage"})
    metrics, _ = metrics_of(records)
    assert metrics["net.eth0.rx_bytes_per_s"] == 100.0
    assert metrics_of([{"t": 1.0, "cpu_pct": 2.0}]) == ({}, [])  # an older runner's sample
    assert len(NET_DEV_FIELDS) == 8


def test_the_system_series_and_its_chart_have_the_traffic(tmp_path: Path) -> None:
    records = series(real_sample(), [{"eth0": grow(rx=3000, tx=100), "lo": grow(rx=9, tx=9)}] * 3)
    out = system.system_series(records)
    assert out["system.net.rx_bytes_per_s"] == [None, 3000.0, 3000.0, 3000.0]
    assert out["system.net.tx_bytes_per_s"] == [None, 100.0, 100.0, 100.0]
    assert "Network (all interfaces but lo)" in [chart.title for chart in host_charts(out)]
    overlays = [chart.title for chart in group_charts([("a", out), ("<b>", out)])]
    assert "Network received (all interfaces but lo)" in overlays
    assert "Network sent (all interfaces but lo)" in overlays


def test_a_hostile_device_s_flood_of_names_is_capped() -> None:
    flood = {f"x{i}" * 40: grow(rx=i) for i in range(5000)}
    records = series(flood, [dict.fromkeys(flood, grow(rx=1))])
    found, dropped = netdev.interfaces(records)
    assert len(found) == netdev.MAX_SEEN_IFACES
    assert dropped == netdev.MAX_SEEN_IFACES  # counted up to the cap, each name cut short
    metrics, notes = metrics_of(records)
    assert len({key.split(".")[1] for key in metrics if key.count(".") == 2}) == 8
    assert all(len(key) < 80 for key in metrics)
    assert "system: 64 interface names unusable, repeated or past the first 64 (skipped)" in notes
