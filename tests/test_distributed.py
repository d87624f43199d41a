"""``fastinit.distributed`` in one process: the map from a rank's local elements to global ones.

No process group: the local-to-global map (:func:`~fastinit.distributed.shard_layout`)
against torch's own splitting code for every rank of many meshes and placements, fills
through the segments it produces (both backends), the placements it refuses, the size of
the plan at Llama-70B scale, and what the helpers say of plain tensors. The spawned gloo
ranks (DTensor, FSDP2, tensor parallelism vs one process) are in
tests/differential/test_distributed_ranks.py.
"""
from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

pytest.importorskip("torch.distributed.tensor")
from torch.distributed.tensor import Partial, Replicate, Shard  # noqa: E402
from torch.distributed.tensor._utils import _compute_local_shape_and_global_offset  # noqa: E402
from torch.distributed.tensor.placement_types import _StridedShard  # noqa: E402

from fastinit import distributed  # noqa: E402
from fastinit.backends import cpu  # noqa: E402
from fastinit.distributed import layout_segments, shard_layout  # noqa: E402
from fastinit.layout import Segment, contiguous_strides  # noqa: E402
from fastinit.spec import InitSpec  # noqa: E402
from tests.common import assert_bitwise_equal  # noqa: E402


SHAPES = [(7, 5), (3, 10, 6), (13,), (1, 9), (2, 3), (12, 8)]


MESHES = [(1,), (3,), (4,), (2, 2), (4, 2), (2, 3), (2, 2, 2)]


def _choices(ndim):
    return ([Replicate()] + [Shard(d) for d in range(ndim)]
            + [_StridedShard(d, split_factor=f) for d in range(ndim) for f in (2, 3)])


def _cases(max_per_mesh=40, seed=0):
    rng = random.Random(seed)
    for shape in SHAPES:
        for mesh in MESHES:
            combos = list(itertools.product(_choices(len(shape)), repeat=len(mesh)))
            if len(combos) > max_per_mesh:
                combos = rng.sample(combos, max_per_mesh)
            for placements in combos:
                yield shape, mesh, placements


def _torch_local_index(shape, mesh, coord, placements):
    """The global linear indices of a rank's local tensor, by torch's own split code
    (what distribute_tensor does, left to right over the mesh dimensions)."""
    t = torch.arange(math.prod(shape)).view(shape)
    for k, c, p in zip(mesh, coord, placements):
        if isinstance(p, (Shard, _StridedShard)):
            t = p._split_tensor(t, k, with_padding=False, contiguous=True)[0][c]
    return t


def _segments_index(local_shape, strides, segs):
    """Interpret segments: the global index written at each local element (-1: none);
    asserts that no element is written twice."""
    span = 1 + sum((n - 1) * s for n, s in zip(local_shape, strides))
    buf = [-1] * span
    for s in segs:
        for r in range(s.n_rows):
            for j in range(s.row_len):
                m = s.m_base + r * s.m_row_stride + j
                assert buf[m] == -1, f"element {m} written twice"
                buf[m] = s.g_base + r * s.g_row_stride + j
    return torch.tensor(buf).as_strided(local_shape, strides)


def _stride_variants(local_shape):
    """Contiguous, padded rows, and (2-d) transposed memory layouts of a local shape."""
    out = [torch.empty(local_shape).stride()]
    if len(local_shape) >= 2:
        padded = local_shape[:-1] + (local_shape[-1] + 3,)
        out.append(torch.empty(padded).stride())
    if len(local_shape) == 2:
        out.append(torch.empty(local_shape[::-1]).t().stride())
    return out


