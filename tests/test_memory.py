"""``fastinit.memory``: materialize's fresh memory, first touch fused with the fill (the same
values, populated chunk by chunk), huge pages where they help and for large storages only."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fastinit
from fastinit import memory
from fastinit.materialize import materialize
from tests.common import assert_bitwise_equal

SEED = 99


class _Big(nn.Module):
    """One parameter of 3 MiB (fresh storage, populated in chunks) and small ones."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Linear(768, 1024)  # 3 MiB of float32 weight
        self.small = nn.Linear(8, 4)
        self.norm = nn.LayerNorm(4)


def _materialized(build, monkeypatch, first_touch: bool, calls: list | None = None):
    monkeypatch.setattr(memory, "FIRST_TOUCH", first_touch)
    if calls is not None:
        real = memory.populate
        monkeypatch.setattr(memory, "populate",
                            lambda a, n: (calls.append((a, n)), real(a, n))[1])
    model = build()
    return materialize(model, "cpu", seed=SEED, progress=False)


@pytest.mark.parametrize("how", ["meta", "empty_init"])
def test_fresh_storages_are_populated_chunk_by_chunk_with_the_same_values(monkeypatch, how):
    def build():
        if how == "meta":
            with torch.device("meta"):
                return _Big()
        with fastinit.empty_init():
            return _Big()

    calls: list = []
    monkeypatch.setattr(memory, "TOUCH_CHUNK_BYTES", 1 << 20)  # the 3 MiB weight: 3 chunks
    touched = _materialized(build, monkeypatch, True, calls)
    plain = _materialized(build, monkeypatch, False)
    for (name, a), (_, b) in zip(touched.state_dict().items(), plain.state_dict().items()):
        assert_bitwise_equal(a, b), name
    w = touched.big.weight
    start, nbytes = w.data_ptr(), w.numel() * w.element_size()
    # the big weight's bytes, exactly once, in chunks of at most TOUCH_CHUNK_BYTES
    mine = sorted(c for c in calls if start <= c[0] < start + nbytes)
    assert sum(n for _, n in mine) == nbytes
    assert all(n <= memory.TOUCH_CHUNK_BYTES for _, n in mine)
    assert all(a + n == b for (a, n), (b, _) in zip(mine, mine[1:]))  # no gap, no overlap
    assert len(mine) >= 3
    # small storages are not populated (heap memory, mostly touched already)
    s = touched.small.weight
    assert not any(s.data_ptr() <= a < s.data_ptr() + 128 for a, _ in calls)
    assert not memory._FRESH  # forgotten once materialize returns


def test_plain_fills_are_not_populated(monkeypatch):
    calls: list = []
    monkeypatch.setattr(memory, "populate", lambda a, n: calls.append((a, n)))
    t = torch.empty(1 << 20)
    fastinit.normal_(t, seed=1)  # memory materialize did not allocate: no system calls
    assert calls == []


def test_huge_pages_only_where_they_help(monkeypatch):
    monkeypatch.setattr(memory, "thp_mode", lambda: "madvise")
    monkeypatch.setattr(memory, "reports_free_huge_blocks", lambda: True)
    monkeypatch.setattr(memory, "HUGE_PAGES", "auto")
    assert not memory.huge_pages_help()  # the host discards free huge blocks: 4 KiB pages
    monkeypatch.setattr(memory, "HUGE_PAGES", "1")
    assert memory.huge_pages_help()
    monkeypatch.setattr(memory, "HUGE_PAGES", "auto")
    monkeypatch.setattr(memory, "reports_free_huge_blocks", lambda: False)
    assert memory.huge_pages_help()
    monkeypatch.setattr(memory, "HUGE_PAGES", "0")
    assert not memory.huge_pages_help()
    monkeypatch.setattr(memory, "HUGE_PAGES", "1")
    for mode in ("always", "never", ""):  # given to all memory, or to none
        monkeypatch.setattr(memory, "thp_mode", lambda mode=mode: mode)
        assert not memory.huge_pages_help()


def test_huge_page_advice_is_for_large_storages_only(monkeypatch):
    advised = []
    monkeypatch.setattr(memory, "huge_pages_help", lambda: True)
    monkeypatch.setattr(memory, "_madvise",
                        lambda: lambda a, n, how: advised.append((a, n, how)) or 0)
    assert not memory.advise_fresh(torch.empty(1 << 20))  # 4 MiB: heap memory
    assert advised == []
    big = torch.empty((memory.HUGE_PAGE_MIN_BYTES + (4 << 20)) // 4)
    assert memory.advise_fresh(big)
    (a, n, how), = advised
    assert how == memory._MADV_HUGEPAGE
    assert a % (2 << 20) == 0 and n % (2 << 20) == 0  # whole huge pages, inside the storage
    assert big.data_ptr() <= a and a + n <= big.data_ptr() + big.numel() * 4


