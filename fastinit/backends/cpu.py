"""The CPU backend: the same stream as the Triton kernels, computed with Numba.

This module is the backend's face: ``fill``, ``fill_grouped`` and ``philox_words`` /
``philox_block`` (the host side: threads, jobs, the compile notice), and the names of the
modules below it that the tests reach. The backend is four modules more, each on the one
below:

* ``cpu_ir.py``: the LLVM-IR intrinsics Numba lacks (fma, bit casts, the 32-bit integer
  steps, Philox on 64-bit lanes, float16 conversion) and the contract's typed constants;
* ``cpu_jit.py``: Numba's on-disk cache, keyed on the contract and the kernels' sources;
* ``cpu_math.py``: Philox and the device math mirrored one operation for one (uniform, log,
  Box-Muller, ndtri, truncated normal, output conversion), so that the CPU and the GPU give
  bit-identical values;
* ``cpu_loops.py``: the vectorized fill loops and their compiled entry points.

The work is split over a thread pool; Numba releases the GIL and writes straight into the
output, so a fill needs no temporary beyond a few scalars per thread (1 KiB of flags for a
truncated normal that reaches the rare regions).

Compiling: each distribution (and truncated-normal region count) has its own entry point,
compiled for an output dtype the first time a fill needs it and kept in Numba's on-disk
cache, so a new process loads it in a fraction of a second. A fill that compiles prints one
line to stderr first ("compiling the CPU kernels once, ~N s"); loading from the cache prints
nothing.

The backend's modules import one another relatively, so that ``bench/benchmark_fill.py``
can load the backend of another git revision as a package of its own.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import threading
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Sequence

import numba
import numpy as np
import torch
from numba.core import event as numba_event

from fastinit import memory
from fastinit.kernels import contract as C
from fastinit.layout import Segment
from fastinit.spec import KernelParams

from .cpu_ir import _LO32, _ROUNDS, _SH32, F, U, _philox_rounds
from .cpu_jit import _cached_jit
from .cpu_loops import _DIST_NAMES, _KERNEL_DIST, _KERNELS, _TRUNC_DENSE, _TRUNC_DENSE_ABOVE
from .cpu_math import philox4x32, trunc_rare_fraction, trunc_regions

# Reached through this module by the tests and tools (the device math one element at a time,
# the loops' assembly): re-exported, so that they need not know the backend's layout.
from .cpu_ir import f16_bits_to_f32, f32_to_f16_bits  # noqa: F401
from .cpu_loops import (_PAIR_TILE, _TRUNC_TILE, _normal_f32_groups,  # noqa: F401
                        _normal_f32_words, _normal_groups, _pair_words,
                        _trunc_dense_f32_groups, _trunc_dense_f32_words, _trunc_dense_groups,
                        _trunc_groups, _uniform_f32_groups, _uniform_f32_words,
                        _uniform_groups)
from .cpu_math import (box_muller, cossin_2pi, group_words, log_f32,  # noqa: F401
                       ndtri_factor, round_bf16, run_words, store, trunc_normal_standard,
                       uniform_open)

# --- host side ------------------------------------------------------------------------------

#: Fills smaller than this run on the calling thread (measured crossover on 2 cores).
PARALLEL_THRESHOLD = 1 << 18
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


_CPU_COUNT = os.cpu_count() or 1


def _threads() -> int:
    return max(1, min(torch.get_num_threads(), _CPU_COUNT))


def _forget_pool_after_fork() -> None:
    """A forked child inherits the pool's bookkeeping but not its threads: start afresh
    (otherwise its first parallel fill waits forever for threads that do not exist)."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < _threads():  # noqa: SLF001
            _pool = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="fastinit")
        return _pool


def _flat_array(out: torch.Tensor, span: int) -> np.ndarray:
    """A NumPy view of ``span`` elements of ``out``'s memory (16-bit dtypes as their bits:
    bfloat16 as uint16, float16 as int16, so that each has its own compiled store)."""
    flat = out if not out.requires_grad else out.detach()
    if flat.dim() != 1 or flat.stride(0) != 1 or flat.shape[0] != span:
        flat = torch.as_strided(flat, (span,), (1,))
    if out.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(np.uint16)
    if out.dtype == torch.float16:
        return flat.view(torch.int16).numpy()
    return flat.numpy()


