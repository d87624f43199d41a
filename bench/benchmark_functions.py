"""fastinit against torch.nn.init for every benchmarked init function and dtype.

Run: ``pytest bench/benchmark_functions.py --benchmark-only``. Each group holds, for one
function x dtype x size on one device, the fastinit call, the torch.nn.init call and the
write roofline (``zero_()`` of the same tensor); ``extra_info`` has the GB/s written, the
bytes, the device and its name. The cases (arguments, tensor shape) are those of
``fastinit bench`` (:data:`fastinit.cli.bench.FUNCTIONS`), so the two agree.

Environment (small, CPU-friendly defaults):

* ``FASTINIT_BENCH_SIZE``: elements per tensor, e.g. ``2^24`` (default ``2^20``);
* ``FASTINIT_BENCH_DTYPES``: e.g. ``float32,bfloat16,float16,float64`` (default
  ``float32,bfloat16``);
* ``FASTINIT_BENCH_DEVICE``: ``cpu`` or ``cuda`` (default: CUDA when available);
* ``FASTINIT_BENCH_ROUNDS``: timed rounds per case (default 5).

On a GPU every timed call is followed by a device synchronization, so the host timer of
pytest-benchmark measures the device work (``fastinit bench`` uses CUDA events instead).
"""
from __future__ import annotations

import os

import pytest
import torch

from fastinit.cli.bench import FUNCTIONS, case_shape
from fastinit.cli.parser import parse_dtype, parse_size
from fastinit.cli.rendering import dtype_name, format_size
from fastinit.cli.timing import DeviceTimer, machine_info, resolve_device

SIZE = parse_size(os.environ.get("FASTINIT_BENCH_SIZE", "2^20"))
DTYPES = [parse_dtype(d) for d in
          os.environ.get("FASTINIT_BENCH_DTYPES", "float32,bfloat16").split(",")]
DEVICE = resolve_device(os.environ.get("FASTINIT_BENCH_DEVICE"))
ROUNDS = int(os.environ.get("FASTINIT_BENCH_ROUNDS", "5"))
TIMER = DeviceTimer(DEVICE)
MACHINE = machine_info(DEVICE)


@pytest.fixture(scope="module", params=DTYPES, ids=dtype_name)
def tensor(request):
    t = torch.empty(case_shape(SIZE), dtype=request.param, device=DEVICE)
    t.zero_()  # touch the pages once
    return t


def _bench(benchmark, fn, t, group):
    def call():
        fn(t)
        TIMER.sync()

    call()  # warm-up: JIT loading / kernel compilation
    benchmark.group = group
    benchmark.pedantic(call, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    nbytes = t.numel() * t.element_size()
    benchmark.extra_info.update({
        "elements": t.numel(), "shape": list(t.shape), "dtype": dtype_name(t.dtype),
        "bytes": nbytes, "device": str(DEVICE), "device_name": MACHINE["device_name"],
    })
    if benchmark.stats:  # None under --benchmark-disable (the call ran once, untimed)
        benchmark.extra_info["GB/s"] = nbytes / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("impl", ["fastinit", "torch"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_function(benchmark, tensor, name, impl):
    case = FUNCTIONS[name]
    fn = case.fastinit if impl == "fastinit" else case.torch
    group = f"{name} {dtype_name(tensor.dtype)} {format_size(SIZE)} {DEVICE.type}"
    benchmark.extra_info["call"] = case.args
    _bench(benchmark, fn, tensor, group)


def test_roofline_zero(benchmark, tensor):
    """The write roofline: ``zero_()`` of the same bytes on the same device."""
    _bench(benchmark, torch.Tensor.zero_, tensor,
           f"roofline {dtype_name(tensor.dtype)} {format_size(SIZE)} {DEVICE.type}")