def test_layout_matches_torch_split_for_every_rank():
    """For every rank of many meshes (up to 3-d) and placement combinations (Shard on any
    dim, several mesh dims on one tensor dim, _StridedShard, Replicate) of awkward shapes
    (uneven, empty shards): the global indices a rank holds are the ones torch's split puts
    there, and torch's compute_local_shape_and_global_offset agrees on shape and offset;
    the segments write every local element exactly once, at its global index, for
    contiguous, padded and transposed local memory."""
    checked = 0
    for shape, mesh, placements in _cases():
        for coord in itertools.product(*(range(k) for k in mesh)):
            expected = _torch_local_index(shape, mesh, coord, placements)
            layout = shard_layout(shape, mesh, coord, placements)
            assert layout.local_shape == tuple(expected.shape), (shape, mesh, coord, placements)
            t_shape, t_offset = _compute_local_shape_and_global_offset(
                shape, mesh, list(coord), placements)
            assert tuple(t_shape) == layout.local_shape
            if expected.numel() == 0:
                assert all(layout_segments(layout, s) == [] for s in
                           _stride_variants(layout.local_shape))
                continue
            assert tuple(t_offset) == tuple(layout.global_index(d)[0] for d in range(len(shape)))
            for strides in _stride_variants(layout.local_shape):
                got = _segments_index(layout.local_shape, strides,
                                      layout_segments(layout, strides))
                assert torch.equal(got, expected), (shape, mesh, coord, placements, strides)
            checked += 1
    assert checked > 3000


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("shape,mesh,placements", [
    ((7, 5), (4,), (Shard(1),)),
    ((9, 6), (2, 2), (_StridedShard(0, split_factor=2), Shard(0))),  # FSDP x TP, same dim
    ((3, 10, 6), (2, 3), (Shard(2), _StridedShard(1, split_factor=2))),
    ((13,), (2, 2), (Replicate(), _StridedShard(0, split_factor=3))),
    ((2, 3), (4,), (Shard(0),)),  # empty shards
], ids=str)
def test_shards_filled_through_segments_assemble_to_the_full_tensor(backend, shape, mesh,
                                                                     placements):
    """Fill every rank's local tensor (NaN-poisoned) through its segments; scattering the
    locals back by their global indices rebuilds the single fill bit for bit, every global
    element is held by some rank, and replicas are identical."""
    if backend == "triton":
        from fastinit.backends import triton as tb

        def fill(out, segs, params):
            tb.fill(out, segs, params, 21, 5, block=64)
    else:
        def fill(out, segs, params):
            cpu.fill(out, segs, params, 21, 5)
    params = InitSpec.trunc_normal(0.0, 1.0, -1.5, 2.0).kernel_params(torch.bfloat16)
    full = torch.full(shape, math.nan, dtype=torch.bfloat16)
    fill(full, [Segment(0, 0, 0, 0, full.numel(), 1)], params)
    assembled = torch.full((full.numel(),), math.nan, dtype=torch.bfloat16)
    for coord in itertools.product(*(range(k) for k in mesh)):
        layout = shard_layout(shape, mesh, coord, placements)
        local = torch.full(layout.local_shape, math.nan, dtype=torch.bfloat16)
        fill(local, layout_segments(layout, local.stride()), params)
        assert not local.isnan().any()
        idx = _torch_local_index(shape, mesh, coord, placements).reshape(-1)
        seen = ~assembled[idx].isnan()
        assert torch.equal(assembled[idx][seen].view(torch.int16),
                           local.reshape(-1)[seen].view(torch.int16))  # replicas agree
        assembled[idx] = local.reshape(-1)
    assert_bitwise_equal(assembled.view(shape), full)


def test_partial_placement_is_refused():
    with pytest.raises(ValueError, match="Partial"):
        shard_layout((4, 4), (2,), (0,), (Partial(),))


def test_placement_count_must_match_the_mesh():
    with pytest.raises(ValueError):
        shard_layout((4, 4), (2, 2), (0, 0), (Shard(0),))


def _llama70b_weights():
    d, ffn, vocab, kv = 8192, 28672, 128256, 8 * 128
    return {"wq": (d, d), "wk": (kv, d), "wv": (kv, d), "wo": (d, d), "w1": (ffn, d),
            "w3": (ffn, d), "w2": (d, ffn), "norm": (d,), "tok_embeddings": (vocab, d),
            "output": (vocab, d)}


def _fsdp_tp_placements(name):
    """What fully_shard(dp=8) over parallelize_module(tp=8) with torchtitan's plan gives."""
    ss0 = _StridedShard(0, split_factor=8)
    return {"wq": (ss0, Shard(0)), "wk": (ss0, Shard(0)), "wv": (ss0, Shard(0)),
            "w1": (ss0, Shard(0)), "w3": (ss0, Shard(0)), "output": (ss0, Shard(0)),
            "wo": (Shard(0), Shard(1)), "w2": (Shard(0), Shard(1)),
            "tok_embeddings": (ss0, Shard(0)), "norm": (Shard(0), Replicate())}[name]


def test_llama_70b_shards_are_few_segments():
    """At scale the plan stays small: with FSDP over 64 ranks and FSDP x TP 8 x 8, every
    Llama-3-70B weight is at most one segment per rank (rows of a multi-row segment for
    Shard(1)), and the ranks' segments cover each weight exactly once."""
    for name, shape in _llama70b_weights().items():
        for mesh, placements in (((64,), (Shard(0),)), ((8, 8), _fsdp_tp_placements(name))):
            total = 0
            for coord in itertools.product(*(range(k) for k in mesh)):
                layout = shard_layout(shape, mesh, coord, placements)
                segs = layout_segments(layout, contiguous_strides(layout.local_shape))
                assert len(segs) <= 1, (name, mesh, coord, segs)
                n = sum(s.numel for s in segs)
                assert n == math.prod(layout.local_shape)
                if not any(isinstance(p, Replicate) for p in placements):
                    total += n
            if not any(isinstance(p, Replicate) for p in placements):
                assert total == math.prod(shape), name


def test_plain_tensors_are_their_own_local_tensor():
    t = torch.zeros(3, 2)
    assert not distributed.is_dtensor(t) and distributed.local_tensor(t) is t
    assert distributed.unplaced_shard_axes(t) == []
    distributed.refuse_unplaced_shard(t)  # nothing to refuse


def test_global_index_lists_a_ranks_positions_in_local_order():
    # 10 rows over 4 ranks: torch.chunk's rule gives 3, 3, 3, 1
    rows = [shard_layout((10, 2), (4,), (c,), (Shard(0),)).global_index(0) for c in range(4)]
    assert rows == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    # 8 rows, split factor 2 over 2 ranks: chunk c of each half
    strided = shard_layout((8,), (2,), (1,), (_StridedShard(0, split_factor=2),))
    assert strided.global_index(0) == [2, 3, 6, 7] and strided.local_shape == (4,)
