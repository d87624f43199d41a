"""The grouped fill: many tensors of mixed shapes, dtypes and distributions at once.

Under the interpreter (no GPU) the grouped Triton kernel must write exactly what
per-tensor fills write, bit for bit, and nothing else: every tensor sits in a NaN buffer
with guard bands on both sides.
"""
from __future__ import annotations

import math

import pytest
import torch

from fastinit import backends
from fastinit.backends import cpu
from fastinit.backends import triton as triton_backend
from fastinit.layout import Segment
from fastinit.spec import InitSpec
from tests.common import assert_bitwise_equal

SPECS = [
    InitSpec.uniform(-0.5, 0.25),
    InitSpec.normal(0.1, 0.02),
    InitSpec.trunc_normal(0.0, 1.0, -2.0, 2.0),
    InitSpec.trunc_normal(0.0, 1.0, 6.0, 7.0),
    InitSpec.constant(1.0),
    InitSpec.constant(0.0),
]
GUARD = 5


def _layout(dtype, sizes):
    """A NaN buffer holding tensors of ``sizes`` separated by guard bands, and the entries."""
    total = GUARD + sum(n + GUARD for n in sizes)
    buf = torch.full((total,), math.nan, dtype=dtype)
    entries = []
    off = GUARD
    for i, n in enumerate(sizes):
        spec = SPECS[i % len(SPECS)]
        seg = [Segment(off, 0, 3 * i + 1, 0, n, 1)]  # odd global bases: partial groups
        entries.append(backends.FillEntry(buf, seg, spec.kernel_params(dtype), 1000 + i,
                                          (i * 7919) << 24, i % 2))
        off += n + GUARD
    return buf, entries


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64],
                         ids=str)
def test_grouped_kernel_equals_per_tensor_fills(dtype):
    sizes = [1, 3, 4, 5, 64, 129, 700, 17, 2, 1031, 8, 9]
    grouped, entries = _layout(dtype, sizes)
    triton_backend.fill_grouped(entries, block=128)
    single, entries_single = _layout(dtype, sizes)
    for e in entries_single:
        cpu.fill(*e)
    assert_bitwise_equal(grouped, single)
    written = torch.zeros(grouped.numel(), dtype=torch.bool)
    for e in entries:
        s = e.segments[0]
        written[s.m_base:s.m_base + s.row_len] = True
    assert not grouped[written].isnan().any(), "an element of a tensor was not written"
    assert grouped[~written].isnan().all(), "a guard element was overwritten"


def test_grouped_kernel_mixed_dtypes_and_rows():
    """Tensors of several dtypes in one call (one launch each) and multi-row segments."""
    outs = {dt: torch.full((400,), math.nan, dtype=dt) for dt in (torch.float32, torch.bfloat16)}
    entries = []
    for j, (dt, buf) in enumerate(outs.items()):
        seg = Segment(3, 40, 2**32 + j, 97, 30, 9)  # 9 rows of 30, gaps of 10
        entries.append(backends.FillEntry(buf, [seg], SPECS[j].kernel_params(dt), 5, 6))
    launches = []
    original = triton_backend._grouped_fill_kernel

    class Counting:
        def __getitem__(self, grid):
            launches.append(grid)
            return original[grid]

    triton_backend._grouped_fill_kernel = Counting()
    try:
        triton_backend.fill_grouped(entries, block=64)
    finally:
        triton_backend._grouped_fill_kernel = original
    assert len(launches) == 2  # one per dtype
    for (dt, buf), e in zip(outs.items(), entries):
        ref = torch.full((400,), math.nan, dtype=dt)
        cpu.fill(ref, *e[1:])
        assert_bitwise_equal(buf, ref)
        assert buf.isnan().sum() == 400 - 9 * 30


def test_cpu_grouped_equals_per_tensor():
    grouped, entries = _layout(torch.float32, [10, 70000, 3, 5000])
    cpu.fill_grouped(entries, progress=True)
    single, entries_single = _layout(torch.float32, [10, 70000, 3, 5000])
    for e in entries_single:
        cpu.fill(*e)
    assert_bitwise_equal(grouped, single)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_constant_keeps_the_sign_of_zero(backend):
    """Constants are fma(-0, 0, c): -0.0 stays -0.0 (as torch's fill_ writes it)."""
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        out = torch.full((10,), math.nan, dtype=dtype)
        entry = backends.FillEntry(out, [Segment(0, 0, 1, 0, 10, 1)],
                                   InitSpec.constant(-0.0).kernel_params(dtype), 1, 2)
        (cpu.fill_grouped if backend == "cpu" else triton_backend.fill_grouped)([entry])
        assert_bitwise_equal(out, torch.full((10,), -0.0, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_aligned_launches_write_the_same_values(dtype):
    """Aligned segments take the vector-store path (whole blocks unmasked): the single and
    the grouped kernel still write exactly the CPU backend's values, and nothing else."""
    n, block = 1000, 64  # 15 whole blocks and a partial one
    params = SPECS[2].kernel_params(dtype)
    seg = [Segment(16, 0, 2**33, 0, n, 1)]  # memory offset and global base multiples of 8
    assert triton_backend._aligned(torch.empty(8, dtype=dtype).data_ptr(), seg[0])
    ref = torch.full((n + 32,), math.nan, dtype=dtype)
    cpu.fill(ref, seg, params, 9, 10)
    single = torch.full((n + 32,), math.nan, dtype=dtype)
    triton_backend.fill(single, seg, params, 9, 10, block=block)
    grouped = torch.full((n + 32,), math.nan, dtype=dtype)
    triton_backend.fill_grouped([backends.FillEntry(grouped, seg, params, 9, 10)], block=block)
    assert_bitwise_equal(single, ref)
    assert_bitwise_equal(grouped, ref)
    assert ref[:16].isnan().all() and ref[16 + n:].isnan().all()
