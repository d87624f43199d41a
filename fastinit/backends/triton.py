"""The Triton backend: launchers for the kernels in ``fastinit.kernels.fill``.

The same launchers run the kernels on CPU tensors under ``TRITON_INTERPRET=1``, which is
how the kernels are tested on machines without a GPU.
"""
from __future__ import annotations

import math
import statistics
from fractions import Fraction
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

try:
    import triton
except ImportError as exc:  # pragma: no cover - platforms without Triton
    raise ImportError(
        "fastinit needs Triton to fill GPU tensors (pip install triton); "
        "CPU tensors work without it"
    ) from exc

from fastinit.kernels import contract as C
import triton.language as tl

from fastinit.kernels.fill import _fill_kernel, _grouped_fill_kernel
from fastinit.layout import Segment
from fastinit.spec import KernelParams, float64_bits

#: Elements per program and warps per program.
DEFAULT_BLOCK = 4096
DEFAULT_NUM_WARPS = 8
#: The most programs a launch may have along grid axis 1 (CUDA's limit).
MAX_GRID_ROWS = 65535

_TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64, torch.float16: tl.float16,
              torch.bfloat16: tl.bfloat16}


def _interpreting() -> bool:
    """Whether the kernels run under the Triton interpreter (``TRITON_INTERPRET=1``)."""
    return not isinstance(_fill_kernel, triton.runtime.JITFunction)


def trunc_regions(params: KernelParams) -> int:
    """How many inverse-CDF regions (1-4) a truncated normal with these parameters can
    reach: w = -log(4 p q) is largest at the extreme uniforms; computed in float64 with
    the CPU backend's margin, so that every element's region is evaluated."""
    if params.dist != C.TRUNC_NORMAL:
        return 1
    u = C.UNIFORM_SCALE
    w_max = 0.0
    for uu in (u, 1.0 - u):
        p = params.pa + uu * params.dd
        q = params.qb + (1.0 - uu) * params.dd
        w_max = max(w_max, -math.log(max(4.0 * p * q, 1e-300)))
    w_max = w_max * 1.001 + 1e-3
    return 1 + sum(w_max >= t for t in (C.NDTRI_W1, C.NDTRI_W2, C.NDTRI_W3))


def needs_clamp(params: KernelParams, dtype: torch.dtype) -> bool:
    """Whether clamping to [lo, hi] can change a value of this fill (else it is skipped).

    The value is ``fma(v, scale, shift)`` rounded (monotonically) to the dtype, and ``lo``
    and ``hi`` are values of the dtype: if the exact ``v * scale + shift`` lies in
    [lo, hi] for every variate ``v`` the fill can draw, no rounded value lies outside.
    Uniform: v in [2**-24, 1 - 2**-24]. Truncated normal: v within the inverse CDF of the
    extreme p and q (float64 ``NormalDist``), widened by a margin far above the float32
    errors of the contract's inversion.
    """
    if not params.clamp:
        return False
    if params.dist == C.UNIFORM:
        v_lo, v_hi = Fraction(C.UNIFORM_SCALE), 1 - Fraction(C.UNIFORM_SCALE)
    elif params.dist == C.TRUNC_NORMAL:
        u = C.UNIFORM_SCALE * (1 - 1e-3)
        nd = statistics.NormalDist()
        try:
            lo_v = nd.inv_cdf(params.pa + u * params.dd)
            hi_v = -nd.inv_cdf(params.qb + u * params.dd)
        except statistics.StatisticsError:
            return True
        v_lo = Fraction(lo_v - abs(lo_v) * 1e-4 - 1e-6)
        v_hi = Fraction(hi_v + abs(hi_v) * 1e-4 + 1e-6)
    else:
        return True
    cast = float if dtype == torch.float64 else np.float32  # the kernel's precision
    scale, shift = (Fraction(float(cast(x))) for x in (params.scale, params.shift))
    if scale < 0:  # (never: b >= a and std > 0) the bounds would swap
        return True
    low_ok = math.isinf(params.lo) and params.lo < 0 or Fraction(params.lo) <= v_lo * scale + shift
    high_ok = math.isinf(params.hi) and params.hi > 0 or v_hi * scale + shift <= Fraction(params.hi)
    return not (low_ok and high_ok)


