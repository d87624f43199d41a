"""The CPU backend's fill loops and their compiled entry points.

Each distribution's loop over element groups is shaped for LLVM's loop vectorizer (16
groups per iteration in AVX-512 registers on x86-64, all of its arithmetic 512 bits wide,
checked in the generated assembly by ``tests/test_cpu_loops.py``): Philox as straight-line
IR on 64-bit lanes, the integer steps as 32-bit IR (both from
:mod:`fastinit.backends.cpu_ir`), no branch in a loop body (selects; the quadrant's signs
as bit flips), and the truncated normal's rare inverse-CDF regions evaluated only for the
groups that reach them (unless more than 0.5% of the elements do: an interval in a tail,
whose elements are all evaluated with all regions). No fast-math flag is used: every value
is the IEEE-754 operation of :mod:`fastinit.backends.cpu_math`, so every output bit is the
device's.

Each distribution (and truncated-normal region count) has its own entry point
(:data:`_KERNELS`), compiled for an output dtype the first time a fill needs it and kept in
Numba's on-disk cache (:func:`fastinit.backends.cpu_jit._cached_jit`).
"""
from __future__ import annotations

import numpy as np
from numba import literally, njit, types
from numba.extending import overload

from fastinit.kernels import contract as C

from .cpu_ir import (_NEG_ZERO, _NORMAL, _TRUNC, _UNIFORM, _W2_, _f32_bits, _fma,
                     _full_width_vectors)
from .cpu_jit import _cached_jit
from .cpu_math import (_scalar_group_words, _trunc_w, box_muller, ndtri_factor, run_pairs,
                       run_words, store, trunc_normal_standard, uniform_open, value_f32)

_DIST_NAMES = {C.CONSTANT: "constant", C.UNIFORM: "uniform", C.NORMAL: "normal",
               C.TRUNC_NORMAL: "trunc_normal"}
#: The truncated normal's loop that evaluates all regions for every element (not a
#: distribution of the contract: the same values as ``C.TRUNC_NORMAL``).
_TRUNC_DENSE = max(_DIST_NAMES) + 1

# --- the fill loops: one per distribution ----------------------------------------------------
# Every distribution has its own loop over whole element groups (``_<dist>_groups``) and its
# own four variates of one group (``_<dist>_variates``, for the partial groups at the ends
# of a row). An entry point (:func:`_entry_point`) combines one pair with the walk over a
# segment's rows, so that a fill compiles - or loads from the cache - its own distribution's
# code only. One loop per distribution also keeps each loop body free of a distribution
# switch, and indices counted from zero let the compiler drop negative-index handling: both
# are needed for the loops to vectorize.


@njit
def _store4(out, i, v0, v1, v2, v3, shift, scale, lo, hi):
    store(out, i, v0, shift, scale, lo, hi)
    store(out, i + 1, v1, shift, scale, lo, hi)
    store(out, i + 2, v2, shift, scale, lo, hi)
    store(out, i + 3, v3, shift, scale, lo, hi)


