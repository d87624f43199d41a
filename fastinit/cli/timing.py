"""Devices and time: the only part of the command line that knows how to time a device.

:func:`resolve_device` turns ``--device`` into a ``torch.device`` this machine has;
:class:`DeviceTimer` times callables there (CUDA events on a GPU, ``time.perf_counter`` on
the CPU; small cases repeated inside one measurement until it lasts ``min_time``, as
``timeit.autorange`` does, so that clock resolution does not matter) and measures free and
peak memory; :func:`machine_info` records what a result was measured on.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

import fastinit

__all__ = ["resolve_device", "DeviceTimer", "cpu_name", "machine_info"]


def resolve_device(name: str | None, command: str = "bench") -> torch.device:
    """``None`` / ``"auto"``: CUDA when available, else the CPU.

    Raises ``ValueError`` (naming ``command``) for a device this machine does not have or
    that the command does not run on. ``"cuda"`` becomes the current CUDA device with its
    index, so that results name the GPU they ran on.
    """
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"bad device {name!r}: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: CUDA is not available on this machine "
                             f"(this torch build: {torch.__version__})")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            raise ValueError(f"device {name!r}: this machine has {n} CUDA device"
                             f"{'' if n == 1 else 's'} (cuda:0 to cuda:{n - 1})")
    elif dev.type != "cpu":
        raise ValueError(f"device {name!r}: fastinit {command} runs on 'cpu' or 'cuda'")
    return dev


class DeviceTimer:
    """Times callables on one device.

    Args:
        device: where the work runs
        min_time: the shortest single measurement (seconds); faster calls are repeated
            inside a measurement and the time divided
    """

    def __init__(self, device: torch.device | str, min_time: float | None = None) -> None:
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        # GPU events resolve ~0.5 us; the CPU clock is fine, but Python call overhead and
        # OS noise call for a longer floor.
        self.min_time = min_time if min_time is not None else (1e-3 if self.is_cuda else 5e-3)

    def sync(self) -> None:
        """Wait for the device to finish queued work."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def _measure(self, fn: Callable[[], Any], inner: int) -> float:
        if self.is_cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            stream = torch.cuda.current_stream(self.device)  # where fastinit and torch launch
            start.record(stream)
            for _ in range(inner):
                fn()
            end.record(stream)
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return time.perf_counter() - t0

    def wall(self, fn: Callable[[], Any]) -> float:
        """One call, host wall clock, synchronized on both sides (for whole-model builds)."""
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t0

    def median(self, fn: Callable[[], Any], repeats: int = 5, *, warmup: int = 1,
               budget: float | None = None, min_repeats: int = 3,
               stat: Callable[[list[float]], float] = statistics.median) -> tuple[float, int]:
        """Median seconds per call of ``fn`` over ``repeats`` measurements.

        ``budget`` (seconds) caps the time spent on one case: slow calls (torch's
        ``trunc_normal_`` on a CPU) get fewer measurements, never fewer than
        ``min(min_repeats, repeats)``. ``stat`` reduces the measurements (``min`` for a
        ceiling such as the roofline). Returns ``(seconds, measurements taken)``.
        """
        for _ in range(warmup):  # JIT loading, kernel compilation, first-touch page faults
            self._measure(fn, 1)
        first = self._measure(fn, 1)
        inner = 1
        if first < self.min_time:
            inner = min(1000, math.ceil(self.min_time / max(first, 1e-7)))
        n = repeats
        if budget is not None and first * inner * repeats > budget:
            n = max(min(min_repeats, repeats), int(budget / (first * inner)))
        times = [self._measure(fn, inner) / inner for _ in range(n)]
        return stat(times), n

    def memory_available(self) -> int | None:
        """Free memory of the device in bytes (``None`` if unknown)."""
        if self.is_cuda:
            return torch.cuda.mem_get_info(self.device)[0]
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    @contextlib.contextmanager
    def peak_memory(self) -> Iterator[dict]:
        """Peak memory above the starting point while the block runs, in ``box["bytes"]``.

        CUDA: ``max_memory_allocated``. CPU (Linux): the resident-set high-water mark
        (``VmHWM``), reset by writing 5 to ``/proc/self/clear_refs`` after freed heap
        memory is returned to the OS; ``None`` elsewhere. Collect garbage before entering.
        """
        box: dict = {"bytes": None}
        if self.is_cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            yield box
            self.sync()
            box["bytes"] = torch.cuda.max_memory_allocated(self.device) - base
            return
        _release_freed_memory()  # else reused heap pages would not raise the mark
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _proc_status_kib("VmRSS")
        except OSError:
            base = None
        yield box
        if base is not None:
            box["bytes"] = (_proc_status_kib("VmHWM") - base) * 1024


def _proc_status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"{field_name} not in /proc/self/status")


def _release_freed_memory() -> None:
    """Return freed heap memory to the OS before a CPU peak-memory measurement.

    glibc keeps freed blocks below its (dynamic, up to 32 MiB) mmap threshold in the heap:
    the next measurement would start from an inflated RSS and reuse that memory without
    raising the high-water mark, under-reporting its peak. ``malloc_trim(0)`` releases the
    free pages (they fault back in, and count, when reused). A no-op without glibc.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# --- the machine ---------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(distribution: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:  # not installed, or no metadata
        return None


def machine_info(device: torch.device | str) -> dict:
    """What a result was measured on: device, its name, CPU, threads, versions, date."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_name()
    return {
        "device": str(device),
        "device_type": device.type,
        "device_name": name,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "numba": _version("numba"),
        "numpy": _version("numpy"),
        "transformers": _version("transformers"),
        "fastinit": fastinit.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