# --- the compile notice -------------------------------------------------------

#: Seconds to compile one entry point for one dtype (measured on a 2-core AMD EPYC VM:
#: 1.3 s uniform, 1.6 s normal, 2.2 s truncated normal in a new process), for the notice
#: only; later processes load the code from the cache.
_COMPILE_SECONDS = {C.CONSTANT: 0.5, C.UNIFORM: 1.5, C.NORMAL: 2.0, C.TRUNC_NORMAL: 2.5}

#: (entry point, dtype) pairs compiled or loaded in this process, and the (distribution,
#: dtype) pairs that have been filled: a first fill may compile (``trunc_regions`` too).
_ready: set[tuple] = set()
_warm: set[tuple] = set()


@contextlib.contextmanager
def _compile_notice(what: Iterable[tuple[int, torch.dtype]]) -> Iterator[None]:
    """Print one line if Numba compiles anything inside the block.

    ``what``: the (distribution, dtype) pairs that may compile, for the estimate. Numba
    fires ``numba:compile`` only on a cache miss, so loading cached code (every process
    after the first) prints nothing.
    """
    what = sorted(set(what), key=lambda dd: (dd[0], str(dd[1])))
    seconds = sum(_COMPILE_SECONDS[d] for d, _ in what)
    names = ", ".join(f"{_DIST_NAMES[d]} {str(t).removeprefix('torch.')}" for d, t in what)
    unsaid = [f"fastinit: compiling the CPU kernels once, ~{max(1, round(seconds))} s "
              f"({names}); later runs load them from Numba's cache"]

    class Listener(numba_event.Listener):
        def on_start(self, event) -> None:
            if unsaid:  # the first compile of the block
                print(unsaid.pop(), file=sys.stderr, flush=True)

        def on_end(self, event) -> None:
            pass

    with numba_event.install_listener("numba:compile", Listener()):
        yield


def _param_args(params: KernelParams, float64: bool) -> tuple:
    """``(kernel, distribution arguments)`` of a fill, typed as the kernel is compiled for."""
    # -0.0 == 0.0: the sign of the shift must be part of the cache key
    return _param_args_cached(params, float64, math.copysign(1.0, params.shift))


@functools.lru_cache(maxsize=4096)
def _param_args_cached(params: KernelParams, float64: bool, _sign: float) -> tuple:
    ftype = np.float64 if float64 else np.float32
    pa, qb, dd = F(params.pa), F(params.qb), F(params.dd)
    dist, regions = params.dist, 1
    if dist == C.TRUNC_NORMAL:
        regions = trunc_regions(pa, qb, dd)
        if regions >= 3 and trunc_rare_fraction(params) > _TRUNC_DENSE_ABOVE:
            dist = _TRUNC_DENSE
    floats = tuple(ftype(x) for x in (params.shift, params.scale, params.lo, params.hi))
    return _KERNELS[dist, regions], (pa, qb, dd, F(params.xa)) + floats


