"""Fresh memory for materialize: first touch as cheap as the OS allows.

A model materialized on the CPU writes memory nobody has touched: every 4 KiB page faults
on its first write, and the kernel clears it before the fill writes it - the cost of
``torch.empty(n).zero_()`` on fresh memory, several times its cost on memory already
touched. Two things make that first touch cheaper, both for materialize's own storages
only (torch's allocator and every other allocation keep their behaviour):

* **Populate, chunk by chunk, inside the fill.** Inside :func:`fresh_storages`,
  :func:`advise_fresh` registers each new storage (of :data:`TOUCH_MIN_BYTES` or more);
  the CPU backend then splits its fill into chunks of :data:`TOUCH_CHUNK_BYTES` and, in
  the thread that fills a chunk, maps the chunk's pages in one system call
  (``MADV_POPULATE_WRITE``, :func:`populate`) right before writing it: no fault per page,
  the pages the kernel has just cleared still in cache, the first touch spread over the
  fill's threads. No zeroing pass and no second pass: the values are the fill's.
* **Transparent huge pages** (one fault clears 2 MiB) where they help
  (:func:`huge_pages_help`): Linux gives them to memory that asks (``madvise``) when
  ``/sys/kernel/mm/transparent_hugepage/enabled`` is ``madvise``, the common default.
  Not by default on a virtual machine that hands free huge-page blocks back to its host
  (:func:`reports_free_huge_blocks`): there a huge page is memory the host has discarded,
  and touching it costs more than 4 KiB pages do.

``FASTINIT_HUGE_PAGES`` (``auto``, ``1``, ``0``) and ``FASTINIT_FIRST_TOUCH`` (``0``: off)
in the environment, or :data:`HUGE_PAGES` and :data:`FIRST_TOUCH`, choose, to measure
with and without.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Iterator

import torch

__all__ = ["HUGE_PAGES", "FIRST_TOUCH", "HUGE_PAGE_MIN_BYTES", "TOUCH_MIN_BYTES",
           "ADVISED_MIN_BYTES",
           "TOUCH_CHUNK_BYTES", "thp_mode", "reports_free_huge_blocks", "huge_pages_help",
           "advise_fresh", "fresh_storages", "is_fresh", "populate"]


def _setting(name: str) -> str:
    return os.environ.get(name, "auto").strip().lower()


#: Transparent huge pages for materialize's CPU storages: ``"auto"`` (where they make first
#: touch cheaper, see :func:`huge_pages_help`), ``"1"`` (wherever the kernel gives them on
#: request), ``"0"`` (never). From ``FASTINIT_HUGE_PAGES``.
HUGE_PAGES = _setting("FASTINIT_HUGE_PAGES")

#: Whether the CPU fill of a fresh storage populates each chunk's pages in one system call
#: right before writing it (``MADV_POPULATE_WRITE``, Linux 5.14) instead of taking one page
#: fault per 4 KiB. From ``FASTINIT_FIRST_TOUCH`` (``"0"``: off).
FIRST_TOUCH = _setting("FASTINIT_FIRST_TOUCH") not in ("0", "false", "no", "off")

#: Storages smaller than this get no huge-page advice. glibc serves allocations below its
#: mmap threshold (at most 32 MiB) from the heap, which later allocations reuse: only
#: allocations that get a mapping of their own are advised, so that no other memory of
#: the process changes behaviour.
HUGE_PAGE_MIN_BYTES = 32 << 20

#: Fresh storages smaller than this are touched by the fill as any memory is (small
#: allocations mostly reuse heap memory that is already there).
TOUCH_MIN_BYTES = 1 << 20

#: Storages smaller than this get nothing from :func:`advise_fresh` (neither huge-page
#: advice nor a first-touch registration): callers with many small storages skip the call.
ADVISED_MIN_BYTES = min(HUGE_PAGE_MIN_BYTES, TOUCH_MIN_BYTES)

#: The fill of a fresh storage populates and writes it in chunks of this many bytes. Each
#: chunk costs a system call and a kernel call from Python (microseconds): at 1 MiB that
#: was about a tenth of a 0.5B float32 materialize on a 2-core Intel VM (1.30-1.36x the
#: ``zero_()`` of fresh memory; 1.15-1.26x with 4 MiB chunks, no better at 8-64 MiB;
#: bench/RESULTS.md). A 4 MiB chunk is still small against a last-level cache.
TOUCH_CHUNK_BYTES = 4 << 20

_HUGE = 2 << 20  # the x86-64 / arm64 (4 KiB base pages) PMD size
_PAGE = 4096
_MADV_HUGEPAGE = 14
_MADV_POPULATE_WRITE = 23


@functools.lru_cache(maxsize=1)
def thp_mode() -> str:
    """The kernel's transparent-huge-page mode: ``"always"``, ``"madvise"``, ``"never"``,
    or ``""`` where there is none (not Linux, no THP)."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else ""


