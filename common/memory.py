"""The up-front memory check: a run that cannot fit is refused before it allocates anything, with the
figures and the flags to lower."""

import os

from common.checkpoint import snapshot
from common.cli import fail


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def available_memory() -> int | None:
    """Bytes this process can still take: the kernel's MemAvailable, capped by a cgroup v2 limit."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g:
            limit = f.read().strip()
            if limit != "max":
                left = int(limit) - int(g.read())
                available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    return available


def env_nbytes(env) -> int:
    """Bytes one env takes: its pickled size (arrays, RNGs, simulator state), at least 64 KiB (an env
    is also Python objects that pickle does not count; None, for SMAX's few arrays per env: 64 KiB)."""
    pickled = len(snapshot(env, "") or b"") if env is not None else 0
    return max(pickled, getattr(env, "resident_bytes", 0), 64 * 2**10)  # resident_bytes: a C++ engine's (GRF)


def check_memory(needs: dict[str, int], flags: str) -> None:
    """fail() when the estimated needs exceed the memory available, with the figures and the flags to lower."""
    available, total = available_memory(), sum(needs.values())
    if available is not None and total > available:
        parts = ", ".join(f"{what} {_gib(n)}" for what, n in needs.items())
        fail(
            f"this run needs about {_gib(total)} of memory ({parts}) but {_gib(available)} is available; lower {flags}"
        )