@njit
def _constant_groups(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    _full_width_vectors()
    for i in range(n):
        _store4(out, 4 * i, _NEG_ZERO, _NEG_ZERO, _NEG_ZERO, _NEG_ZERO, shift, scale, lo, hi)


@njit
def _constant_variates(group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    return _NEG_ZERO, _NEG_ZERO, _NEG_ZERO, _NEG_ZERO


@njit
def _uniform_groups(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    _full_width_vectors()
    for i in range(n):
        w0, w1, w2, w3 = run_words(g0, i, k0, k1, c2, c3)
        _store4(out, 4 * i, uniform_open(w0), uniform_open(w1), uniform_open(w2),
                uniform_open(w3), shift, scale, lo, hi)


#: Groups per tile of a float32 fill that writes its words before their values (16 KiB of
#: output: the second pass finds it in the L1 cache).
_PAIR_TILE = 1024


@njit
def _pair_words(w64, g0, t, nt, k0, k1, c2, c3):
    """The words of groups ``t .. t + nt - 1`` of a run, in memory order (two uint64
    pairs per group, :func:`run_pairs`), into ``w64``."""
    _full_width_vectors()
    for i in range(nt):
        q01, q23 = run_pairs(g0, t + i, k0, k1, c2, c3)
        w64[2 * i] = q01
        w64[2 * i + 1] = q23


@njit
def _uniform_f32_words(w32, nt, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    """The words of ``nt`` groups in ``w32``, each replaced by its float32 uniform element's
    bits (the value pass of :func:`_uniform_f32_groups`: per 64 elements it and the word
    pairs spend no instruction on truncating 64-bit lanes or on interleaving four word
    vectors, a tenth of the one-pass loop's time; measured on an Intel Xeon with AVX-512,
    one thread: 0.50-0.52 against 0.55-0.60 ns per element, bench/RESULTS.md)."""
    _full_width_vectors()
    for j in range(4 * nt):
        w32[j] = _f32_bits(value_f32(uniform_open(w32[j]), shift, scale, lo, hi))


def _in_two_passes(one_pass, values):
    """``(run, two_pass)``: ``two_pass`` is the loop ``one_pass`` for a float32 output in two
    passes over tiles of :data:`_PAIR_TILE` groups - Philox writes each tile's words into
    the output in their order (word pairs straight from the last round, :func:`run_pairs`),
    then ``values(w32, nt, pa, qb, dd, xa, regions, shift, scale, lo, hi)`` turns the words
    of the tile's ``nt`` groups into their elements in place, while the tile is in the L1
    cache. The same bits as ``one_pass``, which serves outputs not 8-byte aligned; ``run``
    (for Numba code) picks ``two_pass`` for float32 outputs and ``one_pass`` for the others."""

    def two_pass(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
        _full_width_vectors()
        regions = literally(regions)  # compile-time, as the loops take it
        w32 = out[:4 * n].view(np.uint32)
        if w32.ctypes.data & 7:  # word pairs need 8-byte alignment: the one-pass loop
            one_pass(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi)
            return
        w64 = w32.view(np.uint64)
        for t in range(0, n, _PAIR_TILE):
            nt = min(_PAIR_TILE, n - t)
            _pair_words(w64[2 * t:2 * (t + nt)], g0, t, nt, k0, k1, c2, c3)
            values(w32[4 * t:4 * (t + nt)], nt, pa, qb, dd, xa, regions, shift, scale, lo, hi)

    # named after the one-pass loop (``_normal_groups`` -> ``_normal_f32_groups``), as the
    # generated code and ``fastinit bench --asm`` show it
    name = one_pass.py_func.__name__.replace("_groups", "_f32_groups")
    two_pass.__name__ = two_pass.__qualname__ = name
    two_pass = njit(two_pass)

    def run(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
        """The loop for the output's dtype (two passes for float32)."""

    @overload(run)
    def _run(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
        loop = two_pass if out.dtype == types.float32 else one_pass

        def impl(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
            loop(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi)
        return impl

    return run, two_pass


_uniform_run, _uniform_f32_groups = _in_two_passes(_uniform_groups, _uniform_f32_words)


@njit
def _uniform_variates(group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    w0, w1, w2, w3 = _scalar_group_words(group, k0, k1, c2, c3)
    return uniform_open(w0), uniform_open(w1), uniform_open(w2), uniform_open(w3)


@njit
def _normal_groups(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    _full_width_vectors()
    for i in range(n):
        w0, w1, w2, w3 = run_words(g0, i, k0, k1, c2, c3)
        z0, z1 = box_muller(w0, w1)
        z2, z3 = box_muller(w2, w3)
        _store4(out, 4 * i, z0, z1, z2, z3, shift, scale, lo, hi)


@njit
def _normal_f32_words(w32, nt, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    """The words of ``nt`` groups in ``w32``, each word pair (words ``2j``, ``2j + 1``: w0,
    w1 or w2, w3 of a group) replaced by the bits of its two float32 normal elements.
    Box-Muller takes a word pair, so the loop steps over pairs; LLVM splits 16 of them into
    the two words' vectors and joins the results with two permutes each way. With the word
    pairs, 4.4 instructions per element against the one-pass loop's 5.1: 4-10% faster on an
    AMD EPYC (Zen 5, one thread) with the output in L1-L2, about the same on a 64 MiB
    output (within the noise; bench/RESULTS.md)."""
    _full_width_vectors()
    for j in range(2 * nt):
        z0, z1 = box_muller(w32[2 * j], w32[2 * j + 1])
        w32[2 * j] = _f32_bits(value_f32(z0, shift, scale, lo, hi))
        w32[2 * j + 1] = _f32_bits(value_f32(z1, shift, scale, lo, hi))


_normal_run, _normal_f32_groups = _in_two_passes(_normal_groups, _normal_f32_words)


@njit
def _normal_variates(group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    w0, w1, w2, w3 = _scalar_group_words(group, k0, k1, c2, c3)
    z0, z1 = box_muller(w0, w1)
    z2, z3 = box_muller(w2, w3)
    return z0, z1, z2, z3


#: Groups per pass of a truncated normal that reaches the rare regions (w >= NDTRI_W2).
_TRUNC_TILE = 1024
#: Above this fraction of its elements in the rare regions (``cpu_math.trunc_rare_fraction``:
#: an interval in a tail), a truncated normal evaluates every element with all its regions,
#: in vectors (``_trunc_dense_groups``), instead of re-evaluating the groups that reach them
#: one at a time; both give the same bits. Measured on an Intel Xeon with AVX-512, one
#: thread: the tiles cost about 1.45 + 64 f ns per element at a rare fraction f (1.5 at the
#: 0.001 of a wide interval, 15 at f = 1), all regions everywhere 1.6-1.9: even at 0.005.
_TRUNC_DENSE_ABOVE = 0.005


@njit
def _trunc_dense_groups(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo,
                        hi):
    _full_width_vectors()
    regions = literally(regions)  # a compile-time region count: the loop vectorizes
    for i in range(n):
        w0, w1, w2, w3 = run_words(g0, i, k0, k1, c2, c3)
        _store4(out, 4 * i, trunc_normal_standard(w0, pa, qb, dd, xa, regions),
                trunc_normal_standard(w1, pa, qb, dd, xa, regions),
                trunc_normal_standard(w2, pa, qb, dd, xa, regions),
                trunc_normal_standard(w3, pa, qb, dd, xa, regions), shift, scale, lo, hi)


@njit
def _trunc_dense_f32_words(w32, nt, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    """The words of ``nt`` groups in ``w32``, each replaced by its float32 truncated normal
    element's bits, every element with all ``regions`` regions. Used with 1-2 regions: 4-7%
    (1 region) and 2-3% (2 regions) faster than the one-pass loop on an AMD EPYC (Zen 5),
    one thread, with the output in L1-L2 (about the same, within the noise, on a 64 MiB
    output). Not where the rare regions occur: with 3-4 regions everywhere (a square root
    and two more polynomials per element) the two passes were 4% slower on that CPU, and
    the tiles that flag the groups reaching them 5-8% slower: timed apart, the two passes
    add up to the one-pass loop's time, in which Philox's integer work overlaps the float
    arithmetic (bench/RESULTS.md)."""
    _full_width_vectors()
    regions = literally(regions)
    for j in range(4 * nt):
        z = trunc_normal_standard(w32[j], pa, qb, dd, xa, regions)
        w32[j] = _f32_bits(value_f32(z, shift, scale, lo, hi))


_trunc_dense_run, _trunc_dense_f32_groups = _in_two_passes(_trunc_dense_groups,
                                                           _trunc_dense_f32_words)


@njit
def _trunc_groups(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    _full_width_vectors()
    regions = literally(regions)  # a compile-time region count: the loop vectorizes
    if regions <= 2:  # no rare regions: every element in one loop (two passes for float32)
        _trunc_dense_run(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo,
                         hi)
        return
    # Regions 3 and 4 (w >= 6.25: one element in ~1000 for a wide interval) cost a square
    # root and a polynomial each: a pass over a tile evaluates every element with regions
    # 1-2 and flags the groups with an element in region 3 or 4, which are then evaluated
    # again with all regions (scanned 8 flags at a time).
    size = (min(n, _TRUNC_TILE) + 7) & ~7
    flags = np.zeros(size, np.uint8)
    words8 = flags.view(np.uint64)
    dd2 = dd + dd
    for t in range(0, n, _TRUNC_TILE):
        nt = min(_TRUNC_TILE, n - t)
        o = out[4 * t:]
        for i in range(nt):
            w0, w1, w2, w3 = run_words(g0, t + i, k0, k1, c2, c3)
            u0, u1, u2, u3 = uniform_open(w0), uniform_open(w1), uniform_open(w2), uniform_open(w3)
            v0, v1 = _trunc_w(u0, pa, qb, dd), _trunc_w(u1, pa, qb, dd)
            v2, v3 = _trunc_w(u2, pa, qb, dd), _trunc_w(u3, pa, qb, dd)
            flags[i] = max(max(v0, v1), max(v2, v3)) >= _W2_
            _store4(o, 4 * i, _fma(u0, dd2, xa) * ndtri_factor(v0, 2),
                    _fma(u1, dd2, xa) * ndtri_factor(v1, 2),
                    _fma(u2, dd2, xa) * ndtri_factor(v2, 2),
                    _fma(u3, dd2, xa) * ndtri_factor(v3, 2), shift, scale, lo, hi)
        for i in range(nt, (nt + 7) & ~7):
            flags[i] = 0
        for q in range((nt + 7) >> 3):
            if words8[q]:
                for i in range(8 * q, min(8 * q + 8, nt)):
                    if flags[i]:
                        z0, z1, z2, z3 = _trunc_variates(g0 + t + i, k0, k1, c2, c3, pa, qb,
                                                         dd, xa, regions)
                        _store4(o, 4 * i, z0, z1, z2, z3, shift, scale, lo, hi)


@njit
def _trunc_variates(group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    regions = literally(regions)
    w0, w1, w2, w3 = _scalar_group_words(group, k0, k1, c2, c3)
    return (trunc_normal_standard(w0, pa, qb, dd, xa, regions),
            trunc_normal_standard(w1, pa, qb, dd, xa, regions),
            trunc_normal_standard(w2, pa, qb, dd, xa, regions),
            trunc_normal_standard(w3, pa, qb, dd, xa, regions))


def _variates(dist, group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    """The four standard variates of one group; ``dist`` is a compile-time constant."""


@overload(_variates, prefer_literal=True)
def _variates_impl(dist, group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    # Chosen while typing, from the literal value of ``dist``: only that distribution's
    # code is compiled.
    if not isinstance(dist, types.IntegerLiteral):
        return None
    pick = {_UNIFORM: _uniform_variates, _NORMAL: _normal_variates,
            _TRUNC: _trunc_variates, _TRUNC_DENSE: _trunc_variates}.get(dist.literal_value,
                                                                        _constant_variates)

    def impl(dist, group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
        return pick(group, k0, k1, c2, c3, pa, qb, dd, xa, regions)
    return impl


_RUN_GROUPS = 1 << 32
_RUN_MASK = (1 << 32) - 1


def _groups(dist, out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    """``n`` whole element groups starting at group ``g0``; ``out`` starts at group ``g0``;
    ``dist`` is a compile-time constant. The loops take runs of groups with one high
    counter word (:func:`run_words`)."""


@overload(_groups, prefer_literal=True)
def _groups_impl(dist, out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo,
                 hi):
    if not isinstance(dist, types.IntegerLiteral):
        return None
    pick = {_UNIFORM: _uniform_run, _NORMAL: _normal_run,
            _TRUNC: _trunc_groups, _TRUNC_DENSE: _trunc_dense_groups}.get(dist.literal_value,
                                                                          _constant_groups)

    def impl(dist, out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
        # runs that keep the high counter word (c1 = group >> 32) of their first group
        while n > 0:
            run = min(n, _RUN_GROUPS - (g0 & _RUN_MASK))
            pick(out, g0, run, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi)
            out = out[4 * run:]
            g0 += run
            n -= run
    return impl


@njit
def _walk(dist, regions, out, m_base, m_row_stride, g_base, g_row_stride, row_len, e0, e1,
          k0, k1, c2, c3, pa, qb, dd, xa, shift, scale, lo, hi):
    """Fill local elements ``[e0, e1)`` (row-major over ``n_rows x row_len``) of a segment.

    ``out`` is a flat array over the segment's memory: float32, float64, uint16 holding
    bfloat16 bits or int16 holding float16 bits.
    """
    _full_width_vectors()
    e = e0
    while e < e1:
        row = e // row_len
        col = e - row * row_len
        n = min(row_len - col, e1 - e)
        gs = g_base + row * g_row_stride + col  # global index of the first element
        ge = gs + n
        base = m_base + row * m_row_stride + col - gs  # memory offset of global index 0
        grp = gs >> 2
        if gs & 3:  # leading partial group
            v = _variates(dist, grp, k0, k1, c2, c3, pa, qb, dd, xa, regions)
            for j in range(gs & 3, min(4, ge - (grp << 2))):
                store(out, base + (grp << 2) + j, v[j], shift, scale, lo, hi)
            grp += 1
        if (ge >> 2) > grp:
            _groups(dist, out[base + (grp << 2):], grp, (ge >> 2) - grp, k0, k1, c2, c3, pa, qb,
                    dd, xa, regions, shift, scale, lo, hi)
        if (ge & 3) and (ge >> 2) >= grp:  # trailing partial group
            g = ge >> 2
            v = _variates(dist, g, k0, k1, c2, c3, pa, qb, dd, xa, regions)
            for j in range(ge & 3):
                store(out, base + (g << 2) + j, v[j], shift, scale, lo, hi)
        e += n


def _entry_point(dist: int, regions: int):
    """The compiled, cached fill of one distribution (and truncated-normal region count).

    Arguments: ``out, m_base, m_row_stride, g_base, g_row_stride, row_len, e0, e1, k0, k1,
    c2, c3, pa, qb, dd, xa, shift, scale, lo, hi`` (see :func:`_walk`). ``dist`` and
    ``regions`` are closure variables: Numba compiles them in as constants, so only the
    code of that distribution and region count is compiled.
    """

    def fill(out, m_base, m_row_stride, g_base, g_row_stride, row_len, e0, e1,
             k0, k1, c2, c3, pa, qb, dd, xa, shift, scale, lo, hi):
        _full_width_vectors()
        _walk(dist, regions, out, m_base, m_row_stride, g_base, g_row_stride, row_len, e0, e1,
              k0, k1, c2, c3, pa, qb, dd, xa, shift, scale, lo, hi)

    name = "trunc_normal_dense" if dist == _TRUNC_DENSE else _DIST_NAMES[dist]
    fill.__qualname__ = fill.__name__ = f"fill_{name}" + (
        f"{regions}" if dist in (_TRUNC, _TRUNC_DENSE) else "")
    return _cached_jit(nogil=True)(fill)


#: The compiled fills, by (distribution, truncated-normal region count).
_KERNELS = {(d, r): _entry_point(d, r)
            for d, r in ((C.CONSTANT, 1), (C.UNIFORM, 1), (C.NORMAL, 1), (C.TRUNC_NORMAL, 1),
                         (C.TRUNC_NORMAL, 2), (C.TRUNC_NORMAL, 3), (C.TRUNC_NORMAL, 4),
                         (_TRUNC_DENSE, 3), (_TRUNC_DENSE, 4))}
#: The contract's distribution of each compiled fill.
_KERNEL_DIST = {kernel: C.TRUNC_NORMAL if d == _TRUNC_DENSE else d
                for (d, _), kernel in _KERNELS.items()}