def _jobs(entry, pieces_for) -> list[tuple]:
    """``(kernel, dtype, args, touch)`` of every piece of an entry's segments (``touch``:
    the ``(address, bytes)`` to populate before the piece is filled, or None)."""
    out, segments, params, key, stream, draw_round = entry
    c2, c3 = C.stream_words(stream, draw_round)
    kernel, dargs = _param_args(params, out.dtype == torch.float64)
    args = _key_words(key) + (U(c2), U(c3)) + dargs
    fresh = memory.is_fresh(out)
    if len(segments) == 1 and not fresh:  # one piece of one segment (most tensors): short
        s = segments[0]
        total = s.n_rows * s.row_len
        if total and pieces_for(total) == 1:
            arr = _flat_array(out, s.m_base + (s.n_rows - 1) * s.m_row_stride + s.row_len)
            return [(kernel, out.dtype, (arr, s.m_base, s.m_row_stride, s.g_base,
                                         s.g_row_stride, s.row_len, 0, total) + args, None)]
    span = max(s.m_base + (s.n_rows - 1) * s.m_row_stride + s.row_len for s in segments)
    arr = _flat_array(out, span)
    jobs = []
    size = out.element_size()
    for s in segments:
        total = s.n_rows * s.row_len
        pieces = pieces_for(total)
        # Fresh memory (materialize's): each chunk's pages are populated right before the
        # chunk is filled, by the thread that fills it - one system call instead of a
        # fault per page, the cleared pages still in cache when the fill writes them.
        touch = fresh and (s.n_rows == 1 or s.m_row_stride == s.row_len)
        if touch:
            pieces = max(pieces, -(-total * size // memory.TOUCH_CHUNK_BYTES))
        for i in range(pieces):
            e0, e1 = total * i // pieces, total * (i + 1) // pieces
            if e1 > e0:
                jobs.append((kernel, out.dtype, (arr, s.m_base, s.m_row_stride, s.g_base,
                                                 s.g_row_stride, s.row_len, e0, e1) + args,
                             (arr.ctypes.data + (s.m_base + e0) * size, (e1 - e0) * size)
                             if touch else None))
    return jobs


@functools.lru_cache(maxsize=64)
def _key_words(key: int) -> tuple:
    """A fill key as the kernels take it: its two 32-bit words (one key serves every
    tensor of a materialize)."""
    return U(key & 0xFFFFFFFF), U(key >> 32)


def _compile(jobs: list[tuple]) -> None:
    """Compile, or load from the cache, every kernel ``jobs`` use that this process lacks.

    Typed as a call types its arguments, so the calls that follow find the code.
    """
    for kernel, dtype, args, _ in jobs:
        if (kernel, dtype) not in _ready:
            kernel.compile(tuple(numba.typeof(a) for a in args))
            _ready.add((kernel, dtype))


def _prepared_jobs(entries, pieces_for) -> list[tuple]:
    """The jobs of ``entries``, with their kernels compiled or loaded (in the calling
    thread, before any job runs) and one notice for the whole call if that compiles."""
    entries = [e for e in entries if e[1]]
    fresh = {(e[2].dist, e[0].dtype) for e in entries} - _warm
    if fresh:  # a first fill of a distribution and dtype in this process
        with _compile_notice(fresh):
            jobs = [job for e in entries for job in _jobs(e, pieces_for)]
            _compile(jobs)
        _warm.update(fresh)
        return jobs
    jobs = [job for e in entries for job in _jobs(e, pieces_for)]
    missing = [job for job in jobs if (job[0], job[1]) not in _ready]
    if missing:  # e.g. a truncated normal reaching a region count not used before
        with _compile_notice({(_KERNEL_DIST[job[0]], job[1]) for job in missing}):
            _compile(missing)
    return jobs


def fill(out: torch.Tensor, segments: Sequence[Segment], params: KernelParams, key: int,
         stream: int, draw_round: int = 0) -> None:
    """Fill ``segments`` of ``out`` (a CPU tensor) with the stream of (key, stream)."""
    entry = (out, segments, params, key, stream, draw_round)
    if len(segments) != 1 or segments[0].numel >= PARALLEL_THRESHOLD:
        fill_grouped([entry])
        return
    # Small: on the calling thread, without the pool.
    if (params.dist, out.dtype) in _warm:
        kernel, dargs = _param_args(params, out.dtype == torch.float64)
        if (kernel, out.dtype) in _ready:  # the common case, kept lean
            s = segments[0]
            c2, c3 = C.stream_words(stream, draw_round)
            kernel(_flat_array(out, s.m_base + (s.n_rows - 1) * s.m_row_stride + s.row_len),
                   s.m_base, s.m_row_stride, s.g_base, s.g_row_stride, s.row_len, 0, s.numel,
                   U(key & 0xFFFFFFFF), U(key >> 32), U(c2), U(c3), *dargs)
            return
    _run(_prepared_jobs([entry], lambda total: 1), 1)


#: Elements per job of a large grouped fill (so that a progress bar can move).
GROUPED_CHUNK = 1 << 22


def fill_grouped(entries, progress: bool = False) -> None:
    """Fill many ``(out, segments, params, key, stream, draw_round)`` entries on the CPU.

    The jobs of all entries are shared by the calling thread and the pool's threads; with
    ``progress``, a progress bar appears once the fill has taken two seconds.
    """
    threads = _threads()

    def pieces_for(total: int) -> int:
        if total < PARALLEL_THRESHOLD:
            return 1
        return max(threads, -(-total // GROUPED_CHUNK)) if progress else threads

    jobs = _prepared_jobs(entries, pieces_for)
    if not progress:
        _run(jobs, threads)
        return
    from tqdm.auto import tqdm

    with tqdm(total=sum(_size(job) for job in jobs), unit="el", unit_scale=True,
              desc="fastinit", delay=2.0, mininterval=0.5, leave=False) as bar:
        _run(jobs, threads, lambda job: bar.update(_size(job)))


def _size(job: tuple) -> int:
    """Elements a job writes."""
    return job[2][7] - job[2][6]


def _run(jobs: list[tuple], threads: int, done=None) -> None:
    """Run every job: the caller works too (a pool thread takes tens of
    microseconds to wake up), pool threads help when there is more than one job and the
    jobs write :data:`PARALLEL_THRESHOLD` elements or more in all (below that, threads
    taking turns at the interpreter's lock for each tiny job cost more than the fills)."""
    if threads > 1 and len(jobs) > 1 and sum(_size(job) for job in jobs) < PARALLEL_THRESHOLD:
        threads = 1
    lock = threading.Lock()
    order = iter(range(len(jobs)))

    def work() -> None:
        while True:
            with lock:
                i = next(order, None)
            if i is None:
                return
            kernel, _, args, touch = jobs[i]
            if touch is not None:
                memory.populate(*touch)
            kernel(*args)
            if done is not None:
                done(jobs[i])

    helpers = [_executor().submit(work) for _ in range(min(threads, len(jobs)) - 1)]
    try:
        work()
    finally:
        # never return - nor unwind an error or a KeyboardInterrupt - while a pool thread
        # still writes: the memory it writes may be freed by the caller right after
        with lock:
            for _ in order:  # the jobs nobody started are not started
                pass
        futures.wait(helpers)
    for h in helpers:
        h.result()


def philox_words(key: int, stream: int, groups: np.ndarray, draw_round: int = 0,
                 rounds: int = C.PHILOX_ROUNDS) -> np.ndarray:
    """Raw Philox words of element groups, shape (len(groups), 4) (for tests and tools)."""
    k0, k1 = C.key_words(key)
    c2, c3 = C.stream_words(stream, draw_round)
    groups = np.ascontiguousarray(groups, dtype=np.uint64)
    return _words(groups, U(k0), U(k1), U(c2), U(c3), rounds)


@_cached_jit()
def _words(groups, k0, k1, c2, c3, rounds):
    out = np.empty((groups.size, 4), dtype=np.uint32)
    for i in range(groups.size):
        g = groups[i]
        w = _philox_once(U(g & _LO32), U(g >> _SH32), c2, c3, k0, k1, rounds)
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = w
    return out


@_cached_jit()
def _philox_once(c0, c1, c2, c3, k0, k1, rounds):
    if rounds == _ROUNDS:  # the fills' own Philox
        return _philox_rounds(c0, c1, c2, c3, k0, k1)
    return philox4x32(c0, c1, c2, c3, k0, k1, rounds)


def philox_block(counter: Sequence[int], key: Sequence[int], rounds: int) -> tuple[int, ...]:
    """Philox4x32 of one raw (counter, key) pair, for the known-answer tests."""
    c = [U(x) for x in counter]
    return tuple(int(x) for x in _philox_once(c[0], c[1], c[2], c[3], U(key[0]), U(key[1]), rounds))
