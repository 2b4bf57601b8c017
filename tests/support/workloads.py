"""Python workloads with known behaviour (where their time goes, what they allocate and write)
that the tests profile."""

from __future__ import annotations

from typing import Any

# A process fleetprof has never seen: 70% of its time in alpha_work, 30% in beta_work,
# both burning CPU in their own frames, so py-spy's self share is the truth.
SPLIT_WORKLOAD = """
import sys, time

def alpha_work():
    end = time.perf_counter() + 0.007
    while time.perf_counter() < end:
        pass

def beta_work():
    end = time.perf_counter() + 0.003
    while time.perf_counter() < end:
        pass

while True:
    alpha_work()
    beta_work()
"""


def function_pct(host: dict[str, Any], name: str) -> float:
    for row in host["top_functions"]:
        if row["function"] == name:
            return float(row["self_pct"])
    raise AssertionError(f"{name} not in {[r['function'] for r in host['top_functions']]}")


RUSAGE_WORKLOAD = """\
import json, os, resource, signal, sys, time

ALLOC_B_S, WRITE_B_S, READ_B_S, DUTY = 4_000_000, 2_000_000, 1_000_000, 0.5


def snapshot():
    io = dict(l.split(": ") for l in open("/proc/self/io").read().splitlines() if l)
    rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS:")][0].split()[1]
    ru = resource.getrusage(resource.RUSAGE_SELF)
    data = {"t": time.time(), "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss,
            "rss_kb": int(rss), "ctx": ru.ru_nvcsw + ru.ru_nivcsw}
    data.update((k, int(v)) for k, v in io.items())
    return data


begin = snapshot()  # the program's start: launched, it starts at T0 with the samplers
out = os.open("io.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with open("src.bin", "wb") as handle:
    handle.write(os.urandom(4 << 20))
    handle.flush()
    os.fsync(handle.fileno())
src = os.open("src.bin", os.O_RDONLY)
os.posix_fadvise(src, 0, 0, os.POSIX_FADV_DONTNEED)
first = snapshot()
start = time.time()
blocks, allocated, written, read = [], 0, 0, 0


def stop(*_):
    with open("truth.json", "w") as handle:
        json.dump({"begin": begin, "first": first, "last": snapshot()}, handle)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
chunk = b"x" * 65536
cpu0 = time.process_time()
# Attached: the session's deadline (snapshot there, then idle until killed); launched, the
# runner's SIGTERM at the deadline ends it.
stop_at = float(sys.argv[1]) if len(sys.argv) > 1 else float("inf")
while True:
    if time.time() >= stop_at:
        with open("truth.json", "w") as handle:
            json.dump({"begin": begin, "first": first, "last": snapshot()}, handle)
        time.sleep(30)
    elapsed = time.time() - start
    while allocated < ALLOC_B_S * elapsed:
        blocks.append(bytearray(b"y" * 1_000_000))
        allocated += 1_000_000
    while written < WRITE_B_S * elapsed:
        os.write(out, chunk)
        written += len(chunk)
    while read < READ_B_S * elapsed:
        offset = read % (4 << 20)
        os.posix_fadvise(src, offset, 65536, os.POSIX_FADV_DONTNEED)
        read += len(os.pread(src, 65536, offset))
    if time.process_time() - cpu0 < DUTY * elapsed:
        end = time.time() + 0.01
        while time.time() < end:
            pass
    else:
        time.sleep(0.005)
"""
