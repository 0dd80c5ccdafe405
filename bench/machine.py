"""One line describing the machine a benchmark ran on: CPUs differ between the lab's machines
(some have AMX bf16 units, some only AVX512-BF16), and a shared box's load moves every timing."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def load() -> str:
    """The machine's load average: this box is shared, and latency scales with it."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


def describe() -> str:
    flags = cpu_flags()
    bf16 = ("AMX bf16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags
            else "no bf16 units")
    return (f"machine: {platform.platform()} | CPU: {cpu_model()} ({bf16}) | {os.cpu_count()} cores | "
            f"Python {platform.python_version()} | {load()}")