def fill(out: torch.Tensor, segments: Sequence[Segment], params: KernelParams, key: int,
         stream: int, draw_round: int = 0, *, block: int | None = None,
         num_warps: int | None = None) -> None:
    """Launch one fill kernel per segment (normally exactly one) on a (blocks per row,
    rows) grid; segments of more than 65535 rows take several launches."""
    block = block or DEFAULT_BLOCK
    num_warps = num_warps or DEFAULT_NUM_WARPS
    if block % 4 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 4, got {block}")
    k0, k1 = C.key_words(key)
    c2, c3 = C.stream_words(stream, draw_round)
    floats = _float_bits(params)
    regions = trunc_regions(params)
    clamp = int(needs_clamp(params, out.dtype))
    native = not _interpreting()
    for s in segments:
        per_row = triton.cdiv(s.row_len + 3, block)
        aligned = _aligned(out.data_ptr(), s)
        for r0 in range(0, s.n_rows, MAX_GRID_ROWS):
            rows = min(MAX_GRID_ROWS, s.n_rows - r0)
            _fill_kernel[(per_row, rows)](
                out, s.m_base + r0 * s.m_row_stride, s.m_row_stride,
                s.g_base + r0 * s.g_row_stride, s.g_row_stride, s.row_len,
                k0, k1, c2, c3, *floats, regions,
                DIST=params.dist, CLAMP=clamp, BLOCK=block, ALIGNED=aligned,
                NATIVE_BF16=native, num_warps=num_warps, enable_fp_fusion=False)


def _aligned(address: int, seg: Segment) -> bool:
    """Whether whole blocks of ``seg`` start on 16-byte boundaries (see ``fill_block``)."""
    return address % 16 == 0 and all(
        x % 8 == 0 for x in (seg.m_base, seg.m_row_stride, seg.g_base, seg.g_row_stride))


def _float_bits(params: KernelParams) -> list[int]:
    """The kernels' float arguments, as the int64 bit patterns of their float64 values."""
    return [float64_bits(x) for x in (params.shift, params.scale, params.pa, params.qb,
                                      params.dd, params.xa, params.lo, params.hi)]


def _i64(x: int) -> int:
    """An unsigned 64-bit value as the signed int64 with the same bits."""
    return x - (1 << 64) if x >= 1 << 63 else x


def _table_row(out: torch.Tensor, seg: Segment, params: KernelParams, key: int, stream: int,
               draw_round: int, first_block: int, block: int) -> list[int]:
    """One row of the grouped kernel's table (see the field list in kernels/fill.py)."""
    c2, c3 = C.stream_words(stream, draw_round)
    packed = params.dist | (needs_clamp(params, out.dtype) << 8) | (trunc_regions(params) << 16)
    return [out.data_ptr() + seg.m_base * out.element_size(), seg.m_row_stride, seg.g_base,
            seg.g_row_stride, seg.row_len, triton.cdiv(seg.row_len + 3, block), first_block,
            packed, _i64(key), _i64(c2 | (c3 << 32)), *_float_bits(params)]


def fill_grouped(entries, *, block: int | None = None, num_warps: int | None = None) -> None:
    """Fill many ``(out, segments, params, key, stream, draw_round)`` entries: one kernel
    launch per output dtype, no host synchronization."""
    block = block or DEFAULT_BLOCK
    num_warps = num_warps or DEFAULT_NUM_WARPS
    by_dtype: dict[torch.dtype, list] = {}
    for e in entries:
        by_dtype.setdefault(e[0].dtype, []).append(e)
    for dtype, group in by_dtype.items():
        rows, counts = [], []
        total = 0
        for out, segments, params, key, stream, draw_round in group:
            for seg in segments:
                n = seg.n_rows * triton.cdiv(seg.row_len + 3, block)
                rows.append(_table_row(out, seg, params, key, stream, draw_round, total, block))
                counts.append(n)
                total += n
        if total == 0:
            continue
        aligned = all(_aligned(e[0].data_ptr(), seg) for e in group for seg in e[1])
        device = group[0][0].device
        table, repeats = (torch.tensor(x, dtype=torch.int64, device="cpu")
                          for x in (rows, counts))
        if device.type == "cuda":
            table, repeats = (x.pin_memory().to(device, non_blocking=True) for x in (table, repeats))
        block_entry = torch.repeat_interleave(
            torch.arange(len(rows), dtype=torch.int32, device=device), repeats, output_size=total)
        _grouped_fill_kernel[(total,)](table, block_entry, OUT_DTYPE=_TL_DTYPES[dtype],
                                       BLOCK=block, ALIGNED=aligned,
                                       NATIVE_BF16=not _interpreting(), num_warps=num_warps,
                                       enable_fp_fusion=False)


