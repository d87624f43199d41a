"""Fill kernels: one segment (``_fill_kernel``) or many tensors at once (``_grouped_fill_kernel``).

A fill writes the values of global elements ``[g_start, g_start + length)`` of a logical
tensor to ``length`` consecutive memory locations. A *segment* is ``n_rows`` such runs,
row ``r`` starting at global index ``g_base + r * g_row_stride`` and at memory offset
``m_base + r * m_row_stride``: one segment describes a contiguous tensor, a slice, or the
local shard of a sharded tensor. Launchers live in ``fastinit.backends.triton``.

Each program fills one block of one row. Its block is aligned to element groups of
four, so one Philox call yields the four values of a group and no word is wasted.
No program divides: the single-segment kernel runs on a 2-D grid (block, row), and a
program of the grouped kernel finds its row by a division only past a segment's first row.
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
def uniform_variates(w0, w1, w2, w3):
    """The block's uniform variates, element 4g + j from word j of group g (computed per
    word and interleaved after: interleaving the words costs a shared-memory shuffle)."""
    return _interleave4(uniform_open(w0), uniform_open(w1), uniform_open(w2), uniform_open(w3))


@triton.jit
def normal_variates(w0, w1, w2, w3):
    """The block's normal variates: Box-Muller on (w0, w1) and on (w2, w3)."""
    z0, z1 = box_muller(w0, w1)
    z2, z3 = box_muller(w2, w3)
    return _interleave4(z0, z1, z2, z3)


@triton.jit
def trunc_normal_variates(w0, w1, w2, w3, pa, qb, dd, xa, regions):
    """The block's truncated-normal variates (float64 parameters, see the contract)."""
    pa = pa.to(tl.float32)
    qb = qb.to(tl.float32)
    dd = dd.to(tl.float32)
    xa = xa.to(tl.float32)
    v0, v1, v2, v3 = trunc_normal_standard(w0, w1, w2, w3, pa, qb, dd, xa, regions)
    return _interleave4(v0, v1, v2, v3)


@triton.jit
def fill_block(out_ptr, m_start, g_start, length, blk,
               k0, k1, c2, c3,
               shift, scale, pa, qb, dd, xa, lo, hi, regions, clamp,
               DIST: tl.constexpr, CLAMP: tl.constexpr, BLOCK: tl.constexpr,
               ALIGNED: tl.constexpr, NATIVE_BF16: tl.constexpr):
    """Fill block ``blk`` of the run of global elements ``[g_start, g_start + length)``.

    The run is stored at ``out_ptr + m_start``. Float parameters are float64 scalars;
    key and counter words are uint32 scalars; ``regions`` bounds the inverse-CDF regions
    of a truncated normal; ``CLAMP`` / ``clamp`` as in ``to_output``. ``ALIGNED``
    promises that ``m_start`` and ``g_start`` are multiples of 8 (and ``out_ptr`` 16-byte
    aligned), so that the stores of whole blocks can be 16-byte vector stores.
    """
    G: tl.constexpr = BLOCK // 4
    first = g_start // 4 + blk * G  # first element group of the block
    base = m_start + first * 4 - g_start  # memory offset of the block's first element
    if ALIGNED:
        # Four consecutive elements per thread come out of a group: 16 bytes for 32-bit
        # outputs; for 16-bit ones 8-byte stores (a warp still writes 256 contiguous
        # bytes), since 16-byte ones would need a shuffle through shared memory.
        if out_ptr.dtype.element_ty.primitive_bitwidth == 16:
            base = tl.multiple_of(base, 4)
        else:
            base = tl.multiple_of(base, 8)
    if DIST == CONSTANT:
        v = tl.full([BLOCK], -0.0, dtype=tl.float32)  # fma(-0, 0, c) == c, -0 included
    else:
        w0, w1, w2, w3 = group_words(first + tl.arange(0, G), k0, k1, c2, c3)
        if DIST == NORMAL:
            v = normal_variates(w0, w1, w2, w3)
        elif DIST == UNIFORM:
            v = uniform_variates(w0, w1, w2, w3)
        else:
            v = trunc_normal_variates(w0, w1, w2, w3, pa, qb, dd, xa, regions)
    y = to_output(v, shift, scale, lo, hi, out_ptr.dtype.element_ty, CLAMP, clamp, NATIVE_BF16)
    ptrs = out_ptr + base + tl.arange(0, BLOCK)
    if (first * 4 >= g_start) & (first * 4 + BLOCK <= g_start + length):
        store_whole(ptrs, y)
    else:
        store_masked(ptrs, y, first * 4 - g_start + tl.arange(0, BLOCK), length)


@triton.jit
def store_whole(ptrs, y):
    """A whole block: no mask (16-byte vector stores when aligned)."""
    tl.store(ptrs, y)


@triton.jit
def store_masked(ptrs, y, offs, length):
    """The partial first or last block of a run: only offsets in [0, length)."""
    tl.store(ptrs, y, mask=(offs >= 0) & (offs < length))


@triton.jit(do_not_specialize=["m_base", "m_row_stride", "g_base", "g_row_stride", "row_len",
                               "k0", "k1", "c2", "c3", "shift_bits", "scale_bits", "pa_bits",
                               "qb_bits", "dd_bits", "xa_bits", "lo_bits", "hi_bits",
                               "regions"])
