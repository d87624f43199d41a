"""An independent NumPy reference of the value contract (docs/contract.md).

Written from the description in docs/contract.md, not from the library: it shares no code with
``fastinit`` (not even the constants module), so a change to the library's stream that
the description does not give shows up as a mismatch here.
"""
from __future__ import annotations

import numpy as np

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)
W1 = np.uint64(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32(ctr: np.ndarray, key: tuple[int, int], rounds: int = 10) -> np.ndarray:
    """Philox4x32-``rounds`` of counters ``ctr`` (shape (n, 4), uint32) under ``key``."""
    c = [ctr[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for r in range(rounds):
        p0 = M0 * c[0]
        p1 = M1 * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & MASK32,
             (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & MASK32]
        k0 = (k0 + W0) & MASK32
        k1 = (k1 + W1) & MASK32
    return np.stack(c, axis=1).astype(np.uint32)


def counters(indices: np.ndarray, stream: int, draw_round: int = 0) -> np.ndarray:
    """Counter words of the groups of global element ``indices`` (docs/contract.md)."""
    group = np.asarray(indices, dtype=np.uint64) >> np.uint64(2)
    n = group.size
    ctr = np.empty((n, 4), dtype=np.uint32)
    ctr[:, 0] = (group & MASK32).astype(np.uint32)
    ctr[:, 1] = (group >> np.uint64(32)).astype(np.uint32)
    ctr[:, 2] = stream & 0xFFFFFFFF
    ctr[:, 3] = (stream >> 32) | (draw_round << 24)
    return ctr


def words(seed: int, stream: int, indices: np.ndarray) -> np.ndarray:
    """The Philox word of each global element index: lane ``i % 4`` of group ``i // 4``."""
    indices = np.asarray(indices, dtype=np.uint64)
    out = philox4x32(counters(indices, stream), (seed & 0xFFFFFFFF, seed >> 32))
    return out[np.arange(indices.size), (indices & np.uint64(3)).astype(np.int64)]


def uniform01(w: np.ndarray) -> np.ndarray:
    """u = ((w >> 9) * 2 + 1) * 2**-24 as float32."""
    return (((w >> np.uint32(9)).astype(np.uint32) * np.uint32(2) + np.uint32(1))
            .astype(np.float32) * np.float32(2.0**-24))


def fma32(a, b, c) -> np.ndarray:
    """Exactly rounded float32 a * b + c (via float64 with round-to-odd)."""
    a, b, c = (np.asarray(x, dtype=np.float32).astype(np.float64) for x in (a, b, c))
    a, b, c = np.broadcast_arrays(a, b, c)
    p = a * b  # exact: 24 + 24 bits
    s = p + c
    bp = s - p  # TwoSum error term
    err = (p - (s - bp)) + (c - bp)
    bits = s.view(np.int64)
    even = (bits & 1) == 0
    fix = (err != 0) & even & np.isfinite(s)
    s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def uniform(seed: int, stream: int, indices: np.ndarray, a: float, b: float) -> np.ndarray:
    """float32 uniform_ values before clamping: fma(float32(b - a), u, float32(a))."""
    u = uniform01(words(seed, stream, indices))
    return fma32(np.float32(b - a), u, np.float32(a))
