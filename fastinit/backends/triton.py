"""The Triton backend: launchers for the kernels in ``fastinit.kernels.fill``.

The same launchers run the kernels on CPU tensors under ``TRITON_INTERPRET=1``, which is
how the kernels are tested on machines without a GPU.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

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

#: Elements per program and warps per program (tuned per device in the GPU issue).
DEFAULT_BLOCK = 4096
DEFAULT_NUM_WARPS = 8

_TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64, torch.float16: tl.float16,
              torch.bfloat16: tl.bfloat16}


def fill(out: torch.Tensor, segments: Sequence[Segment], params: KernelParams, key: int,
         stream: int, draw_round: int = 0, *, block: int | None = None,
         num_warps: int | None = None) -> None:
    """Launch one fill kernel per segment (normally exactly one)."""
    block = block or DEFAULT_BLOCK
    num_warps = num_warps or DEFAULT_NUM_WARPS
    if block % 4 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 4, got {block}")
    k0, k1 = C.key_words(key)
    c2, c3 = C.stream_words(stream, draw_round)
    floats = tuple(float64_bits(x) for x in (params.shift, params.scale, params.pa, params.qb,
                                              params.dd, params.xa, params.lo, params.hi))
    for s in segments:
        per_row = triton.cdiv(s.row_len + 3, block)
        grid = (s.n_rows * per_row,)
        _fill_kernel[grid](out, s.m_base, s.m_row_stride, s.g_base, s.g_row_stride, s.row_len,
                           per_row, k0, k1, c2, c3, *floats,
                           DIST=params.dist, CLAMP=params.clamp, BLOCK=block,
                           ALIGNED=_aligned(out.data_ptr(), s), num_warps=num_warps,
                           enable_fp_fusion=False)


def _aligned(address: int, seg: Segment) -> bool:
    """Whether whole blocks of ``seg`` start on 16-byte boundaries (see ``fill_block``)."""
    return address % 16 == 0 and all(
        x % 8 == 0 for x in (seg.m_base, seg.m_row_stride, seg.g_base, seg.g_row_stride))


def _i64(x: int) -> int:
    """An unsigned 64-bit value as the signed int64 with the same bits."""
    return x - (1 << 64) if x >= 1 << 63 else x


def _table_row(out: torch.Tensor, seg: Segment, params: KernelParams, key: int, stream: int,
               draw_round: int, first_block: int, block: int) -> list[int]:
    """One row of the grouped kernel's table (see the field list in kernels/fill.py)."""
    c2, c3 = C.stream_words(stream, draw_round)
    return [out.data_ptr() + seg.m_base * out.element_size(), seg.m_row_stride, seg.g_base,
            seg.g_row_stride, seg.row_len, triton.cdiv(seg.row_len + 3, block), first_block,
            params.dist, _i64(key), _i64(c2 | (c3 << 32))] + [
        float64_bits(x) for x in (params.shift, params.scale, params.pa, params.qb, params.dd,
                                  params.xa, params.lo, params.hi)]


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
        aligned = True
        for out, segments, params, key, stream, draw_round in group:
            for seg in segments:
                n = seg.n_rows * triton.cdiv(seg.row_len + 3, block)
                rows.append(_table_row(out, seg, params, key, stream, draw_round, total, block))
                counts.append(n)
                total += n
                aligned = aligned and _aligned(out.data_ptr(), seg)
        if total == 0:
            continue
        device = group[0][0].device
        table = torch.tensor(rows, dtype=torch.int64)
        repeats = torch.tensor(counts, dtype=torch.int64)
        if device.type == "cuda":
            table = table.pin_memory().to(device, non_blocking=True)
            repeats = repeats.pin_memory().to(device, non_blocking=True)
        block_entry = torch.repeat_interleave(
            torch.arange(len(rows), dtype=torch.int32, device=device), repeats, output_size=total)
        _grouped_fill_kernel[(total,)](table, block_entry, OUT_DTYPE=_TL_DTYPES[dtype],
                                       BLOCK=block, ALIGNED=aligned, num_warps=num_warps,
                                       enable_fp_fusion=False)


# --- what the launchers compile (for the SASS report and the compile checks) --------------------

_TL_NAMES = {torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16",
             torch.bfloat16: "bf16"}
_SINGLE_INTS = ("m_base", "m_row_stride", "g_base", "g_row_stride", "row_len", "blocks_per_row",
                "k0", "k1", "c2", "c3", "shift_bits", "scale_bits", "pa_bits", "qb_bits",
                "dd_bits", "xa_bits", "lo_bits", "hi_bits")


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
    """The kernel variant the launcher compiles for a fill of ``dtype`` with ``params``
    (a 16-byte aligned, whole tensor when ``aligned``)."""
    if grouped:
        sig = {"table_ptr": "*i64", "block_entry_ptr": "*i32", "OUT_DTYPE": "constexpr",
               "BLOCK": "constexpr", "ALIGNED": "constexpr"}
        return LaunchVariant("_grouped_fill_kernel", sig,
                             {"OUT_DTYPE": _TL_DTYPES[dtype], "BLOCK": DEFAULT_BLOCK,
                              "ALIGNED": aligned}, DEFAULT_BLOCK, DEFAULT_NUM_WARPS)
    sig = {"out_ptr": "*" + _TL_NAMES[dtype], **{k: "i64" for k in _SINGLE_INTS},
           "DIST": "constexpr", "CLAMP": "constexpr", "BLOCK": "constexpr",
           "ALIGNED": "constexpr"}
    return LaunchVariant("_fill_kernel", sig,
                         {"DIST": params.dist, "CLAMP": params.clamp, "BLOCK": DEFAULT_BLOCK,
                          "ALIGNED": aligned}, DEFAULT_BLOCK, DEFAULT_NUM_WARPS)


def all_variants() -> list[LaunchVariant]:
    """Every variant the launchers can compile (distribution x clamp x alignment x dtype)."""
    out = []
    for dtype in _TL_DTYPES:
        for aligned in (True, False):
            for dist in (C.CONSTANT, C.UNIFORM, C.NORMAL, C.TRUNC_NORMAL):
                for clamp in (False, True):
                    out.append(launch_variant(KernelParams(dist, 0.0, 1.0, clamp=clamp), dtype,
                                              grouped=False, aligned=aligned))
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
