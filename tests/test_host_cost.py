"""The host cost of ``empty_init`` + ``materialize`` grows linearly with the number of
tensors (fastinit's bookkeeping is per tensor: a cost per tensor that grows with the
number of tensors already seen - a count over every pending write on each operation, a
scan of every tensor per write - makes models of many small tensors slow quadratically).

The test builds models of ``SMALL`` and ``LARGE`` tiny parameters (``K = LARGE / SMALL``
times as many) and compares the CPU time each takes. For a cost ``T(n) = a n + b n^2``
the ratio ``T(LARGE) / T(SMALL)`` is ``K (1 + K q) / (1 + q)`` with ``q = b SMALL / a``
(the quadratic part's share at ``SMALL`` tensors): ``K`` when linear, up to ``K^2``.

The threshold is ``K * NOISE``. ``NOISE`` bounds how far two timings of the same work
can disagree on a shared machine: each timing is the minimum CPU time of ``REPEATS``
builds (CPU time: other processes' load does not count; the minimum: interruptions only
add), and is taken to be within 25% of its true value, so a ratio of two is within
``1.25 / 0.75 = 5/3`` of the true ratio. A quadratic part fails the test once
``K (1 + K q) / (1 + q) > K * NOISE``, i.e. ``q > (NOISE - 1) / (K - NOISE)``: with
``K = 32`` a quadratic part of 2.2% of the linear cost at ``SMALL`` tensors (70% of it
at ``LARGE``). A constant cost per call (``T(n) = c + a n``) only lowers the ratio.
About 9 s of CPU time.

Also: the collector is paused while materialize runs (its bookkeeping allocates many small
objects) and restored after it, an error included.
"""
import gc
import time

import pytest
import torch
from torch import nn

import fastinit
from fastinit.materialize import materialize

SMALL, LARGE = 500, 16000
K = LARGE // SMALL
NOISE = 1.25 / 0.75
REPEATS = 3


class _Tiny(torch.nn.Module):
    """``count`` parameters of 4 elements, each drawn at construction: half made first
    and drawn after (the benchmark's small-tensor model,
    ``fastinit.cli.bench._SmallTensors``), half drawn as each is made (as layers that
    run ``reset_parameters()`` in their ``__init__`` do: the replay then meets new
    tensors while earlier fills are pending)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.params = torch.nn.ParameterList(
            torch.nn.Parameter(torch.empty(4)) for _ in range(count // 2))
        for p in self.params:
            torch.nn.init.normal_(p, std=0.02)
        for _ in range(count - count // 2):
            p = torch.nn.Parameter(torch.empty(4))
            torch.nn.init.normal_(p, std=0.02)
            self.params.append(p)


def _cpu_seconds(count: int) -> float:
    """CPU time of one ``empty_init`` build and ``materialize`` of ``count`` tensors."""
    gc.collect()
    start = time.process_time()
    with fastinit.empty_init():
        model = _Tiny(count)
    fastinit.materialize(model, "cpu", seed=0, progress=False)
    elapsed = time.process_time() - start
    assert len(list(model.parameters())) == count and not model.params[0].is_meta
    return elapsed


def test_host_cost_is_linear_in_the_number_of_tensors():
    _cpu_seconds(SMALL)  # warm-up: kernels loaded, caches of first calls filled
    small, large = [], []
    for _ in range(REPEATS):  # interleaved: a slow spell of the machine hits both
        small.append(_cpu_seconds(SMALL))
        large.append(_cpu_seconds(LARGE))
    ratio = min(large) / min(small)
    assert ratio < K * NOISE, (
        f"{LARGE} tensors took {ratio:.1f}x the CPU time of {SMALL} (linear: {K}x; "
        f"limit {K * NOISE:.1f}x): a per-tensor cost grows with the number of tensors "
        f"({min(small) / SMALL * 1e6:.0f} us/tensor at {SMALL}, "
        f"{min(large) / LARGE * 1e6:.0f} us/tensor at {LARGE})")


SEED = 99


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
