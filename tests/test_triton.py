"""The Triton backend's launcher (``fastinit/backends/triton.py``): its clamp decision
against the extreme values a fill can draw (the kernels skip the clamp where the launcher
proves it cannot change a value), its region count against the CPU backend's, and the
split of launches past the grid's row limit (on CPU tensors under the interpreter).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastinit.backends import cpu
from fastinit.backends import triton as triton_backend
from fastinit.kernels import contract as C
from fastinit.spec import InitSpec

F = np.float32

_TRUNC = [(0.0, 1.0, -2.0, 2.0), (0.0, 0.02, -2.0, 2.0), (0.0, 1.0, -6.0, 6.0),
          (0.0, 1.0, 4.0, 5.0), (1.0, 2.0, -20.0, -4.0), (0.0, 1.0, -0.01, 0.01),
          (0.5, 0.1, 0.0, 1.0), (0.0, 1.0, 2.5, 11.0), (0.0, 0.02, -0.04, 0.04)]
_UNIFORM = [(-0.1, 0.1), (-1.0, 1.0), (0.0, 1.0), (1.0, 1.0 + 2**-10), (-3.0, 1e-8),
            (-1 / 64, 1 / 64), (0.3, 0.7)]
_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def _extremes(params, dtype) -> tuple[float, float]:
    """Unclamped extreme outputs of a fill: the variates of the extreme words (0 and
    2**32 - 1: u = 2**-24 and 1 - 2**-24) and of 4096 words around the centre, through
    the contract's fma and rounding (the CPU backend's own functions)."""
    words = np.concatenate([np.array([0, 0xFFFFFFFF], dtype=np.uint32),
                            np.arange(2**31 - 2048, 2**31 + 2048, dtype=np.uint32)])
    if params.dist == C.UNIFORM:
        v = np.array([cpu.uniform_open(np.uint32(w)) for w in words], dtype=np.float32)
    else:
        regions = cpu.trunc_regions(F(params.pa), F(params.qb), F(params.dd))
        v = np.array([cpu.trunc_normal_standard(np.uint32(w), F(params.pa), F(params.qb),
                                                F(params.dd), F(params.xa), regions)
                      for w in words], dtype=np.float32)
    if dtype == torch.float64:
        y = torch.from_numpy(v.astype(np.float64)) * params.scale + params.shift  # exact enough
    else:
        y = torch.from_numpy(v).double() * float(F(params.scale)) + float(F(params.shift))
        y = y.to(dtype).double()  # the rounding to the output dtype, round to nearest even
    return float(y.min()), float(y.max())


@pytest.mark.parametrize("dtype", _DTYPES, ids=str)
def test_skipped_clamps_change_nothing(dtype):
    """Where the launcher skips the clamp, the extreme values a fill can write already lie
    in [lo, hi]; and the clamp is kept in the cases known to need it."""
    kept = 0
    specs = [InitSpec.trunc_normal(*args) for args in _TRUNC]
    specs += [InitSpec.uniform(*args) for args in _UNIFORM]
    for args, spec in zip([*_TRUNC, *_UNIFORM], specs):
        params = spec.kernel_params(dtype)
        if triton_backend.needs_clamp(params, dtype):
            kept += 1
            continue
        lo, hi = _extremes(params, dtype)
        assert params.lo <= lo and hi <= params.hi, (args, lo, hi, params.lo, params.hi)
    # +-2 sigma and a far tail reach their bounds; bfloat16 uniforms round onto b
    assert triton_backend.needs_clamp(InitSpec.trunc_normal(0, 1, -2, 2).kernel_params(dtype),
                                      dtype)
    assert triton_backend.needs_clamp(InitSpec.trunc_normal(0, 1, 4, 5).kernel_params(dtype),
                                      dtype)
    assert kept >= 2


def test_bfloat16_uniform_needs_its_clamp():
    """Without the clamp, a bfloat16 uniform(-0.1, 0.1) would write b's rounding (> b)."""
    params = InitSpec.uniform(-0.1, 0.1).kernel_params(torch.bfloat16)
    assert triton_backend.needs_clamp(params, torch.bfloat16)
    _, hi = _extremes(params, torch.bfloat16)
    assert hi > params.hi


@pytest.mark.parametrize("args", _TRUNC)
def test_trunc_regions_bound_the_cpu_backend(args):
    """The launcher's region count is never below the CPU backend's (which bounds every
    element's region by computing w at the extreme uniforms in float32)."""
    params = InitSpec.trunc_normal(*args).kernel_params(torch.float32)
    ref = cpu.trunc_regions(F(params.pa), F(params.qb), F(params.dd))
    assert triton_backend.trunc_regions(params) >= ref


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU tensors through the interpreter; "
                    "tests/test_gpu.py checks the split on a device")
def test_rows_past_one_launch_are_split(monkeypatch):
    """Segments with more rows than a launch's grid axis holds take several launches,
    each at its rows' offsets (the limit lowered to 2 rows here, under the interpreter)."""
    import math as _m

    from fastinit.layout import Segment
    from tests.common import assert_bitwise_equal

    monkeypatch.setattr(triton_backend, "MAX_GRID_ROWS", 2)
    seg = [Segment(1, 9, 2**32 + 3, 13, 5, 7)]
    params = InitSpec.trunc_normal(0.0, 1.0, -2.0, 2.0).kernel_params(torch.float32)
    got = torch.full((70,), _m.nan)
    triton_backend.fill(got, seg, params, 3, 4, block=64)
    ref = torch.full((70,), _m.nan)
    cpu.fill(ref, seg, params, 3, 4)
    assert_bitwise_equal(got, ref)
