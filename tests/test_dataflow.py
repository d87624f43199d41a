"""No uninitialized memory, as a property of the data flow of a recorded construction.

The oracle for garbage: replay a construction with unwritten memory poisoned by two
different patterns; any element that differs depends on memory nobody wrote. materialize
must refuse exactly the models where such an element reaches a parameter or buffer."""
from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import fastinit
from tests.common import EARLY, Poison


def _poisoned(cls, value: float) -> dict[str, torch.Tensor]:
    """The model replayed with its unwritten memory holding ``value`` (the data-flow
    check switched off: the oracle must see what would be handed out)."""
    from unittest import mock

    materialize_module = sys.modules["fastinit.materialize"]
    with fastinit.empty_init():
        model = cls()
    with Poison(value), mock.patch.object(materialize_module, "unwritten", lambda *a: {}):
        fastinit.materialize(model, "cpu", seed=0)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _depends_on_garbage(cls) -> list[str]:
    a, b = _poisoned(cls, 1.0e30), _poisoned(cls, -3.0)
    return [k for k in a if not torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8))]


class KeywordAndPartial(nn.Module):
    """The issue's repro: an init call with ``tensor=``, and a partial made at import that
    writes a temporary copied into a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(256, 256, bias=False)
        self.f = nn.Linear(256, 256, bias=False)
        t = self.f.weight.new_empty(256, 256)
        nn.init.trunc_normal_(tensor=self.lin.weight, std=0.02)
        EARLY(t)
        self.f.weight.data.copy_(t)


def test_keyword_tensor_and_partials_are_recorded_as_writes():
    with fastinit.empty_init():
        m = KeywordAndPartial()
    fastinit.materialize(m, "cpu", seed=0)
    for w in (m.lin.weight, m.f.weight):
        assert w.isfinite().all() and w.abs().max() <= 2.0  # trunc_normal_'s default bounds
        assert abs(w.std().item() - 0.02) < 0.001  # kaiming-uniform's 0.036 if lost
    assert _depends_on_garbage(KeywordAndPartial) == []


class FusedQKV(nn.Module):
    """Temporaries written, then fused through cat and copy_ (torchtitan's wqkv)."""

    def __init__(self, write_k: bool = True) -> None:
        super().__init__()
        self.wqkv = nn.Linear(16, 48, bias=False)
        q, k, v = (self.wqkv.weight.new_empty(16, 16) for _ in range(3))
        nn.init.normal_(q, std=0.02)
        if write_k:
            nn.init.normal_(tensor=k, std=0.02)
        EARLY(v)
        self.wqkv.weight.data.copy_(torch.cat([q, k, v]))


class Unwritten(FusedQKV):
    def __init__(self) -> None:
        super().__init__(write_k=False)


class ViewOfUnwritten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(8, 8))
        tmp = torch.empty(64)
        with torch.no_grad():
            self.w.copy_(tmp.view(8, 8) * 2 + 1)


class PartlyWrittenTemporary(nn.Module):
    """Half a temporary written, all of it used: only the other half is garbage."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(8, 8))
        tmp = torch.empty(8, 8)
        tmp[:4] = 1.0
        with torch.no_grad():
            self.w.copy_(tmp)


class GarbageOverwritten(nn.Module):
    """A parameter computed from garbage, then written whole: fine, as eagerly."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(8, 8).mul(2))
        nn.init.ones_(self.w)


@pytest.mark.parametrize("cls", [FusedQKV, GarbageOverwritten])
def test_values_from_written_memory_are_accepted(cls):
    assert _depends_on_garbage(cls) == []
    with fastinit.empty_init():
        m = cls()
    fastinit.materialize(m, "cpu", seed=0)
    assert all(t.isfinite().all() for t in m.state_dict().values())


@pytest.mark.parametrize("cls, name, how", [
    (Unwritten, "wqkv.weight", "new_empty and never written, through cat, through copy_"),
    (ViewOfUnwritten, "w", "empty and never written"),
    (PartlyWrittenTemporary, "w", "empty and never written"),
])
def test_values_from_memory_nobody_wrote_are_refused_naming_the_tensor(cls, name, how):
    assert name in _depends_on_garbage(cls)  # the oracle agrees: garbage reaches it
    with fastinit.empty_init():
        m = cls()
    before = {k: v for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match=rf"{name} \((partly )?computed from memory made by {how}"):
        fastinit.materialize(m, "cpu", seed=0)
    assert all(v.is_meta for v in m.state_dict().values())  # left as it was
    assert m.state_dict().keys() == before.keys()


class ReadOfUnwritten(nn.Module):
    """A value read from a temporary nobody wrote decides a buffer (``fill_`` of an
    ``.item()``): the garbage leaves no trace in the buffer's own data flow."""

    def __init__(self) -> None:
        super().__init__()
        tmp = torch.empty(8)
        self.register_buffer("b", torch.zeros(8))
        self.b.fill_(tmp.abs().sum().item() % 5)


@pytest.mark.parametrize("value", [1.0, -3.0, float("nan")])
def test_a_value_read_from_memory_nobody_wrote_is_refused(value):
    # whatever the memory holds - the same at construction and in the replay included,
    # where the value read checks out - the program is refused, before any allocation
    with Poison(value):
        with fastinit.empty_init():
            m = ReadOfUnwritten()
        with pytest.raises(ValueError, match=r"read the values of a tensor \(shape \(\), "
                           r"torch.float32.* computed from memory made by empty and never "
                           r"written, through abs, through sum"):
            fastinit.materialize(m, "cpu", seed=0)
    assert m.b.is_meta


def test_partly_garbage_names_the_part():
    with fastinit.empty_init():
        m = PartlyWrittenTemporary()
    with pytest.raises(ValueError, match=r"w \(partly computed from"):
        fastinit.materialize(m, "cpu", seed=0)
