"""Shared helper of the benchmark scripts: append a dated section to BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
_HEADER = (
    "# Benchmarks\n\n"
    "Figures appended by the scripts in `bench/` (run from the repository root with the\n"
    "project's virtual environment). Each section names the machine, the date and the command.\n"
)


def cpu_model() -> str | None:
    """The CPU model name that `lscpu` reports, where lscpu exists."""
    try:
        output = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            return value.strip()
    return None


def memory_gib() -> int | None:
    """Physical memory in GiB, rounded, where the platform says."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (AttributeError, ValueError, OSError):
        return None


def machine() -> str:
    """One line that says what the figures were measured on."""
    parts = [cpu_model() or platform.machine(), f"{os.cpu_count()} CPUs"]
    memory = memory_gib()
    if memory is not None:
        parts.append(f"{memory} GiB RAM")
    parts += [f"{platform.system()} {platform.release()}", f"Python {platform.python_version()}"]
    return ", ".join(parts)


def publish(title: str, module: str, argv: Sequence[str] | None, lines: list[str]) -> None:
    """Print a benchmark's figures and append them with the command that produced them."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    print("\n".join(lines))
    append_section(title, shlex.join(["python", "-m", module, *arguments]), lines)


def append_section(title: str, command: str, lines: list[str]) -> None:
    """Append a section (title, date, machine, command, then `lines`) to BENCHMARKS.md."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            f"## {title}",
            "",
            f"- date: {date}",
            f"- machine: {machine()}",
            f"- command: `{command}`",
            *lines,
        ]
    )
    existing = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else ""
    # Sections are separated by one blank line, whatever the file ended with.
    separator = "" if existing.endswith("\n\n") else "\n" if existing.endswith("\n") else "\n\n"
    with BENCHMARKS.open("a", encoding="utf-8") as handle:
        handle.write((separator if existing else _HEADER + "\n") + section + "\n")
