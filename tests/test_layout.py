"""Where values go: global offsets, slices, shards, guard bands, NaN poisoning.

Every fill writes exactly its elements: outputs start as NaN (so an unwritten element
shows) inside guard bands of NaN (so a stray write shows). Both backends are checked;
the kernels run under the interpreter without a GPU.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastinit.backends import cpu
from fastinit.backends import triton as triton_backend
from fastinit.layout import Segment, segments, tensor_segments
from fastinit.spec import InitSpec
from tests import reference
from tests.common import assert_bitwise_equal

BACKENDS = {
    "cpu": lambda out, segs, params, key, stream: cpu.fill(out, segs, params, key, stream),
    "triton": lambda out, segs, params, key, stream: triton_backend.fill(
        out, segs, params, key, stream, block=128),
}
NORMAL = InitSpec.normal(0.0, 1.0)
UNIFORM = InitSpec.uniform(-1.0, 1.0)


def _logical(spec, dtype, numel, key=3, stream=4, g_base=0):
    """The first ``numel`` elements of the logical tensor starting at global ``g_base``."""
    out = torch.full((numel,), math.nan, dtype=dtype)
    cpu.fill(out, [Segment(0, 0, g_base, 0, numel, 1)], spec.kernel_params(dtype), key, stream)
    return out


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("g_base", [0, 1, 2, 3, 4, 1021, 2**31 - 1, 2**32 - 2, 2**32 + 3, 2**41 + 1])
def test_slice_at_global_offset_matches_split_fill(backend, g_base):
    """[g, g+n) filled at once == filled in three uneven pieces, with guard bands."""
    n, guard = 203, 9
    params = NORMAL.kernel_params(torch.float32)
    whole = torch.full((n + 2 * guard,), math.nan)
    BACKENDS[backend](whole, [Segment(guard, 0, g_base, 0, n, 1)], params, 3, 4)
    assert whole[:guard].isnan().all() and whole[-guard:].isnan().all()
    assert not whole[guard:-guard].isnan().any()
    pieces = torch.full((n + 2 * guard,), math.nan)
    for lo, hi in [(0, 5), (5, 130), (130, n)]:
        BACKENDS[backend](pieces, [Segment(guard + lo, 0, g_base + lo, 0, hi - lo, 1)], params, 3, 4)
    assert_bitwise_equal(whole, pieces)


@pytest.mark.parametrize("g_base", [2**32 - 5, 2**40 + 2, 2**62 + 7])
def test_offsets_beyond_int32_follow_the_reference(g_base):
    """Uniforms at global indices >= 2**32 (64-bit group counter) equal the NumPy reference."""
    n = 64
    idx = np.arange(n, dtype=np.uint64) + np.uint64(g_base)
    ref = torch.from_numpy(reference.uniform(5, 6, idx, -1.0, 1.0))
    for backend in BACKENDS.values():
        out = torch.full((n,), math.nan)
        backend(out, [Segment(0, 0, g_base, 0, n, 1)], UNIFORM.kernel_params(torch.float32), 5, 6)
        assert_bitwise_equal(out, ref)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_rows_with_gaps_write_only_their_elements(backend, dtype):
    """A multi-row segment (a shard's rows): gaps between rows stay NaN; values are those
    of the logical tensor at the rows' global indices."""
    rows, row_len, g_stride, m_stride, g_base = 7, 13, 29, 17, 2**33 + 1
    out = torch.full((5 + rows * m_stride + 5,), math.nan, dtype=dtype)
    seg = Segment(5, m_stride, g_base, g_stride, row_len, rows)
    BACKENDS[backend](out, [seg], NORMAL.kernel_params(dtype), 3, 4)
    full = _logical(NORMAL, dtype, rows * g_stride, g_base=g_base)
    mask = torch.zeros(out.numel(), dtype=torch.bool)
    for r in range(rows):
        m0 = 5 + r * m_stride
        mask[m0:m0 + row_len] = True
        assert_bitwise_equal(out[m0:m0 + row_len], full[r * g_stride:r * g_stride + row_len])
    assert out[~mask].isnan().all()


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_shard_of_a_logical_tensor(backend):
    """A block [2:6, 3:11] of a (9, 14) tensor filled at its global offsets equals that
    block of the full tensor."""
    gshape = (9, 14)
    full = _logical(NORMAL, torch.float32, 9 * 14).view(gshape)
    local = torch.full((4, 8), math.nan)
    segs = segments(local.shape, local.stride(), gshape, (2, 3))
    assert len(segs) == 1 and segs[0].n_rows == 4
    BACKENDS[backend](local, segs, NORMAL.kernel_params(torch.float32), 3, 4)
    assert_bitwise_equal(local, full[2:6, 3:11])


def test_three_dimensional_shard_needs_several_segments():
    gshape = (4, 6, 10)
    full = _logical(UNIFORM, torch.float32, 240).view(gshape)
    local = torch.full((2, 3, 4), math.nan)
    segs = segments(local.shape, local.stride(), gshape, (1, 2, 5))
    assert len(segs) == 2
    cpu.fill(local, segs, UNIFORM.kernel_params(torch.float32), 3, 4)
    assert_bitwise_equal(local, full[1:3, 2:5, 5:9])


def test_tensor_segments_of_views():
    base = torch.empty(6, 10)
    assert tensor_segments(base) == [Segment(0, 0, 0, 0, 60, 1)]
    assert tensor_segments(base[:, 2:7]) == [Segment(0, 10, 0, 5, 5, 6)]
    assert tensor_segments(base[2:4]) == [Segment(0, 0, 0, 0, 20, 1)]
    assert tensor_segments(base.t()) is None  # strided innermost dimension
    assert tensor_segments(base[:, ::2]) is None
    assert tensor_segments(torch.empty(0, 5)) == []
    assert tensor_segments(torch.empty(())) == [Segment(0, 0, 0, 0, 1, 1)]
    cl = torch.empty(2, 3, 4, 5).to(memory_format=torch.channels_last)
    assert tensor_segments(cl) is None


def test_cpu_fill_parallel_chunks_equal_single_chunk(monkeypatch):
    """Splitting a large fill over threads does not change a single value."""
    n = 3 * cpu.PARALLEL_THRESHOLD + 7
    params = InitSpec.trunc_normal(0, 1, -2, 2).kernel_params(torch.bfloat16)
    a = torch.full((n,), math.nan, dtype=torch.bfloat16)
    cpu.fill(a, [Segment(0, 0, 1, 0, n, 1)], params, 1, 2)
    monkeypatch.setattr(cpu, "PARALLEL_THRESHOLD", 1 << 62)
    b = torch.full((n,), math.nan, dtype=torch.bfloat16)
    cpu.fill(b, [Segment(0, 0, 1, 0, n, 1)], params, 1, 2)
    assert_bitwise_equal(a, b)


def test_other_devices_are_filled_through_the_cpu():
    """Devices without a fastinit backend (MPS, XPU, ...) get a CPU fill copied over: the
    same values, and elements outside the segments keep theirs."""
    from fastinit import backends

    out = torch.full((40,), math.nan)
    seg = [Segment(5, 0, 77, 0, 30, 1)]
    params = NORMAL.kernel_params(torch.float32)
    backends._fill_through_cpu([backends.FillEntry(out, seg, params, 3, 4)], progress=False)
    ref = torch.full((40,), math.nan)
    cpu.fill(ref, seg, params, 3, 4)
    assert_bitwise_equal(out, ref)
    assert out[:5].isnan().all() and out[35:].isnan().all()


def _span_by_rule(t: torch.Tensor) -> tuple[int, int]:
    """``layout.span``'s general rule, written out: the lowest and highest offsets any
    index can reach."""
    lo = hi = t.storage_offset()
    for n, s in zip(t.shape, t.stride()):
        lo += (n - 1) * s if s < 0 else 0
        hi += (n - 1) * s if s >= 0 else 0
    return lo, hi


def test_span_short_path_is_the_general_rule():
    """``span`` takes a short path for contiguous tensors; it must give the ends the
    general rule gives, for views at offsets, size-1 dimensions with any stride, and
    tensors without elements (whose strides the short path must not ignore)."""
    from fastinit.layout import span

    base = torch.empty(4096)
    views = [
        base, base[7:19], base[5:5 + 24].view(2, 3, 4), base.as_strided((3, 1, 5), (5, 99, 1), 11),
        base[3:].view(-1)[:1], base.as_strided((0, 3), (5, 1), 2), base.as_strided((0,), (1,), 9),
        base.as_strided((4, 0, 2), (7, 3, 1), 1), base.view(64, 64).t(), base.view(64, 64)[:, 3],
        base.as_strided((2, 3), (1, 2), 4),
    ]
    for v in views:
        assert span(v) == _span_by_rule(v), (tuple(v.shape), v.stride(), v.storage_offset())


def test_flat_array_covers_the_span_of_any_view():
    """The CPU backend's NumPy view of a tensor's memory (the short path for 1-D
    contiguous tensors, and every other view) starts at the tensor's first element."""
    base = torch.arange(64, dtype=torch.float32)
    for v, n in [(base[5:9], 4), (base[5:9], 6), (base[8:32].view(4, 6), 24),
                 (base[8:32].view(4, 6)[:, :2], 20), (base[::2], 31)]:
        arr = cpu._flat_array(v, n)
        assert arr.shape == (n,) and arr.ctypes.data == v.data_ptr()
        np.testing.assert_array_equal(arr, base[v.storage_offset():v.storage_offset() + n].numpy())


def test_local_tensor_of_tensors_and_subclasses():
    """``local_tensor`` is the identity for plain tensors, Parameters and other
    subclasses (its short path takes only the exact types it names)."""
    from fastinit.distributed import local_tensor

    class Tagged(torch.Tensor):
        pass

    t = torch.empty(3)
    for x in (t, torch.nn.Parameter(t), t.as_subclass(Tagged), torch.nn.Buffer(t)):
        assert local_tensor(x) is x
