"""CPU backend throughput against torch on the same tensor (pytest-benchmark).

Run: ``python -m pytest bench/benchmark_fill.py --benchmark-only``. Each group holds the
fastinit fill and torch's equivalent on the same 2**26-element float32 tensor; GB/s
written is in ``extra_info``. ``python bench/benchmark_fill.py`` prints the medians and
ratios as a Markdown table (the one in bench/RESULTS.md) and the peak extra memory of a
fill.

``python bench/benchmark_fill.py --touched [--baseline REV]`` measures the CPU backend
against the write roofline instead: 2**24 elements on memory already touched, medians of
7 rounds (each in its own random order), GB/s and % of ``zero_()`` of the same tensor;
with ``--baseline``, the backend of git revision REV (``fastinit/backends/cpu*.py`` as
they were there) runs in the same rounds, so that before and after are measured in the
same minutes.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

if __name__ == "__main__":  # run as a script: time this checkout's fastinit, not an installed one
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


#: The fills of the touched-memory table: (label, dtype, InitSpec arguments).
TOUCHED = (
    ("uniform_", torch.float32, ("uniform", 0.0, 1.0)),
    ("normal_", torch.float32, ("normal", 0.0, 1.0)),
    ("trunc_normal_(std=0.02)", torch.float32, ("trunc_normal", 0.0, 0.02, -2.0, 2.0)),
    ("trunc_normal_(std=1)", torch.float32, ("trunc_normal", 0.0, 1.0, -2.0, 2.0)),
    ("normal_", torch.bfloat16, ("normal", 0.0, 1.0)),
)


def load_backend(rev: str):
    """The CPU backend (``fastinit/backends/cpu*.py``) as it was at git revision ``rev``,
    imported as a package of its own (its compiled code is cached apart from the current
    backend's; its modules import one another relatively, so they find each other there)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names = subprocess.run(["git", "ls-tree", "--name-only", rev, "fastinit/backends/"],
                           cwd=root, check=True, capture_output=True, text=True).stdout.split()
    package = os.path.join(tempfile.mkdtemp(prefix="fastinit_baseline_"), "fastinit_cpu_baseline")
    os.makedirs(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    for name in names:
        base = os.path.basename(name)
        if base.startswith("cpu") and base.endswith(".py"):
            source = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=root, check=True,
                                    capture_output=True, text=True).stdout
            with open(os.path.join(package, base), "w") as f:
                f.write(source)
    sys.path.insert(0, os.path.dirname(package))
    try:
        return importlib.import_module("fastinit_cpu_baseline.cpu")
    finally:
        sys.path.remove(os.path.dirname(package))


def touched(baseline: str | None = None, n: int = 1 << 24, rounds: int = 7,
            clock=time.perf_counter) -> None:
    """Print the touched-memory table (see the module docstring). ``clock``: wall time, or
    ``time.thread_time`` for one thread on a shared machine (the time the calling thread
    ran, not the time it waited for a core)."""
    from fastinit.backends import cpu
    from fastinit.layout import Segment
    from fastinit.spec import InitSpec

    backends = [("after", cpu)]
    if baseline:
        backends.insert(0, (f"before ({baseline})", load_backend(baseline)))
    tensors = {dt: torch.empty(n, dtype=dt) for dt in {dt for _, dt, _ in TOUCHED}}
    for t in tensors.values():
        t.zero_()
    segs = [Segment(0, 0, 0, 0, n, 1)]
    cases = {("zero_", dt, "-"): (lambda t=t: t.zero_()) for dt, t in tensors.items()}
    for label, dt, (dist, *args) in TOUCHED:
        params = getattr(InitSpec, dist)(*args).kernel_params(dt)
        for name, backend in backends:
            cases[(label, dt, name)] = (lambda b=backend, t=tensors[dt], p=params:
                                        b.fill(t, segs, p, 1234, 5))
    for fn in cases.values():  # compile / load, touch
        fn()
    times = {k: [] for k in cases}
    # Each round in its own order: a case's place in the round must not favour it (after
    # torch's zero_() its threads keep spinning for a while, which slows whatever fill comes
    # next on 2 cores; a fill may find the cache as the one before left it)
    order, shuffle = list(cases), random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for k in order:
            start = clock()
            cases[k]()
            times[k].append(clock() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads; torch {torch.__version__}; "
          f"{n} elements on touched memory, median of {rounds} rounds in random orders"
          f"{'' if clock is time.perf_counter else ' (thread CPU time)'}\n")
    print("| fill | dtype | backend | ms | GB/s | % of zero_() |")
    print("|---|---|---|---:|---:|---:|")
    for (label, dt, name), s in med.items():
        nbytes = n * tensors[dt].element_size()
        pct = 100 * med[("zero_", dt, "-")] / s
        print(f"| {label} | {str(dt).removeprefix('torch.')} | {name} | {s * 1e3:.2f} | "
              f"{nbytes / s / 1e9:.2f} | {pct:.0f}% |")


def cpu_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return name


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--touched", action="store_true",
                        help="the touched-memory table against zero_() (2**24 elements)")
    parser.add_argument("--baseline", metavar="REV",
                        help="with --touched: also time the CPU backend of git revision REV")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int,
                        help="torch.set_num_threads (the fill's threads too)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="with --touched: one thread, timed by its CPU time (shared machines)")
    parser.add_argument("--log2-elements", type=int, default=24,
                        help="with --touched: 2**N elements")
    opts = parser.parse_args()
    if opts.threads or opts.cpu_time:
        torch.set_num_threads(1 if opts.cpu_time else opts.threads)
    if opts.touched:
        touched(opts.baseline, n=1 << opts.log2_elements, rounds=opts.rounds,
                clock=time.thread_time if opts.cpu_time else time.perf_counter)
    else:
        main()
