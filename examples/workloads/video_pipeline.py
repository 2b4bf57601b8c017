"""A stand-in for a video-analytics pipeline: the workload fleetprof profiles in its demo.

Real edge deployments run loops like this one on a camera stream: decode a frame, look
for motion against the previous frame, summarise the scene and write results. This
module does the same on synthetic frames with the standard library only (Python 3.8+),
so it runs unchanged on every device of a test fleet and gives a profiler a known answer.

Each stage is one top-level function doing its own work inline (Python loops, or direct
calls into C such as ``zlib`` and ``sorted``, which a sampling profiler without native
unwinding attributes to the calling Python frame). So a profiler's *self* time for
``decode_frame``, ``detect_motion``, ``summarize_scene`` and ``write_results`` equals
their total time, and the CPU shares are distinct and stable, roughly 45 / 30 / 15 / 7 %.

The pipeline measures itself: wall seconds per stage and frames processed, written as
JSON to ``--fps-file`` every second and at exit, so tests can compare a profile with
the truth. Under fleetprof (``FLEETPROF_METRICS_FILE`` set by the device runner) it also
appends its own metrics there as JSON lines, fleetprof's protocol for a workload's numbers:
``fps`` every second (frames over that second) and ``frame_ms`` for every frame.

    python3 video_pipeline.py --duration 10 --fps-file fps.json --out /tmp/pipeline

SIGTERM or SIGINT finish the current frame, write the final fps file and exit 0.
"""

from __future__ import annotations

import argparse
import binascii
import json
import os
import random
import signal
import sys
import time
import zlib

STAGES = ("decode_frame", "detect_motion", "summarize_scene", "write_results")

# Work sizes at --scale 1.0, chosen so the stage shares are about 45/30/15/7 % and an
# ordinary x86 core does 10-30 frames per second. Every stage's work is linear in the
# number of pixels, so --scale changes the frame rate and keeps the shares.
FRAME_WIDTH = 854  # 480p greyscale
BASE_HEIGHT = 480
SOURCE_FRAMES = 8  # distinct synthetic frames, replayed in a loop
MOTION_STEP_X = 2  # detect_motion compares every 2nd pixel of every row
MOTION_STEP_Y = 1
MOTION_THRESHOLD = 24
CELLS_X = 16  # motion is counted per cell of a 16 x 12 grid
CELLS_Y = 12
HISTOGRAM_STEP = 2  # summarize_scene histograms every 2nd pixel
THUMBNAIL_STEP = 4  # write_results encodes a thumbnail of every 4th pixel
FRAMES_PER_LINE = 10  # write_results appends one JSON line per 10 frames
FPS_FILE_PERIOD_S = 1.0


class StopFlag:
    """Set by SIGTERM/SIGINT; the main loop finishes its frame and stops."""

    def __init__(self) -> None:
        self.signals = 0

    @property
    def requested(self) -> bool:
        return self.signals > 0

    def handle(self, signum: int, frame: object) -> None:
        self.signals += 1
        if self.signals > 1:
            # A second signal means "now": do not wait for a slow frame to finish.
            raise SystemExit(128 + signum)


class ResultsWriter:
    """The results file and the records not yet written."""

    def __init__(self, out_dir: str) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.path = os.path.join(out_dir, "results.jsonl")
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.pending: list[str] = []
        self.first_frame = 0

    def close(self) -> None:
        if self.pending:
            self.file.write(batch_line(self.first_frame, self.pending))
            self.pending = []
        self.file.close()


def batch_line(first_frame: int, records: list[str]) -> str:
    return f'{{"first_frame": {first_frame}, "frames": [{", ".join(records)}]}}\n'


