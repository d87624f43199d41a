"""materialize's fresh memory and host cost: first touch fused with the fill, huge pages
where they help, the collector paused, fastinit's modes off the stack for its own work."""
from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

import fastinit
from fastinit import memory, route
from fastinit.intercept import recording_into
from fastinit.materialize import CoveringRouter as _Router, Coverage, materialize
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


class _SeesCollector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(4))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.seen = gc.isenabled()
        nn.init.normal_(self.w)


def test_collector_paused_while_materialize_runs_and_restored():
    assert gc.isenabled()
    with torch.device("meta"):
        m = _SeesCollector()
    materialize(m, "cpu", seed=SEED, progress=False)
    assert m.seen is False and gc.isenabled()
    gc.disable()
    try:  # a collector the caller turned off stays off
        with torch.device("meta"):
            m = _SeesCollector()
        materialize(m, "cpu", seed=SEED, progress=False)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_collector_restored_after_an_error():
    class Unwritten(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.empty(4))  # never written: materialize refuses

    with torch.device("meta"):
        m = Unwritten()
    with pytest.raises(ValueError, match="uninitialized"):
        materialize(m, "cpu", seed=SEED, progress=False, accept_reset_defaults=True)
    assert gc.isenabled()


def test_own_work_runs_without_fastinit_modes():
    """fastinit's bookkeeping inside a recording (a replay resolving its tensors) runs with
    fastinit's modes - the recording's device context included - off the stack, and finds
    them back afterwards."""
    router = _Router(SEED, {}, (), Coverage())
    with recording_into(router, torch.device("meta")):
        depth = torch._C._len_torch_function_stack()
        assert depth == 2  # the device context and the init mode
        assert torch.empty(2).is_meta
        with route.internal():
            assert torch._C._len_torch_function_stack() == 0
            assert route.inside()
            assert not torch.empty(2).is_meta
        assert torch._C._len_torch_function_stack() == depth and not route.inside()
        assert torch.empty(2).is_meta  # the device context applies again
