"""CPU backend throughput against torch on the same tensor (pytest-benchmark).

Run: ``python -m pytest bench/benchmark_fill.py --benchmark-only``. Each group holds the
fastinit fill and torch's equivalent on the same 2**26-element float32 tensor; GB/s
written is in ``extra_info``. ``python bench/benchmark_fill.py`` prints the medians and
ratios as a Markdown table (the one in bench/RESULTS.md) and the peak extra memory of a
fill.
"""
from __future__ import annotations

import platform
import statistics
import sys
import time

import pytest
import torch

import fastinit

N = 1 << 26
CASES = {
    "uniform_": (lambda t: fastinit.uniform_(t), lambda t: torch.nn.init.uniform_(t)),
    "normal_": (lambda t: fastinit.normal_(t), lambda t: torch.nn.init.normal_(t)),
    "trunc_normal_": (lambda t: fastinit.trunc_normal_(t, std=1.0, a=-2.0, b=2.0),
                      lambda t: torch.nn.init.trunc_normal_(t, std=1.0, a=-2.0, b=2.0)),
}


@pytest.fixture(scope="module")
def tensor():
    t = torch.empty(N)
    t.zero_()  # touch the pages once
    return t


@pytest.mark.parametrize("impl", ["fastinit", "torch"])
@pytest.mark.parametrize("name", list(CASES))
def test_fill_throughput(benchmark, tensor, name, impl):
    fn = CASES[name][0 if impl == "fastinit" else 1]
    fn(tensor)  # warm-up (JIT compilation on the first call)
    benchmark.group = f"{name} {N} float32 cpu"
    benchmark.extra_info["elements"] = N
    benchmark.pedantic(fn, args=(tensor,), rounds=5 if impl == "fastinit" else 3, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["GB/s"] = N * 4 / benchmark.stats.stats.median / 1e9


def _median(fn, t, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(t)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return -1


def peak_extra_memory_mib(fn, t) -> float:
    """Peak resident memory added by one fill of an already-allocated tensor (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    before = _rss_kib("VmRSS")
    fn(t)
    return (_rss_kib("VmHWM") - before) / 1024


def main() -> None:
    t = torch.empty(N)
    t.zero_()
    rows = []
    for name, (ours, theirs) in CASES.items():
        ours(t)
        theirs(t)
        a = _median(ours, t, 7)
        b = _median(theirs, t, 5)
        rows.append((name, a, b))
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"CPU: {cpu}, {torch.get_num_threads()} threads; torch {torch.__version__}; "
          f"Python {sys.version.split()[0]}; 2**26 float32 elements, median of 7 (fastinit) "
          "and 5 (torch) runs\n")
    print("| function | fastinit ms | GB/s | torch ms | GB/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a * 1e3:.1f} | {N * 4 / a / 1e9:.2f} | {b * 1e3:.1f} | "
              f"{N * 4 / b / 1e9:.2f} | {b / a:.2f}x |")
    try:
        extra = max(peak_extra_memory_mib(ours, t) for ours, _ in CASES.values())
        print(f"\nPeak extra memory of a fastinit fill (beyond the output): {extra:.1f} MiB")
    except OSError:
        pass


if __name__ == "__main__":
    main()