@functools.lru_cache(maxsize=1)
def reports_free_huge_blocks() -> bool:
    """Whether this (virtual) machine hands free memory back to its host in huge-page
    sized blocks: a virtio balloon with free page reporting (``VIRTIO_BALLOON_F_REPORTING``,
    feature bit 5), which reports free blocks of ``page_reporting_order`` (9: 2 MiB) and up.

    There a huge page is, after a few seconds free, memory the host has discarded: its
    first touch costs the host a fault for each of its 4 KiB pages (measured on a 2-core
    Firecracker VM: 5.9 s to touch 1 GiB of huge pages against 1.0 s of 4 KiB pages).
    """
    try:
        order = int(Path("/sys/module/page_reporting/parameters/page_reporting_order").read_text())
    except (OSError, ValueError):
        order = 9
    if order > 9:
        return False
    for path in Path("/sys/bus/virtio/drivers/virtio_balloon").glob("virtio*/features"):
        try:
            bits = path.read_text().strip()
        except OSError:
            continue
        if len(bits) > 5 and bits[5] == "1":
            return True
    return False


def huge_pages_help() -> bool:
    """Whether materialize asks for huge pages (see :data:`HUGE_PAGES`): the kernel gives
    them on request (mode ``madvise``; with ``always`` every allocation has them already),
    and, by default, the machine does not hand free huge-page blocks back to a host
    (:func:`reports_free_huge_blocks`)."""
    if HUGE_PAGES in ("0", "false", "no", "off") or thp_mode() != "madvise":
        return False
    return HUGE_PAGES in ("1", "true", "yes", "on") or not reports_free_huge_blocks()


@functools.lru_cache(maxsize=1)
def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).madvise  # releases the GIL while it runs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def advise_fresh(memory: torch.Tensor | torch.UntypedStorage) -> bool:
    """Prepare a CPU storage that has not been written yet for its first touch.

    Asks for transparent huge pages on its 2 MiB-aligned interior where they help
    (:func:`huge_pages_help`) and it is at least :data:`HUGE_PAGE_MIN_BYTES`; and, inside
    :func:`fresh_storages`, registers it so that the CPU fill populates its pages chunk by
    chunk (:func:`populate`). Returns whether huge pages were asked for. Never raises:
    this is an optimization, and memory without it behaves as it always does.
    """
    storage = memory.untyped_storage() if isinstance(memory, torch.Tensor) else memory
    if storage.device.type != "cpu":
        return False
    nbytes = storage.nbytes()
    if _FRESH_ACTIVE[0] and nbytes >= TOUCH_MIN_BYTES:
        _FRESH[storage.data_ptr()] = nbytes
    if nbytes < HUGE_PAGE_MIN_BYTES or not huge_pages_help():
        return False
    madvise = _madvise()
    ptr = storage.data_ptr()
    start = (ptr + _HUGE - 1) & ~(_HUGE - 1)
    end = (ptr + nbytes) & ~(_HUGE - 1)
    if madvise is None or end <= start:  # no madvise, or no whole huge page inside
        return False
    return madvise(start, end - start, _MADV_HUGEPAGE) == 0


#: data_ptr -> bytes of the fresh storages of the materialize calls running now, and
#: how many such calls run (the registry is emptied when the last one ends).
_FRESH: dict[int, int] = {}
_FRESH_ACTIVE = [0]


@contextlib.contextmanager
def fresh_storages() -> Iterator[None]:
    """The storages :func:`advise_fresh` sees inside the block are fresh for the CPU fill
    (:func:`is_fresh`) until the block ends. Only a hint: a storage taken for fresh that
    is not (its address reused after it was freed) is populated for nothing, its values
    are never changed."""
    _FRESH_ACTIVE[0] += 1
    try:
        yield
    finally:
        _FRESH_ACTIVE[0] -= 1
        if not _FRESH_ACTIVE[0]:
            _FRESH.clear()


def is_fresh(t: torch.Tensor) -> bool:
    """Whether ``t``'s memory is a fresh storage (:func:`fresh_storages`) the fill should
    populate chunk by chunk."""
    return FIRST_TOUCH and bool(_FRESH) and t.untyped_storage().data_ptr() in _FRESH


def populate(address: int, nbytes: int) -> None:
    """Map the pages of ``[address, address + nbytes)`` writable in one system call, as
    writing each of them would (``MADV_POPULATE_WRITE``; the values are not changed). Does
    nothing where the kernel lacks it (before Linux 5.14), and stops trying there."""
    global FIRST_TOUCH
    madvise = _madvise()
    if madvise is None or nbytes <= 0:
        return
    start = address & ~(_PAGE - 1)
    if madvise(start, address + nbytes - start, _MADV_POPULATE_WRITE) != 0:
        import ctypes
        import errno

        if ctypes.get_errno() == errno.EINVAL:
            FIRST_TOUCH = False
