"""Numba's on-disk cache for the CPU backend, keyed on everything compiled in.

Numba caches a function's compiled code next to the function's own file (``__pycache__``)
or, where that is not writable, in the user's cache directory (``NUMBA_CACHE_DIR``
overrides both), and keys it on that file's source only: code the function calls from
other files, and constants it reads from other modules, are compiled in without being
part of the key. The fill loops (``cpu_loops.py``) use the device math of ``cpu_math.py``
and the intrinsics and constants of ``cpu_ir.py``, whose constants come from
``fastinit.kernels.contract``; :func:`_cached_jit` puts a fingerprint of all of them into
the cached names, so that an edit to any of these files or to the contract compiles
afresh instead of loading stale code.
"""
from __future__ import annotations

import hashlib
import os

from numba import njit

from fastinit.kernels import contract as C

#: The backend's files whose code is compiled into the cached kernels (besides the file of
#: the cached function itself, which Numba's own key covers).
KERNEL_SOURCES = ("cpu_ir.py", "cpu_math.py", "cpu_loops.py")


def _contract_fingerprint(directory: str | None = None) -> str:
    """A hash of the contract's constants and of the kernels' sources (all that is
    compiled into the kernels); ``directory``: where the sources are (this file's)."""
    items = sorted((k, v) for k, v in vars(C).items() if k.isupper())
    digest = hashlib.sha256(repr(items).encode())
    directory = directory or os.path.dirname(os.path.abspath(__file__))
    for name in KERNEL_SOURCES:
        with open(os.path.join(directory, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()[:12]


_CONTRACT_KEY = _contract_fingerprint()


def _cached_jit(**options):
    """``njit(cache=True, **options)`` keyed on the contract and the kernels' sources as
    well as on the function's own file.

    The fingerprint (:func:`_contract_fingerprint`) goes into the cached names: a changed
    contract or kernel source compiles afresh. Without any writable cache directory the
    code is compiled in every process instead.
    """

    def wrap(fn):
        fn.__qualname__ = f"{fn.__qualname__}_{_CONTRACT_KEY}"
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:  # Numba found no writable cache directory
            return njit(**options)(fn)

    return wrap
