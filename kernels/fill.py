"""Fill kernels: one segment (``_fill_kernel``) or many tensors at once (``_grouped_fill_kernel``).

A fill writes the values of global elements ``[g_start, g_start + length)`` of a logical
tensor to ``length`` consecutive memory locations. A *segment* is ``n_rows`` such runs,
row ``r`` starting at global index ``g_base + r * g_row_stride`` and at memory offset
``m_base + r * m_row_stride``: one segment describes a contiguous tensor, a slice, or the
local shard of a sharded tensor. Launchers live in ``fastinit.backends.triton``.

Each program fills one block of one row. Its block is aligned to element groups of
four, so one Philox call yields the four values of a group and no word is wasted.
"""
from __future__ import annotations

import triton
import triton.language as tl

from . import contract as C
from .distributions import box_muller, to_output, trunc_normal_standard, uniform_open
from .philox import group_words

CONSTANT = tl.constexpr(C.CONSTANT)
UNIFORM = tl.constexpr(C.UNIFORM)
NORMAL = tl.constexpr(C.NORMAL)
TRUNC_NORMAL = tl.constexpr(C.TRUNC_NORMAL)


@triton.jit
def _interleave4(a, b, c, d):
    """[G] x 4 -> [4G] with element 4g + j taken from the j-th argument."""
    x = tl.join(tl.join(a, c), tl.join(b, d))
    return tl.reshape(x, [4 * a.shape[0]])


@triton.jit
def _bits_to_f64(bits):
    return bits.to(tl.int64).to(tl.float64, bitcast=True)


@triton.jit
def fill_block(out_ptr, m_start, g_start, length, blk,
               k0, k1, c2, c3,
               shift, scale, pa, qb, dd, xa, lo, hi,
               DIST: tl.constexpr, CLAMP: tl.constexpr, BLOCK: tl.constexpr,
               ALIGNED: tl.constexpr):
    """Fill block ``blk`` of the run of global elements ``[g_start, g_start + length)``.

    The run is stored at ``out_ptr + m_start``. Float parameters are float64 scalars;
    key and counter words are uint32 scalars. ``ALIGNED`` promises that ``m_start`` and
    ``g_start`` are multiples of 8 (and ``out_ptr`` 16-byte aligned), so that the stores
    of whole blocks can be 16-byte vector stores.
    """
    G: tl.constexpr = BLOCK // 4
    first = g_start // 4 + blk * G  # first element group of the block
    base = m_start + first * 4 - g_start  # memory offset of the block's first element
    if ALIGNED:
        base = tl.multiple_of(base, 8)
    offs = first * 4 - g_start + tl.arange(0, BLOCK)
    if DIST == CONSTANT:
        v = tl.full([BLOCK], -0.0, dtype=tl.float32)  # fma(-0, 0, c) == c, -0 included
    else:
        w0, w1, w2, w3 = group_words(first + tl.arange(0, G), k0, k1, c2, c3)
        if DIST == NORMAL:
            z0, z1 = box_muller(w0, w1)
            z2, z3 = box_muller(w2, w3)
            v = _interleave4(z0, z1, z2, z3)
        else:
            words = _interleave4(w0, w1, w2, w3)
            if DIST == UNIFORM:
                v = uniform_open(words)
            else:
                v = trunc_normal_standard(words, pa.to(tl.float32), qb.to(tl.float32),
                                          dd.to(tl.float32), xa.to(tl.float32))
    y = to_output(v, shift, scale, lo, hi, out_ptr.dtype.element_ty, CLAMP)
    if (first * 4 >= g_start) & (first * 4 + BLOCK <= g_start + length):
        tl.store(out_ptr + base + tl.arange(0, BLOCK), y)  # a whole block: no mask
    else:
        tl.store(out_ptr + base + tl.arange(0, BLOCK), y, mask=(offs >= 0) & (offs < length))


@triton.jit(do_not_specialize=["g_base", "g_row_stride", "m_base", "m_row_stride", "row_len",
                               "blocks_per_row", "k0", "k1", "c2", "c3", "shift_bits",
                               "scale_bits", "pa_bits", "qb_bits", "dd_bits", "xa_bits", "lo_bits",
                               "hi_bits"])
def _fill_kernel(out_ptr, m_base, m_row_stride, g_base, g_row_stride, row_len, blocks_per_row,
                 k0, k1, c2, c3,
                 shift_bits, scale_bits, pa_bits, qb_bits, dd_bits, xa_bits, lo_bits, hi_bits,
                 DIST: tl.constexpr, CLAMP: tl.constexpr, BLOCK: tl.constexpr,
                 ALIGNED: tl.constexpr):
    """One segment, one distribution. Float parameters arrive as float64 bit patterns."""
    pid = tl.program_id(0).to(tl.int64)
    row = pid // blocks_per_row
    blk = pid - row * blocks_per_row
    fill_block(out_ptr, m_base + row * m_row_stride, g_base + row * g_row_stride, row_len, blk,
               k0.to(tl.uint32), k1.to(tl.uint32), c2.to(tl.uint32), c3.to(tl.uint32),
               _bits_to_f64(shift_bits), _bits_to_f64(scale_bits), _bits_to_f64(pa_bits),
               _bits_to_f64(qb_bits), _bits_to_f64(dd_bits), _bits_to_f64(xa_bits),
               _bits_to_f64(lo_bits),
               _bits_to_f64(hi_bits),
               DIST, CLAMP, BLOCK, ALIGNED)