def make_source(width: int, height: int, count: int, seed: int = 7) -> list[bytes]:
    """Synthetic compressed frames: a gradient, a moving bright square and sensor noise.

    Each frame is stored like a PNG scanline with the "Sub" filter (every byte is the
    difference to its left neighbour) and then deflated, so decoding does real work.
    """
    rng = random.Random(seed)
    size = width * height
    background = bytearray(size)
    for y in range(height):
        shade = 40 + (y * 60) // height
        for x in range(width):
            background[y * width + x] = shade + (x * 120) // width
    low_bits = bytes(range(256)).translate(bytes(v & 7 for v in range(256)))
    side = max(4, height // 4)
    packets = []
    for k in range(count):
        noise = rng.getrandbits(8 * size).to_bytes(size, "little").translate(low_bits)
        # Bytes of background + noise stay below 256, so one big-integer sum adds them all.
        raw = bytearray(
            (int.from_bytes(background, "little") + int.from_bytes(noise, "little")).to_bytes(
                size, "little"
            )
        )
        left = (k * (width - side)) // max(1, count - 1)
        top = (k * (height - side)) // max(1, count - 1)
        bright = bytes(228 + 3 * v for v in noise[:side])
        for y in range(top, top + side):
            raw[y * width + left : y * width + left + side] = bright
        filtered = bytearray(size)
        for start in range(0, size, width):
            previous = 0
            for i in range(start, start + width):
                value = raw[i]
                filtered[i] = (value - previous) & 0xFF
                previous = value
        packets.append(zlib.compress(bytes(filtered), 6))
    return packets


def decode_frame(packet: bytes, width: int) -> bytearray:
    """Inflate one frame and undo the Sub filter, row by row."""
    raw = zlib.decompress(packet)
    pixels = bytearray(len(raw))
    size = len(raw)
    start = 0
    while start < size:
        value = 0
        for i in range(start, start + width):
            value = (value + raw[i]) & 0xFF
            pixels[i] = value
        start += width
    return pixels


def detect_motion(frame: bytearray, previous: bytearray, width: int, height: int) -> list[int]:
    """Count changed pixels per cell of a coarse grid, on a sample of the pixels."""
    cells = [0] * (CELLS_X * CELLS_Y)
    threshold = MOTION_THRESHOLD
    for y in range(0, height, MOTION_STEP_Y):
        row = y * width
        cell_row = ((y * CELLS_Y) // height) * CELLS_X
        for x in range(0, width, MOTION_STEP_X):
            delta = frame[row + x] - previous[row + x]
            if delta > threshold or delta < -threshold:
                cells[cell_row + (x * CELLS_X) // width] += 1
    return cells


def summarize_scene(frame: bytearray, cells: list[int]) -> dict[str, object]:
    """Brightness histogram of the frame and statistics of the motion grid."""
    histogram = [0] * 16
    sample = frame[::HISTOGRAM_STEP]
    for value in sample:
        histogram[value >> 4] += 1
    brightness = sum(sample) / max(1, len(sample))
    ordered = sorted(cells)
    active = 0
    moving = 0
    weighted_x = 0
    weighted_y = 0
    for index in range(len(cells)):
        count = cells[index]
        if count:
            active += 1
            moving += count
            weighted_x += (index % CELLS_X) * count
            weighted_y += (index // CELLS_X) * count
    centroid = None
    if moving:
        centroid = [round(weighted_x / moving, 2), round(weighted_y / moving, 2)]
    return {
        "histogram": histogram,
        "brightness": round(brightness, 2),
        "active_cells": active,
        "motion_pixels": moving,
        "max_cell": ordered[-1],
        "median_cell": ordered[len(ordered) // 2],
        "centroid": centroid,
    }


def write_results(
    writer: ResultsWriter, frame_number: int, frame: bytearray, summary: dict[str, object]
) -> None:
    """Encode a thumbnail, format the frame's record and append one line per N frames.

    A real pipeline would store a JPEG snapshot; this one deflates a thumbnail and keeps
    its size and checksum, so the results file stays small.
    """
    thumbnail = zlib.compress(bytes(frame[::THUMBNAIL_STEP]), 9)
    checksum = binascii.crc32(thumbnail)
    centroid = summary["centroid"]
    # Numbers and lists of numbers print as JSON already; no encoder frames in the profile.
    record = (
        f'{{"frame": {frame_number}, "brightness": {summary["brightness"]!r}, '
        f'"active_cells": {summary["active_cells"]}, '
        f'"motion_pixels": {summary["motion_pixels"]}, '
        f'"max_cell": {summary["max_cell"]}, "median_cell": {summary["median_cell"]}, '
        f'"centroid": {"null" if centroid is None else repr(centroid)}, '
        f'"histogram": {summary["histogram"]!r}, '
        f'"thumbnail_bytes": {len(thumbnail)}, "thumbnail_crc32": {checksum}}}'
    )
    if not writer.pending:
        writer.first_frame = frame_number
    writer.pending.append(record)
    if len(writer.pending) >= FRAMES_PER_LINE:
        writer.file.write(batch_line(writer.first_frame, writer.pending))
        writer.file.flush()
        writer.pending = []


def write_fps_file(
    path: str, frames: int, elapsed: float, stage_seconds: dict[str, float], final: bool
) -> None:
    """Write the self-measurement atomically (temp file + rename)."""
    total = sum(stage_seconds.values())
    report = {
        "frames": frames,
        "elapsed_s": round(elapsed, 6),
        "fps": round(frames / elapsed, 3) if elapsed > 0 else 0.0,
        "stage_seconds": {name: round(stage_seconds[name], 6) for name in STAGES},
        "stage_share": {
            name: round(stage_seconds[name] / total, 6) if total > 0 else 0.0 for name in STAGES
        },
        "pid": os.getpid(),
        "final": final,
    }
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)


class Metrics:
    """fleetprof's metrics file, when the runner named one: one JSON line per value, each
    appended with one write (O_APPEND), so a line is never torn by a signal or a kill."""

    def __init__(self, path: str | None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if path else None

    def add(self, name: str, value: float, unit: str) -> None:
        if self.fd is not None:
            line = {"name": name, "value": round(value, 4), "unit": unit, "t": time.time()}
            os.write(self.fd, (json.dumps(line) + "\n").encode("utf-8"))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def run(duration: float, fps_file: str | None, out_dir: str, scale: float) -> int:
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop.handle)
    signal.signal(signal.SIGINT, stop.handle)
    print(f"video_pipeline: pid {os.getpid()}", flush=True)

    if fps_file:
        os.makedirs(os.path.dirname(os.path.abspath(fps_file)), exist_ok=True)
    width = FRAME_WIDTH
    height = max(CELLS_Y, round(BASE_HEIGHT * scale))
    packets = make_source(width, height, SOURCE_FRAMES)
    writer = ResultsWriter(out_dir)
    stage_seconds = dict.fromkeys(STAGES, 0.0)
    previous = decode_frame(packets[-1], width)
    frames = 0
    start = time.perf_counter()
    next_report = start + FPS_FILE_PERIOD_S
    now = start
    metrics = Metrics(os.environ.get("FLEETPROF_METRICS_FILE"))
    period_start, period_frames = start, 0
    while not stop.requested:
        t0 = time.perf_counter()
        frame = decode_frame(packets[frames % SOURCE_FRAMES], width)
        t1 = time.perf_counter()
        cells = detect_motion(frame, previous, width, height)
        t2 = time.perf_counter()
        summary = summarize_scene(frame, cells)
        t3 = time.perf_counter()
        write_results(writer, frames, frame, summary)
        now = time.perf_counter()
        stage_seconds["decode_frame"] += t1 - t0
        stage_seconds["detect_motion"] += t2 - t1
        stage_seconds["summarize_scene"] += t3 - t2
        stage_seconds["write_results"] += now - t3
        frames += 1
        period_frames += 1
        previous = frame
        metrics.add("frame_ms", (now - t0) * 1000.0, "ms")
        if now - period_start >= FPS_FILE_PERIOD_S:
            metrics.add("fps", period_frames / (now - period_start), "frames/s")
            period_start, period_frames = now, 0
        if duration > 0 and now - start >= duration:
            break
        if fps_file and now >= next_report:
            write_fps_file(fps_file, frames, now - start, stage_seconds, final=False)
            next_report = now + FPS_FILE_PERIOD_S

    metrics.close()
    writer.close()
    elapsed = time.perf_counter() - start
    if fps_file:
        write_fps_file(fps_file, frames, elapsed, stage_seconds, final=True)
    fps = frames / elapsed if elapsed > 0 else 0.0
    print(f"video_pipeline: {frames} frames in {elapsed:.2f} s, {fps:.2f} fps", flush=True)
    total = sum(stage_seconds.values())
    shares = {name: round(stage_seconds[name] / total, 6) if total > 0 else 0.0 for name in STAGES}
    print(f"video_pipeline: stage shares {json.dumps(shares)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Synthetic video-analytics pipeline (decode, detect, summarize, write)."
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run this long; 0 runs until SIGTERM or SIGINT (default: 0)",
    )
    parser.add_argument(
        "--fps-file",
        metavar="PATH",
        help="write frames, fps and per-stage seconds as JSON here every second and at exit",
    )
    parser.add_argument(
        "--out",
        default="pipeline-out",
        metavar="DIR",
        help="results directory (default: ./pipeline-out)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the work per frame, e.g. 0.25 on a slow board (default: 1.0)",
    )
    args = parser.parse_args(argv)
    if args.duration < 0:
        parser.error("--duration must be 0 or more")
    if not args.scale > 0:
        parser.error("--scale must be more than 0")
    return run(args.duration, args.fps_file, args.out, args.scale)


if __name__ == "__main__":
    sys.exit(main())
