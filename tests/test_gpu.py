"""On a CUDA device: the Triton kernels write exactly the CPU backend's bits.

Every test carries the ``gpu`` mark and skips without a device (``tools/gpu_check.sh``
runs them first on a GPU machine). The comparisons are bitwise (``assert_bitwise_equal``:
raw bit patterns, not ``allclose``): the contract promises 0 ulp between devices for
Philox words, uniforms, normals and truncated normals in every output dtype, at any global
offset (also past 2**32) and in buffers past 2**31 elements.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from fastinit import backends  # noqa: E402
from fastinit.backends import cpu  # noqa: E402
from fastinit.backends import triton as triton_backend  # noqa: E402
from fastinit.kernels.philox import group_words  # noqa: E402
from fastinit.layout import Segment  # noqa: E402
from fastinit.spec import InitSpec  # noqa: E402
from tests.common import assert_bitwise_equal  # noqa: E402

pytestmark = pytest.mark.gpu

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
SPECS = {
    "uniform": InitSpec.uniform(-0.3, 0.7),
    "uniform_kaiming": InitSpec.uniform(-1 / 64, 1 / 64),
    "normal": InitSpec.normal(0.25, 1.5),
    "normal_small_std": InitSpec.normal(0.0, 0.02),
    "trunc_2sigma": InitSpec.trunc_normal(0.0, 1.0, -2.0, 2.0),
    "trunc_wide": InitSpec.trunc_normal(0.0, 0.02, -2.0, 2.0),  # regions 0-2, no clamp
    "trunc_far_tail": InitSpec.trunc_normal(0.0, 1.0, 4.0, 5.0),
    "trunc_deep_tail": InitSpec.trunc_normal(0.0, 1.0, 8.0, 9.0),  # region 3
    "trunc_narrow": InitSpec.trunc_normal(0.0, 1.0, -0.01, 0.01),
    "constant": InitSpec.constant(-0.125),
}
KEY, STREAM = 0x9E3779B97F4A7C15, 11


def _pair(spec: InitSpec, dtype: torch.dtype, seg: Segment, size: int, grouped: bool = False):
    """The same fill on the GPU and on the CPU backend, in NaN-poisoned buffers."""
    params = spec.kernel_params(dtype)
    gpu = torch.full((size,), math.nan, dtype=dtype, device="cuda")
    ref = torch.full((size,), math.nan, dtype=dtype)
    if grouped:
        triton_backend.fill_grouped([backends.FillEntry(gpu, [seg], params, KEY, STREAM)])
    else:
        triton_backend.fill(gpu, [seg], params, KEY, STREAM)
    cpu.fill(ref, [seg], params, KEY, STREAM)
    torch.cuda.synchronize()
    return gpu.cpu(), ref


@pytest.mark.parametrize("grouped", [False, True], ids=["single", "grouped"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(SPECS))
def test_gpu_equals_cpu_bitwise(name, dtype, grouped):
    """Whole blocks (aligned, vector stores) and partial ones (odd offset), 3 * 2**16 + 5
    elements from global index 2**33 + 8."""
    n = 3 * 2**16 + 5
    for m_base, g_base in ((0, 2**33 + 8), (3, 2**33 + 1)):
        seg = Segment(m_base, 0, g_base, 0, n, 1)
        got, ref = _pair(SPECS[name], dtype, seg, m_base + n + 7, grouped)
        assert_bitwise_equal(got, ref)
        assert not got[m_base:m_base + n].isnan().any()
        assert got[:m_base].isnan().all() and got[m_base + n:].isnan().all()


@triton.jit
def _words_kernel(out_ptr, g0, k0, k1, c2, c3, G: tl.constexpr):
    w0, w1, w2, w3 = group_words(g0 + tl.arange(0, G).to(tl.int64), k0.to(tl.uint32),
                                 k1.to(tl.uint32), c2.to(tl.uint32), c3.to(tl.uint32))
    offs = tl.arange(0, G) * 4
    tl.store(out_ptr + offs, w0.to(tl.int32, bitcast=True))
    tl.store(out_ptr + offs + 1, w1.to(tl.int32, bitcast=True))
    tl.store(out_ptr + offs + 2, w2.to(tl.int32, bitcast=True))
    tl.store(out_ptr + offs + 3, w3.to(tl.int32, bitcast=True))


@pytest.mark.parametrize("g0", [0, 2**32 - 512, 2**61 + 3])
def test_philox_words_equal_cpu(g0):
    """The raw Philox words of 1024 groups (the 64-bit group counter included)."""
    G = 1024
    out = torch.empty(4 * G, dtype=torch.int32, device="cuda")
    k0, k1, c2, c3 = 0x7F4A7C15, 0x9E3779B9, 11, 5 << 24
    _words_kernel[(1,)](out, g0, k0, k1, c2, c3, G=G)
    ref = cpu.philox_words((k1 << 32) | k0, ((c3 & 0xFFFFFF) << 32) | c2,
                           np.arange(g0, g0 + G, dtype=np.uint64), draw_round=c3 >> 24)
    assert np.array_equal(out.cpu().numpy().view(np.uint32).reshape(G, 4), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_offsets_beyond_2_32(dtype):
    for g_base in (2**32 - 5, 2**40 + 2, 2**62 + 7):
        seg = Segment(0, 0, g_base, 0, 5000, 1)
        got, ref = _pair(SPECS["normal"], dtype, seg, 5000)
        assert_bitwise_equal(got, ref)


def test_rows_past_the_grid_limit():
    """70000 rows of 3 (more rows than one launch's grid holds: the launcher splits)."""
    rows = 70000
    seg = Segment(1, 5, 2**32 + 1, 7, 3, rows)
    got, ref = _pair(SPECS["trunc_2sigma"], torch.float32, seg, 5 * rows + 2)
    assert_bitwise_equal(got, ref)


def _free_bytes() -> int:
    return torch.cuda.mem_get_info()[0]


@pytest.mark.parametrize("grouped", [False, True], ids=["single", "grouped"])
def test_buffer_past_2_31_elements(grouped):
    """A bfloat16 buffer of 2**31 + 2**20 elements (4.3 GB): the elements around 2**31 and
    at the end equal the CPU backend's (the CPU fills only those slices)."""
    n = 2**31 + 2**20
    if _free_bytes() < 2 * n * 2 + 2**30:
        pytest.skip("needs about 9 GB of free device memory")
    dtype = torch.bfloat16
    buf = torch.full((n,), math.nan, dtype=dtype, device="cuda")
    params = SPECS["trunc_wide"].kernel_params(dtype)
    seg = Segment(0, 0, 0, 0, n, 1)
    if grouped:  # two tensors of one fused buffer: the second starts past 2**31
        cut = 2**31 + 12
        entries = [backends.FillEntry(buf[:cut], [Segment(0, 0, 0, 0, cut, 1)], params, KEY,
                                      STREAM),
                   backends.FillEntry(buf[cut:], [Segment(0, 0, cut, 0, n - cut, 1)], params,
                                      KEY, STREAM)]
        triton_backend.fill_grouped(entries)
    else:
        triton_backend.fill(buf, [seg], params, KEY, STREAM)
    torch.cuda.synchronize()
    assert not buf.isnan().any()
    for start in (0, 2**31 - 4096, n - 8192):
        got = buf[start:start + 8192].cpu()
        ref = torch.full((8192,), math.nan, dtype=dtype)
        cpu.fill(ref, [Segment(0, 0, start, 0, 8192, 1)], params, KEY, STREAM)
        assert_bitwise_equal(got, ref)
    del buf
    torch.cuda.empty_cache()


def test_public_functions_match_cpu():
    """The public API with a seed: the same bits on the GPU and on the CPU."""
    import fastinit

    for fn, kwargs in ((fastinit.uniform_, {"a": -0.1, "b": 0.1}),
                       (fastinit.normal_, {"std": 0.02}),
                       (fastinit.trunc_normal_, {"std": 0.02}),
                       (fastinit.kaiming_uniform_, {"a": 5 ** 0.5})):
        for dtype in (torch.float32, torch.bfloat16):
            g = fn(torch.empty(1000, 257, dtype=dtype, device="cuda"), **kwargs, seed=7)
            c = fn(torch.empty(1000, 257, dtype=dtype), **kwargs, seed=7)
            assert_bitwise_equal(g.cpu(), c)
