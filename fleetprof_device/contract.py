"""What the device and the controller must agree on, defined once: schema names and
versions, file names, probe kinds, limits and their units.

Both sides import this module: the device code from the zipapp, the controller
(orchestrator/models.py, campaign.py, probe.py) from the installed package.
tests/unit/test_contract.py fails when the two could disagree.
"""

from __future__ import annotations

# Schemas: plan.json (controller -> device), manifest.json and probe.json (device -> controller).
PLAN_SCHEMA = "fleetprof.plan/1"
MANIFEST_SCHEMA = "fleetprof.manifest/1"
PROBE_SCHEMA = "fleetprof.probe/1"
RUNNER_VERSION = "1"

# Files the runner writes into a session's workdir (and so into its archive).
MANIFEST_FILE = "manifest.json"
RUNNER_LOG = "runner.log"
PROBE_FILE = "probe.json"
SOURCE_LINES_FILE = "pyspy.lines.json"
RESERVED_FILES = (
    MANIFEST_FILE,
    RUNNER_LOG,
    "target.stdout",
    "target.stderr",
    PROBE_FILE,
    ".probe-disk.tmp",
    "manifest.json.tmp",
    SOURCE_LINES_FILE,
    SOURCE_LINES_FILE + ".tmp",
    ".reserve",
    "workload.jsonl",  # WORKLOAD_METRICS_FILE, below
    "sweep.json",  # SWEEP_FILE, below
    "sweep.config.json",  # SWEEP_CONFIG_FILE, below
)

# Locks (see locks.SessionLock): one per user and host in the fleetprof home, one per target
# process in a directory every user shares, so two users' campaigns on one process collide.
HOST_LOCK_FILE = "session.lock"

# Units.
MIB = 1 << 20

# Probe targets: the benchmarks there are, and how many repetitions each measurement is
# split into (a spread, not a point): PROBE_REPS when the campaign does not say.
PROBE_KINDS = ("cpu", "memory", "disk", "network")
PROBE_REPS = 5
PROBE_MAX_REPS = 50

# The network probe (fleetprof_device/netprobe.py, orchestrator/stages/netpeer.py): the
# controller listens during the session; the plan's target.probe_peer gives each device
# {"host", "port", "token"} (or {"error": why there is none}). A connection opens with one
# line, "fleetprof-net/1 echo|sink TOKEN\n" (at most NET_HEADER_MAX bytes, within
# NET_HEADER_WAIT_S). echo: the peer returns every NET_ECHO_BYTES message, at most
# NET_ECHO_MAX of them. sink: the peer reads until the device shuts its side, at most
# NET_SINK_MAX_BYTES, then answers "received N\n". The peer closes any connection after
# NET_CONN_MAX_S.
NET_PROTOCOL = "fleetprof-net/1"
NET_TOKEN_CHARS = 32  # hex
NET_HEADER_MAX = 128
NET_HEADER_WAIT_S = 5.0
NET_ECHO_BYTES = 64
NET_ECHO_MAX = 1000
NET_SINK_MAX_BYTES = 256 * MIB
NET_CONN_MAX_S = 30.0
# A device that is the others' peer (the campaign's target.network_peer) listens on this
# port on all its addresses, from before T0 until its deadline; its plan's
# target.serve_peer is {"port", "tokens": {token: host}, "allowed": [addresses]}.
NET_PEER_PORT = 45210

# Interval samplers, in seconds. The runner's own samplers (BUILTINS) accept the same
# bounds as the campaign's `interval` (orchestrator/campaign/validators.py): 0.1 s to 60 s. (Before
# the contract the runner took 0.05 s to 3600 s, wider than any plan the controller made.)
BUILTINS = ("system", "memory", "tracemalloc", "open-files", "prometheus")
MIN_SAMPLE_INTERVAL_S = 0.1
MAX_SAMPLE_INTERVAL_S = 60.0