# --- what the launchers compile (for the SASS report and the compile checks) --------------------

_SINGLE_ARGS = {"m_base": "i64", "m_row_stride": "i64", "g_base": "i64", "g_row_stride": "i64",
                "row_len": "i64", "k0": "i64", "k1": "i64", "c2": "i64", "c3": "i64",
                "shift_bits": "i64", "scale_bits": "i64", "pa_bits": "i64", "qb_bits": "i64",
                "dd_bits": "i64", "xa_bits": "i64", "lo_bits": "i64", "hi_bits": "i64",
                "regions": "i32"}


class LaunchVariant(NamedTuple):
    """One compiled form of a fill kernel, as a launcher requests it: the kernel, its
    argument types, its compile-time constants and its launch options."""

    kernel_name: str  # "_fill_kernel" | "_grouped_fill_kernel"
    signature: dict[str, str]
    constexprs: dict[str, Any]
    block: int
    num_warps: int

    @property
    def kernel(self):
        return _fill_kernel if self.kernel_name == "_fill_kernel" else _grouped_fill_kernel


def launch_variant(params: KernelParams, dtype: torch.dtype, *, grouped: bool,
                   aligned: bool = True) -> LaunchVariant:
    """The kernel variant the launcher compiles for a GPU fill of ``dtype`` with ``params``
    (a 16-byte aligned, whole tensor when ``aligned``)."""
    if grouped:
        name, sig = "_grouped_fill_kernel", {"table_ptr": "*i64", "block_entry_ptr": "*i32"}
        constexprs = {"OUT_DTYPE": _TL_DTYPES[dtype]}
    else:
        name, sig = "_fill_kernel", {"out_ptr": "*" + _TL_DTYPES[dtype].name, **_SINGLE_ARGS}
        constexprs = {"DIST": params.dist, "CLAMP": int(needs_clamp(params, dtype))}
    constexprs.update(BLOCK=DEFAULT_BLOCK, ALIGNED=aligned, NATIVE_BF16=True)
    sig.update(dict.fromkeys(constexprs, "constexpr"))
    return LaunchVariant(name, sig, constexprs, DEFAULT_BLOCK, DEFAULT_NUM_WARPS)


def all_variants() -> list[LaunchVariant]:
    """Every variant the launchers can compile for a GPU (distribution x clamp x alignment
    x dtype for the single kernel; alignment x dtype for the grouped one)."""
    out = []
    for dtype in _TL_DTYPES:
        for aligned in (True, False):
            for dist, clamps in ((C.CONSTANT, (0,)), (C.NORMAL, (0,)), (C.UNIFORM, (0, 1)),
                                 (C.TRUNC_NORMAL, (0, 1))):
                for clamp in clamps:
                    v = launch_variant(KernelParams(dist, 0.0, 1.0), dtype, grouped=False,
                                       aligned=aligned)
                    out.append(v._replace(constexprs={**v.constexprs, "CLAMP": clamp}))
            out.append(launch_variant(KernelParams(C.UNIFORM, 0.0, 1.0), dtype, grouped=True,
                                      aligned=aligned))
    return out


def compile_variant(variant: LaunchVariant, arch: int = 90):
    """Compile ``variant`` ahead of time for ``sm_<arch>`` (no GPU needed; not under the
    Triton interpreter). Returns Triton's compiled kernel (``.asm["cubin"]``, ``["ptx"]``)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    pointers = [k for k, v in variant.signature.items() if v.startswith("*")]
    # torch allocations are 16-byte aligned: the launcher's pointers are specialized so
    attrs = {(list(variant.signature).index(k),): [["tt.divisibility", 16]] for k in pointers}
    src = ASTSource(fn=variant.kernel, signature=variant.signature,
                    constexprs=variant.constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": variant.num_warps, "enable_fp_fusion": False})
