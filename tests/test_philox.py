"""Tier 1: Philox4x32 against the published known-answer vectors (Random123).

The vectors (7 and 10 rounds) are checked in the NumPy reference, in the CPU backend, in
fastinit's Triton device function (interpreted without a GPU) and against Triton's own
``tl.philox``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from fastinit.backends import cpu
from fastinit.kernels.philox import philox4x32
from tests import reference

KAT_FILE = Path(__file__).parent / "data" / "philox4x32_kat.txt"


def _load_kat():
    cases = []
    for line in KAT_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, rounds, *hexes = line.split()
        assert name == "philox4x32"
        vals = [int(h, 16) for h in hexes]
        cases.append((int(rounds), tuple(vals[0:4]), tuple(vals[4:6]), tuple(vals[6:10])))
    return cases


KAT = _load_kat()


def test_kat_file_complete():
    assert len(KAT) == 6
    assert sorted({r for r, *_ in KAT}) == [7, 10]


@pytest.mark.parametrize("rounds,ctr,key,expected", KAT)
def test_kat_numpy_reference(rounds, ctr, key, expected):
    out = reference.philox4x32(np.array([ctr], dtype=np.uint32), key, rounds)
    assert tuple(int(x) for x in out[0]) == expected


@pytest.mark.parametrize("rounds,ctr,key,expected", KAT)
def test_kat_cpu_backend(rounds, ctr, key, expected):
    assert cpu.philox_block(ctr, key, rounds) == expected


@triton.jit
def _kat_kernel(out_ptr, c0, c1, c2, c3, k0, k1, N_ROUNDS: tl.constexpr, TRITON: tl.constexpr):
    zero = tl.zeros([1], dtype=tl.uint32)
    a = zero + c0.to(tl.uint32)
    b = zero + c1.to(tl.uint32)
    c = zero + c2.to(tl.uint32)
    d = zero + c3.to(tl.uint32)
    if TRITON:
        seed = (k1.to(tl.uint64) << 32) | k0.to(tl.uint64)
        r0, r1, r2, r3 = tl.philox(seed, a, b, c, d, N_ROUNDS)
    else:
        r0, r1, r2, r3 = philox4x32(a, b, c, d, k0.to(tl.uint32), k1.to(tl.uint32), N_ROUNDS)
    idx = tl.arange(0, 1)
    tl.store(out_ptr + idx, r0.to(tl.int32, bitcast=True))
    tl.store(out_ptr + 1 + idx, r1.to(tl.int32, bitcast=True))
    tl.store(out_ptr + 2 + idx, r2.to(tl.int32, bitcast=True))
    tl.store(out_ptr + 3 + idx, r3.to(tl.int32, bitcast=True))


def _triton_kat(rounds, ctr, key, use_triton_philox=False):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = torch.zeros(4, dtype=torch.int32, device=device)
    _kat_kernel[(1,)](out, *ctr, *key, N_ROUNDS=rounds, TRITON=use_triton_philox)
    return tuple(int(x) & 0xFFFFFFFF for x in out.cpu().tolist())


@pytest.mark.parametrize("rounds,ctr,key,expected", KAT)
def test_kat_triton_kernel(rounds, ctr, key, expected):
    assert _triton_kat(rounds, ctr, key) == expected


@pytest.mark.parametrize("rounds,ctr,key,expected", KAT)
def test_kat_matches_triton_tl_philox(rounds, ctr, key, expected):
    assert _triton_kat(rounds, ctr, key, use_triton_philox=True) == expected


def test_words_cpu_backend_match_reference():
    """The counter layout: words of many groups, streams with high bits, a draw round."""
    rng = np.random.default_rng(0)
    groups = np.concatenate([np.arange(64), rng.integers(0, 2**62, 64), [2**32 - 1, 2**32, 2**40 + 3]])
    groups = groups.astype(np.uint64)
    for seed, stream in [(0, 0), (2**64 - 1, 2**56 - 1), (0x123456789ABCDEF0, 0xABCDEF012345)]:
        got = cpu.philox_words(seed, stream, groups)
        ref = reference.philox4x32(reference.counters(groups * np.uint64(4), stream),
                                   (seed & 0xFFFFFFFF, seed >> 32))
        np.testing.assert_array_equal(got, ref)
    got = cpu.philox_words(7, 9, groups, draw_round=3)
    ref = reference.philox4x32(reference.counters(groups * np.uint64(4), 9, draw_round=3), (7, 0))
    np.testing.assert_array_equal(got, ref)
