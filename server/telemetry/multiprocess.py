"""The folder where the processes of one `reqo serve` group record their metrics.

prometheus-client reads `PROMETHEUS_MULTIPROC_DIR` when it is first imported, so the supervisor
sets it before it imports any metric, and its children inherit it. This module imports nothing
of prometheus-client at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
SHARED_MEMORY = Path("/dev/shm")


def metrics_folder(data_dir: Path) -> Path:
    """The metrics folder of the group serving a data directory: in memory (/dev/shm) where
    the machine has it, else in the temporary directory; never on the data's disk, where a full
    disk would make writing a metric into its mapped file kill the process (SIGBUS)."""
    base = SHARED_MEMORY
    if not (base.is_dir() and os.access(base, os.W_OK)):
        base = Path(tempfile.gettempdir())
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return base / f"reqo-metrics-{os.getuid()}-{digest}"


def prepare_multiprocess(folder: Path) -> None:
    """Start a group's metrics afresh in `folder` (what a previous group left is removed) and
    have this process and its children record there."""
    if "prometheus_client.values" in sys.modules and ENV not in os.environ:
        # Its metrics would stay in this process's memory, invisible to the scrapes.
        raise RuntimeError("prometheus_client was imported before the metrics folder was set")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(folder)


def remove_multiprocess(folder: Path) -> None:
    """Remove a stopped group's metrics."""
    shutil.rmtree(folder, ignore_errors=True)


def multiprocess_dir() -> Path | None:
    """The group's metrics folder, or None outside a group."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def process_died(pid: int) -> None:
    """Forget a dead process's `live*` gauges (its counters keep counting in the totals)."""
    folder = multiprocess_dir()
    if folder is None:
        return
    from prometheus_client.multiprocess import mark_process_dead

    with contextlib.suppress(OSError):
        mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]
