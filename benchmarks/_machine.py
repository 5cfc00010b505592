"""The machine a benchmark ran on, named beside its figures (machines differ: AMX, AVX2 only)."""

import platform


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s "Model name", from /proc/cpuinfo)."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
