"""Element coverage (``fastinit.coverage``): which elements of the tensors to initialize
have been written (:class:`~fastinit.coverage.Coverage`), how torch's in-place
operations mark them (:func:`~fastinit.coverage.mark_for`), and the covering router on a
plain meta build, where the init code runs on real memory: temporaries it writes are
accepted, values computed from memory nobody wrote are refused naming the tensor."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fastinit
from fastinit.coverage import PARTIAL_WRITES, WHOLE_WRITES, Coverage, mark_for
from tests.common import EARLY


# --- Coverage on its own ------------------------------------------------------------------


def test_partial_writes_leave_what_missing_names():
    w, b, s = torch.empty(4, 4), torch.empty(3), torch.empty(2)
    cov = Coverage({"w": w, "b": b, "s": s})
    assert cov.missing() == {"w": "never written", "b": "never written", "s": "never written"}
    cov.wrote(w[0])
    cov.wrote(w[1:, ::2])
    cov.wrote(s)
    assert cov.missing() == {"w": "partly written", "b": "never written"}
    assert cov.unwritten(w[1:, ::2]) is None and cov.unwritten(w[1]) == "w"
    cov.wrote(w[1:, 1::2])  # the rest of w
    cov.wrote(b, mark_for("__setitem__", (b, 0, 1.0), {}))
    cov.wrote(b, mark_for("masked_fill_", (b, torch.tensor([False, False, True]), 0.0), {}))
    assert cov.missing() == {"b": "partly written"}  # b[1] is not written
    cov.wrote(b[1:2])
    assert cov.missing() == {}


def test_a_restricted_tensor_names_where_its_garbage_came_from():
    w = torch.empty(2, 3)
    cov = Coverage({"w": w})
    cov.wrote(w)
    assert cov.missing() == {}
    cov.restrict("w", torch.tensor([[True, True, True], [False, False, False]]), "empty")
    assert cov.missing() == {"w": "partly computed from empty"}
    cov.restrict("w", None, "empty")
    assert cov.missing() == {"w": "computed from empty"}


def test_mark_for_table():
    assert all(mark_for(name, (), {}) is None for name in WHOLE_WRITES)
    assert {"fill_", "zero_", "copy_", "normal_", "uniform_"} <= WHOLE_WRITES
    assert mark_for("mul_", (), {}) == "skip" and mark_for("add_", (), {}) == "skip"
    assert set(PARTIAL_WRITES) == {"__setitem__", "index_fill_", "index_copy_", "masked_fill_",
                                   "index_put_", "scatter_"}

    def marked(name, *args):
        m = torch.zeros(3, 4, dtype=torch.bool)
        mark_for(name, (None, *args), {})(m)
        return m.nonzero().tolist()

    assert marked("__setitem__", (slice(None), 1), 0.0) == [[0, 1], [1, 1], [2, 1]]
    assert marked("index_fill_", 1, torch.tensor([0, 2]), 5.0) == [
        [0, 0], [0, 2], [1, 0], [1, 2], [2, 0], [2, 2]]
    assert marked("index_copy_", 0, torch.tensor([1]), torch.ones(1, 4)) == [
        [1, 0], [1, 1], [1, 2], [1, 3]]
    assert marked("masked_fill_", torch.eye(3, 4, dtype=torch.bool), 0.0) == [
        [0, 0], [1, 1], [2, 2]]
    assert marked("index_put_", (torch.tensor([0, 2]), torch.tensor([1, 3])),
                  torch.tensor(1.0)) == [[0, 1], [2, 3]]
    assert marked("scatter_", 1, torch.tensor([[3], [1], [0]]), 5.0) == [[0, 3], [1, 1], [2, 0]]


# --- the covering router on a plain meta build: the init code runs on real memory ---------


class PlainTemporaries(nn.Module):
    """An init_weights() (torchtitan's entry point) that fills temporaries and copies them
    in, or forgets to write some of them (``forget``)."""

    def __init__(self, forget: str = "") -> None:
        super().__init__()
        self.forget = forget
        self.f = nn.Linear(16, 16, bias=False)
        self.g = nn.Linear(16, 8, bias=False)
        self.h = nn.Linear(16, 4, bias=False)

    def init_weights(self) -> None:
        with torch.no_grad():
            t = self.f.weight.new_empty(16, 16)
            if self.forget != "f":
                EARLY(t)
            self.f.weight.copy_(t)
            q, k = torch.empty(4, 16), torch.zeros(4, 16)
            if self.forget != "g":
                q[:2].normal_()
                nn.init.uniform_(q[2:])
            self.g.weight.copy_(torch.cat([q, k]))
            tmp = torch.empty(4, 16)
            tmp.fill_(0.5)
            self.h.weight.data = tmp * 2


def test_plain_meta_temporaries_written_are_accepted():
    with torch.device("meta"):
        m = PlainTemporaries()
    fastinit.materialize(m, "cpu", seed=0)
    assert abs(m.f.weight.std().item() - 0.02) < 0.002
    assert (m.g.weight[4:] == 0).all() and m.g.weight[:4].isfinite().all()
    assert (m.h.weight == 1.0).all()


@pytest.mark.parametrize("forget, name, how", [
    ("f", "f.weight", "new_empty and never written, through copy_"),
    ("g", "g.weight", "empty and never written, through cat, through copy_"),
])
def test_plain_meta_values_from_memory_nobody_wrote_are_refused(forget, name, how):
    with torch.device("meta"):
        m = PlainTemporaries(forget)
    with pytest.raises(ValueError, match=rf"{name} \(computed from memory made by {how}\)"):
        fastinit.materialize(m, "cpu", seed=0)
    assert all(t.is_meta for t in m.state_dict().values())