# The system sampler's interface counters (/proc/net/dev, fleetprof_device/netdev.py): each
# sample's "net" maps an interface name (at most NET_IFACE_NAME_MAX characters) to its
# counters in NET_DEV_FIELDS order, for at most NET_MAX_IFACES interfaces (the first ones the
# kernel lists); the controller reports at most NET_MAX_IFACES of them too.
NET_DEV_FIELDS = (
    "rx_bytes",
    "rx_packets",
    "rx_errors",
    "rx_drops",
    "tx_bytes",
    "tx_packets",
    "tx_errors",
    "tx_drops",
)
NET_MAX_IFACES = 32
NET_IFACE_NAME_MAX = 15  # the kernel's IFNAMSIZ - 1

# tracemalloc (docs/report.md, "Allocations"): the builtin "tracemalloc" runs inside a
# launched program. The runner writes fleetprof_device/tracemalloc_hook.py as
# sitecustomize.py into TRACEMALLOC_HOOK_DIR in its workdir, puts that directory first on
# the program's PYTHONPATH and sets PYTHONTRACEMALLOC to its ``frames`` option; the hook
# writes its summary (TRACEMALLOC_SCHEMA) to TRACEMALLOC_FILE every ``interval_s``, at most
# TRACEMALLOC_MAX_BYTES, its tables ``top`` rows long.
TRACEMALLOC = "tracemalloc"
TRACEMALLOC_FILE = "tracemalloc.json"
TRACEMALLOC_SCHEMA = "fleetprof.tracemalloc/1"
TRACEMALLOC_HOOK_DIR = "tracemalloc.hook"
TRACEMALLOC_MAX_FRAMES = 25
TRACEMALLOC_MAX_TOP = 100
TRACEMALLOC_MAX_BYTES = 1 * MIB
TRACEMALLOC_MAX_PATH_CHARS = 300  # a longer file name keeps its end, after "..."
TRACEMALLOC_MAX_ERRORS = 10  # the hook's own errors it records, each at most 300 chars

# The workload's own numbers (docs/report.md, "The workload's own metrics"): a launched
# program finds in WORKLOAD_METRICS_ENV the path of WORKLOAD_METRICS_FILE in the session's
# workdir, to which it may append JSON lines {"name", "value", "unit"?, "t"?}. The runner keeps
# at most WORKLOAD_METRICS_MAX_BYTES of it (whole lines, the first ones); the controller reads
# names of at most WORKLOAD_NAME_MAX_CHARS, WORKLOAD_MAX_NAMES distinct names.
WORKLOAD_METRICS_ENV = "FLEETPROF_METRICS_FILE"
WORKLOAD_METRICS_FILE = "workload.jsonl"
WORKLOAD_METRICS_MAX_BYTES = 8 * MIB
WORKLOAD_NAME_MAX_CHARS = 64
WORKLOAD_MAX_NAMES = 50
# open-files (docs/report.md, "Open files"): the builtin "open-files" reads, every
# ``interval_s``, /proc/PID/fd of the target and its descendants and the target's
# /proc/PID/net/{tcp,tcp6,udp,udp6}, and writes one JSON line per sample to OPEN_FILES_FILE:
# descriptors by kind (OPEN_FILES_KINDS), the ``top_paths`` most-opened paths (each at most
# OPEN_FILES_MAX_PATH_CHARS), TCP/UDP sockets by state.
OPEN_FILES = "open-files"
OPEN_FILES_FILE = "open_files.jsonl"
OPEN_FILES_KINDS = ("file", "socket", "pipe", "anon_inode", "device", "other")
OPEN_FILES_PROTOCOLS = ("tcp", "udp", "tcp6", "udp6")  # the order they are read in
OPEN_FILES_TOP_PATHS = 20
OPEN_FILES_MAX_TOP_PATHS = 100
OPEN_FILES_MAX_PATH_CHARS = 200  # a longer path keeps its end, after "..."