def _fill_kernel(out_ptr, m_base: tl.int64, m_row_stride: tl.int64, g_base: tl.int64,
                 g_row_stride: tl.int64, row_len: tl.int64,
                 k0: tl.int64, k1: tl.int64, c2: tl.int64, c3: tl.int64,
                 shift_bits: tl.int64, scale_bits: tl.int64, pa_bits: tl.int64,
                 qb_bits: tl.int64, dd_bits: tl.int64, xa_bits: tl.int64, lo_bits: tl.int64,
                 hi_bits: tl.int64, regions: tl.int32,
                 DIST: tl.constexpr, CLAMP: tl.constexpr, BLOCK: tl.constexpr,
                 ALIGNED: tl.constexpr, NATIVE_BF16: tl.constexpr):
    """One segment, one distribution, on a (blocks per row, rows) grid. Float parameters
    arrive as float64 bit patterns; integer arguments are typed int64 (int32 for
    ``regions``) so that their values never select another compiled variant."""
    blk = tl.program_id(0).to(tl.int64)
    row = tl.program_id(1).to(tl.int64)
    fill_block(out_ptr, m_base + row * m_row_stride, g_base + row * g_row_stride, row_len, blk,
               k0.to(tl.uint32), k1.to(tl.uint32), c2.to(tl.uint32), c3.to(tl.uint32),
               _bits_to_f64(shift_bits), _bits_to_f64(scale_bits), _bits_to_f64(pa_bits),
               _bits_to_f64(qb_bits), _bits_to_f64(dd_bits), _bits_to_f64(xa_bits),
               _bits_to_f64(lo_bits), _bits_to_f64(hi_bits), regions, 1,
               DIST, CLAMP, BLOCK, ALIGNED, NATIVE_BF16)


# --- grouped fill: many tensors (of one dtype) in one launch ----------------------------------
# One int64 row per segment; float parameters are float64 bit patterns.
F_ADDR = tl.constexpr(0)  # address of the segment's first element
F_M_ROW_STRIDE = tl.constexpr(1)
F_G_BASE = tl.constexpr(2)
F_G_ROW_STRIDE = tl.constexpr(3)
F_ROW_LEN = tl.constexpr(4)
F_BLOCKS_PER_ROW = tl.constexpr(5)
F_FIRST_BLOCK = tl.constexpr(6)  # index of the segment's first program
F_DIST = tl.constexpr(7)  # distribution | clamp << 8 | regions << 16
F_KEY = tl.constexpr(8)  # 64-bit seed
F_STREAM = tl.constexpr(9)  # c2 | c3 << 32
F_SHIFT = tl.constexpr(10)  # then scale, pa, qb, dd, xa, lo, hi
N_FIELDS = tl.constexpr(18)


@triton.jit
def _grouped_fill_kernel(table_ptr, block_entry_ptr, OUT_DTYPE: tl.constexpr,
                         BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
                         NATIVE_BF16: tl.constexpr):
    """Program ``pid`` fills one block of segment ``block_entry[pid]`` of the table."""
    pid = tl.program_id(0).to(tl.int64)
    row_ptr = table_ptr + tl.load(block_entry_ptr + pid).to(tl.int64) * N_FIELDS
    out_ptr = tl.load(row_ptr + F_ADDR).to(tl.pointer_type(OUT_DTYPE))
    if ALIGNED:  # the launcher checked every address: 16-byte aligned
        out_ptr = tl.multiple_of(out_ptr, 16)
    blocks_per_row = tl.load(row_ptr + F_BLOCKS_PER_ROW)
    local = pid - tl.load(row_ptr + F_FIRST_BLOCK)
    if local < blocks_per_row:  # the first (for whole tensors, the only) row: no division
        row = local * 0
        blk = local
    else:
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
    packed = tl.load(row_ptr + F_DIST)
    dist = packed & 0xFF
    clamp = ((packed >> 8) & 0xFF).to(tl.int32)
    regions = ((packed >> 16) & 0xFF).to(tl.int32)
    # The branch is uniform over the program; each distribution clamps only when the
    # launcher found that its clamp can change a value (run-time flag).
    if dist == UNIFORM:
        fill_block(out_ptr, m_start, g_start, row_len, blk, k0, k1, c2, c3, shift, scale, pa, qb,
                   dd, xa, lo, hi, regions, clamp, UNIFORM, 2, BLOCK, ALIGNED, NATIVE_BF16)
    elif dist == NORMAL:
        fill_block(out_ptr, m_start, g_start, row_len, blk, k0, k1, c2, c3, shift, scale, pa, qb,
                   dd, xa, lo, hi, regions, clamp, NORMAL, 2, BLOCK, ALIGNED, NATIVE_BF16)
    elif dist == TRUNC_NORMAL:
        fill_block(out_ptr, m_start, g_start, row_len, blk, k0, k1, c2, c3, shift, scale, pa, qb,
                   dd, xa, lo, hi, regions, clamp, TRUNC_NORMAL, 2, BLOCK, ALIGNED, NATIVE_BF16)
    else:
        fill_block(out_ptr, m_start, g_start, row_len, blk, k0, k1, c2, c3, shift, scale, pa, qb,
                   dd, xa, lo, hi, regions, clamp, CONSTANT, 0, BLOCK, ALIGNED, NATIVE_BF16)
