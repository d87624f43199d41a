"""Helpers the test modules share: bitwise comparisons, a grouped-fill counter, a poisoning
mode, the three basic random functions and an init call bound at import.

(Kept out of ``conftest.py``: pytest imports that file by itself, so importing it again as
``tests.conftest`` would load a second copy.)
"""
from __future__ import annotations

import functools

import torch
from torch.overrides import TorchFunctionMode

import fastinit

#: The three basic random functions with their default arguments (fn, kwargs).
FNS = [
    (fastinit.uniform_, {}),
    (fastinit.normal_, {}),
    (fastinit.trunc_normal_, {}),
]

#: An init call made a partial at import, as model code does (``trunc_normal_(std=0.02)``
#: bound before any fastinit block is entered).
EARLY = functools.partial(torch.nn.init.trunc_normal_, std=0.02)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns of a floating-point tensor (for bitwise comparisons)."""
    view = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(view)


def assert_bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    ba, bb = bits(a.cpu()), bits(b.cpu())
    diff = (ba != bb).nonzero()
    assert diff.numel() == 0, (
        f"{diff.shape[0]} of {a.numel()} elements differ; first at {diff[0].tolist()}: "
        f"{a.cpu()[tuple(diff[0])].item()!r} vs {b.cpu()[tuple(diff[0])].item()!r}"
    )


def count_grouped_fills(monkeypatch) -> list[int]:
    """Count ``fastinit.backends.fill_grouped`` calls: returns a list that gets the number
    of entries of each call."""
    from fastinit import backends

    calls: list[int] = []
    original = backends.fill_grouped

    def counting(entries, **kw):
        calls.append(len(entries))
        return original(entries, **kw)

    monkeypatch.setattr(backends, "fill_grouped", counting)
    return calls


class Poison(TorchFunctionMode):
    """Memory ``torch.empty`` & co. make holds ``value`` (floating dtypes; 7 in integer
    ones): unwritten memory that reaches a result shows there."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        from fastinit.construction import _EMPTY

        out = func(*args, **(kwargs or {}))
        if func in _EMPTY and isinstance(out, torch.Tensor) and not out.is_meta:
            with torch.no_grad():
                out.fill_(self.value if out.is_floating_point() else 7)
        return out
