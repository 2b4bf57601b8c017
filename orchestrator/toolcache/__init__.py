"""The controller's tool cache: verified profiler binaries for each device architecture.
One module per job: index client, pip's settings, wheel extraction, the cache itself.

Devices have no internet, so the controller fetches py-spy's wheel for each target
architecture once, checks it against the sha256 the package index publishes, and keeps
only the binary, under ``<cache>/py-spy/<version>/<arch>/py-spy`` with a ``tool.json``
sidecar holding its sha256. Every use re-verifies the binary against the sidecar, so a
damaged entry is fetched again instead of being pushed to a fleet.
"""

from __future__ import annotations

from orchestrator.toolcache.cache import (
    SIDECAR,
    SIDECAR_SCHEMA,
    cache_dir,
    ensure_pyspy,
    fill_pyspy_cache,
)
from orchestrator.toolcache.index import fetch_published_files
from orchestrator.toolcache.model import (
    PLATFORM_TAGS,
    PYSPY_VERSION,
    SUPPORTED_ARCHES,
    CachedTool,
    PipIndex,
    PublishedFile,
    ToolCacheError,
    ToolUnavailable,
    normalize_arch,
)
from orchestrator.toolcache.pipconfig import DEFAULT_INDEX_URL, pip_index

__all__ = [
    "DEFAULT_INDEX_URL",
    "PLATFORM_TAGS",
    "PYSPY_VERSION",
    "SIDECAR",
    "SIDECAR_SCHEMA",
    "SUPPORTED_ARCHES",
    "CachedTool",
    "PipIndex",
    "PublishedFile",
    "ToolCacheError",
    "ToolUnavailable",
    "cache_dir",
    "ensure_pyspy",
    "fetch_published_files",
    "fill_pyspy_cache",
    "normalize_arch",
    "pip_index",
]