# Benchmark sweeps (docs/report.md, "Sweeps"): a launch target with ``sweep`` runs its
# command once per value, in order, each in an equal slot of the window; the runner launches
# the sweep supervisor (fleetprof_device/sweep.py) as the target, which gives run I the
# variable's value in its environment and in place of "{VARIABLE}" in its arguments, and
# its own metrics file SWEEP_METRICS_FILE % I. The supervisor writes SWEEP_FILE: each run's
# value, times, exit code and how it ended. Values: SWEEP_VALUE_PATTERN, at most
# SWEEP_MAX_VALUES of them.
SWEEP_FILE = "sweep.json"
SWEEP_CONFIG_FILE = "sweep.config.json"
SWEEP_SCHEMA = "fleetprof.sweep/1"
SWEEP_METRICS_FILE = "workload.sweep.%d.jsonl"
SWEEP_RUN_OUTPUT = "sweep.%d"  # + ".stdout" / ".stderr"
SWEEP_VALUE_PATTERN = r"[A-Za-z0-9_.:+-]{1,32}"
SWEEP_MAX_VALUES = 20

# The device package as shipped: one zipapp, pushed by checksum into the fleetprof home's
# tool directory (like py-spy), named by its sha256 so a device can hold several versions.
# Each Ansible module gets DEVICE_BUNDLE_ARG = {"path": <relative to the home>, "sha256": ...}.
DEVICE_BUNDLE_ARG = "device_bundle"
DEVICE_BUNDLE_NAME = "fleetprof_device.pyz"
DEVICE_BUNDLE_DIR = ".fleetprof/tools/fleetprof_device"

# py-spy's hot lines (docs/report.md, "Hot lines"): the report shows, per host and per group,
# the HOT_FUNCTIONS functions with the most self samples and each one's HOT_LINES lines with
# the most. A profiler whose plan options set SOURCE_LINES_OPTION has the runner read those
# lines' source text after the window (fleetprof_device/source_lines.py) into
# SOURCE_LINES_FILE: {"schema", "files": {name: {"path", "lines": {"N": text}}}}, ``name`` as
# py-spy wrote it. A line is cut at SOURCE_LINE_MAX_CHARS; no file is read past
# SOURCE_FILE_MAX_BYTES, and the file holds at most SOURCE_LINES_MAX_BYTES of text.
SOURCE_LINES_SCHEMA = "fleetprof.source-lines/1"
SOURCE_LINES_OPTION = "source_lines"
HOT_FUNCTIONS = 10
HOT_LINES = 5
SOURCE_LINE_MAX_CHARS = 200
SOURCE_FILE_MAX_BYTES = 4 * MIB
SOURCE_LINES_MAX_BYTES = 64 * 1024
# A profiler without an end of its own whose count must cover the window exactly (strace
# -c: it sums until it is told to stop) sets STOP_AT_DEADLINE_OPTION (true) in its plan
# options: the runner sends it SIGINT at the deadline itself, not SIGINT_AFTER_S later, and
# its exit on that SIGINT (130, or killed by it) is its normal end, not a problem.
STOP_AT_DEADLINE_OPTION = "stop_at_deadline"
# A post step's argv element the runner replaces with the path that puts this package on
# sys.path (its zipapp, or the source checkout it runs from): cProfile's converter.
DEVICE_PACKAGE_ARG = "{device_package}"
# A post step's argv element the runner replaces with its own interpreter (sys.executable):
# a converter that needs only the standard library and no program's Python (tcpdump's pcap).
DEVICE_PYTHON_ARG = "{device_python}"

# Prometheus endpoints on the device (docs/campaigns.md, profilers.prometheus): the builtin
# PROMETHEUS (fleetprof_device/scrape.py) scrapes each of at most PROM_MAX_ENDPOINTS URLs,
# http on a loopback address only, every interval of the window; a scrape gets at most its
# timeout (PROM_MAX_TIMEOUT_S at most) and PROM_MAX_RESPONSE_BYTES of answer, its text is
# parsed on the device (fleetprof_device/exposition.py), at most PROM_MAX_LINES lines, and
# keeps at most max_metrics families and max_series labelled series (up to PROM_MAX_METRICS,
# PROM_MAX_SERIES).
PROMETHEUS = "prometheus"
PROM_MAX_ENDPOINTS = 8
PROM_MIN_TIMEOUT_S = 0.1
PROM_MAX_TIMEOUT_S = 30.0
PROM_MAX_RESPONSE_BYTES = 16 * MIB
PROM_MAX_LINES = 200000
PROM_MAX_METRICS = 1000
PROM_MAX_SERIES = 1000