# --- grouped fill: many tensors (of one dtype) in one launch ----------------------------------
# One int64 row per segment; float parameters are float64 bit patterns.
F_ADDR = tl.constexpr(0)  # address of the segment's first element
F_M_ROW_STRIDE = tl.constexpr(1)
F_G_BASE = tl.constexpr(2)
F_G_ROW_STRIDE = tl.constexpr(3)
F_ROW_LEN = tl.constexpr(4)
F_BLOCKS_PER_ROW = tl.constexpr(5)
F_FIRST_BLOCK = tl.constexpr(6)  # index of the segment's first program
F_DIST = tl.constexpr(7)
F_KEY = tl.constexpr(8)  # 64-bit seed
F_STREAM = tl.constexpr(9)  # c2 | c3 << 32
F_SHIFT = tl.constexpr(10)  # then scale, pa, qb, dd, xa, lo, hi
N_FIELDS = tl.constexpr(18)


@triton.jit
def _grouped_fill_kernel(table_ptr, block_entry_ptr, OUT_DTYPE: tl.constexpr,
                         BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """Program ``pid`` fills one block of segment ``block_entry[pid]`` of the table."""
    pid = tl.program_id(0).to(tl.int64)
    row_ptr = table_ptr + tl.load(block_entry_ptr + pid).to(tl.int64) * N_FIELDS
    out_ptr = tl.load(row_ptr + F_ADDR).to(tl.pointer_type(OUT_DTYPE))
    if ALIGNED:  # the launcher checked every address: 16-byte aligned
        out_ptr = tl.multiple_of(out_ptr, 16)
    blocks_per_row = tl.load(row_ptr + F_BLOCKS_PER_ROW)
    local = pid - tl.load(row_ptr + F_FIRST_BLOCK)
    row = local // blocks_per_row
    blk = local - row * blocks_per_row
    m_start = row * tl.load(row_ptr + F_M_ROW_STRIDE)
    g_start = tl.load(row_ptr + F_G_BASE) + row * tl.load(row_ptr + F_G_ROW_STRIDE)
    row_len = tl.load(row_ptr + F_ROW_LEN)
    key = tl.load(row_ptr + F_KEY)
    words = tl.load(row_ptr + F_STREAM)
    k0 = (key & 0xFFFFFFFF).to(tl.uint32)
    k1 = ((key >> 32) & 0xFFFFFFFF).to(tl.uint32)
    c2 = (words & 0xFFFFFFFF).to(tl.uint32)
    c3 = ((words >> 32) & 0xFFFFFFFF).to(tl.uint32)
    shift = _bits_to_f64(tl.load(row_ptr + F_SHIFT))
    scale = _bits_to_f64(tl.load(row_ptr + F_SHIFT + 1))
    pa = _bits_to_f64(tl.load(row_ptr + F_SHIFT + 2))
    qb = _bits_to_f64(tl.load(row_ptr + F_SHIFT + 3))
    dd = _bits_to_f64(tl.load(row_ptr + F_SHIFT + 4))
    xa = _bits_to_f64(tl.load(row_ptr + F_SHIFT + 5))
    lo = _bits_to_f64(tl.load(row_ptr + F_SHIFT + 6))
    hi = _bits_to_f64(tl.load(row_ptr + F_SHIFT + 7))
    dist = tl.load(row_ptr + F_DIST)
    # The branch is uniform over the program. Normal fills clamp to (-inf, inf), which
    # changes no value, so every distribution can take the clamping path.
    if dist == UNIFORM:
        fill_block(out_ptr, m_start, g_start, row_len, blk, k0, k1, c2, c3, shift, scale, pa, qb,
                   dd, xa, lo, hi, UNIFORM, True, BLOCK, ALIGNED)
    elif dist == NORMAL:
        fill_block(out_ptr, m_start, g_start, row_len, blk, k0, k1, c2, c3, shift, scale, pa, qb,
                   dd, xa, lo, hi, NORMAL, True, BLOCK, ALIGNED)
    elif dist == TRUNC_NORMAL:
        fill_block(out_ptr, m_start, g_start, row_len, blk, k0, k1, c2, c3, shift, scale, pa, qb,
                   dd, xa, lo, hi, TRUNC_NORMAL, True, BLOCK, ALIGNED)
    else:
        fill_block(out_ptr, m_start, g_start, row_len, blk, k0, k1, c2, c3, shift, scale, pa, qb,
                   dd, xa, lo, hi, CONSTANT, True, BLOCK, ALIGNED)
