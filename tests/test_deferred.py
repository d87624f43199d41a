"""Deferred writes are exactly eager writes.

Two tiers:

* the :class:`~fastinit.deferred.Recorder` on its own: waves keep overlapping writes in
  order, writes covered later are dropped, disjoint writes share one grouped fill;
* randomized programs (a seeded generator, ``PROGRAMS`` of them): fills through
  ``torch.nn.init`` on views (transposed, sliced, strided, selected, channels_last,
  overlapping), partial overwrites, in-place updates, reads, ``torch.save``, pickling,
  safetensors, ``numpy()``, raw storage and ``data_ptr`` reads, exceptions leaving the
  block - each run under ``fastinit.patch()`` (eager) and ``fastinit.patch(deferred=True)``
  from the same torch seed. Every observation and every final tensor must be bitwise equal.
"""
from __future__ import annotations

import ctypes
import io
import math
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

import fastinit
from fastinit.deferred import Recorder
from fastinit.fill import Fill, TorchWrite
from fastinit.spec import InitSpec
from tests.common import assert_bitwise_equal, bits, count_grouped_fills

#: Randomized deferred-vs-eager programs run in CI.
PROGRAMS = 600


def _fill(t, spec=InitSpec.normal(0.0, 1.0), key=7, stream=0, base=None):
    return Fill(t, t if base is None else base, spec.kernel_params(t.dtype), key, stream)


def test_disjoint_writes_share_a_wave(monkeypatch):
    calls = count_grouped_fills(monkeypatch)
    w = torch.full((6, 8), math.nan)
    rec = Recorder()
    rec.add(_fill(w[0:2]))
    rec.add(_fill(w[2:4], key=8))
    rec.add(_fill(torch.empty(5), key=9))
    rec.flush()
    assert calls == [3]
    assert not w[:4].isnan().any() and w[4:].isnan().all()


def test_overlapping_writes_keep_their_order(monkeypatch):
    calls = count_grouped_fills(monkeypatch)
    w = torch.full((8, 8), math.nan)
    rec = Recorder()
    rec.add(_fill(w.t()))  # a transposed view: through a temporary, in its wave
    rec.add(_fill(w.t()[:, 0], spec=InitSpec.constant(0.0)))
    rec.add(_fill(w[3], key=1))
    rec.flush()
    # wave 0: the transposed fill (through a temporary); wave 1: the zeroed column (row 0
    # of w) and row 3, which overlap the first write but not each other: one grouped fill
    assert calls == [2]
    expected = torch.empty(8, 8)
    fastinit.fill.fill_tensor(expected.t(), InitSpec.normal(0.0, 1.0).kernel_params(torch.float32), 7)
    expected.t()[:, 0] = 0
    fastinit.fill.fill_tensor(expected[3], InitSpec.normal(0.0, 1.0).kernel_params(torch.float32), 1)
    assert_bitwise_equal(w, expected)


def test_a_covering_write_drops_the_covered_ones(monkeypatch):
    calls = count_grouped_fills(monkeypatch)
    w = torch.full((4, 4), math.nan)
    rec = Recorder()
    rec.add(_fill(w[1]))
    rec.add(_fill(w[:, 2], key=3))
    rec.add(_fill(w, key=5))  # covers both: they are never written
    assert len(rec) == 1
    rec.flush()
    assert calls == [1]
    expected = torch.empty(4, 4)
    fastinit.fill.fill_tensor(expected, InitSpec.normal(0.0, 1.0).kernel_params(torch.float32), 5)
    assert_bitwise_equal(w, expected)


def test_torch_writes_are_ordered_with_fills():
    w = torch.full((5, 5), math.nan)
    rec = Recorder()
    rec.add(_fill(w))
    rec.add(TorchWrite(w, lambda: w.diagonal().fill_(7.0), whole=False))
    rec.add(_fill(w[0], key=2))
    rec.flush()
    expected = torch.empty(5, 5)
    p = InitSpec.normal(0.0, 1.0).kernel_params(torch.float32)
    fastinit.fill.fill_tensor(expected, p, 7)
    expected.diagonal().fill_(7.0)
    fastinit.fill.fill_tensor(expected[0], p, 2)
    assert_bitwise_equal(w, expected)


def test_flushing_some_storages_keeps_the_others_pending():
    a, b = torch.full((4,), math.nan), torch.full((4,), math.nan)
    rec = Recorder()
    rec.add(_fill(a))
    rec.add(_fill(b))
    rec.flush(rec.pending([a[1:]]))
    assert not a.isnan().any() and b.isnan().all() and len(rec) == 1
    rec.flush()
    assert not b.isnan().any() and len(rec) == 0


def test_recording_moves_the_version_counter_now():
    w = torch.zeros(3)
    before = w._version
    rec = Recorder()
    rec.add(_fill(w))
    assert w._version > before
    rec.discard()


# --- randomized programs: deferred == eager --------------------------------------------------

_DTYPES = (torch.float32, torch.float32, torch.float64, torch.bfloat16, torch.float16)
_SHAPES = ((6, 5), (4, 8), (3, 4, 5), (2, 3, 4, 4), (7,), (5, 5))


def _make_tensors(rng: random.Random) -> dict[str, torch.Tensor]:
    out = {}
    for i in range(rng.randint(1, 3)):
        shape = rng.choice(_SHAPES)
        dtype = rng.choice(_DTYPES)
        if len(shape) == 4 and rng.random() < 0.5:
            t = torch.full(shape, math.nan, dtype=dtype).contiguous(
                memory_format=torch.channels_last)
        else:
            t = torch.full(shape, math.nan, dtype=dtype)
        out[f"t{i}"] = t
    return out


def _view(t: torch.Tensor, rng: random.Random) -> tuple[str, torch.Tensor]:
    """A random view of ``t`` (or ``t`` itself), with a description."""
    choices = ["whole"]
    if t.dim() >= 2:
        choices += ["t", "rows", "cols_strided", "select", "narrow", "permute"]
        if t.shape[0] == t.shape[1] or t.dim() == 2:
            choices.append("diagonal")
    if t.dim() == 1:
        choices += ["rows", "strided1", "expand"]
    kind = rng.choice(choices)
    if kind == "whole":
        return kind, t
    if kind == "t":
        return kind, t.transpose(0, 1)
    if kind == "rows":
        lo = rng.randrange(t.shape[0])
        hi = rng.randint(lo + 1, t.shape[0])
        return f"rows{lo}:{hi}", t[lo:hi]
    if kind == "cols_strided":
        return kind, t[:, ::2]
    if kind == "select":
        i = rng.randrange(t.shape[0])
        return f"select{i}", t.select(0, i)
    if kind == "narrow":
        k = rng.randint(1, t.shape[1])
        s = rng.randint(0, t.shape[1] - k)
        return f"narrow{s}+{k}", t.narrow(1, s, k)
    if kind == "permute":
        perm = list(range(t.dim()))
        rng.shuffle(perm)
        return f"permute{perm}", t.permute(perm)
    if kind == "diagonal":
        return kind, t.diagonal(dim1=0, dim2=1)
    if kind == "strided1":
        return kind, t[::2]
    return kind, t[:1].expand(4)  # overlapping elements: random fills must refuse


_FILLS = [
    ("normal_", lambda v, r: torch.nn.init.normal_(v, r.uniform(-1, 1), r.uniform(0.1, 2))),
    ("uniform_", lambda v, r: torch.nn.init.uniform_(v, -r.uniform(0, 2), r.uniform(0.1, 2))),
    ("trunc_normal_", lambda v, r: torch.nn.init.trunc_normal_(v, 0.0, r.uniform(0.2, 2))),
    ("zeros_", lambda v, r: torch.nn.init.zeros_(v)),
    ("ones_", lambda v, r: torch.nn.init.ones_(v)),
    ("constant_", lambda v, r: torch.nn.init.constant_(v, r.choice([0.25, -3.0, -0.0]))),
    ("xavier_uniform_", lambda v, r: torch.nn.init.xavier_uniform_(v)),
    ("xavier_normal_", lambda v, r: torch.nn.init.xavier_normal_(v, r.uniform(0.5, 2))),
    ("kaiming_uniform_", lambda v, r: torch.nn.init.kaiming_uniform_(v, a=math.sqrt(5))),
    ("kaiming_normal_", lambda v, r: torch.nn.init.kaiming_normal_(v, mode="fan_out")),
    ("eye_", lambda v, r: torch.nn.init.eye_(v)),
    ("dirac_", lambda v, r: torch.nn.init.dirac_(v)),
    ("orthogonal_", lambda v, r: torch.nn.init.orthogonal_(v, 0.5)),
    ("sparse_", lambda v, r: torch.nn.init.sparse_(v, 0.4)),
]


def _observe(kind: str, tensors: dict[str, torch.Tensor], name: str, view: torch.Tensor):
    """An observation of memory, as a comparable value."""
    t = tensors[name]
    if kind == "clone":
        return view.clone()
    if kind == "sum":
        return view.double().sum()
    if kind == "tolist":
        return repr(view.tolist())
    if kind == "save":
        buf = io.BytesIO()
        torch.save({k: v for k, v in tensors.items()}, buf)
        buf.seek(0)
        return torch.load(buf)
    if kind == "pickle":
        return pickle.loads(pickle.dumps(view))
    if kind == "numpy":
        arr = view.view(torch.int16).numpy() if view.dtype == torch.bfloat16 else view.numpy()
        return arr.copy()
    if kind == "storage":
        return bytes(t.untyped_storage())
    if kind == "data_ptr":
        return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())
    if kind == "safetensors":
        from safetensors.torch import load, save

        return load(save({k: v.contiguous() for k, v in tensors.items()}))
    if kind == "repr":
        return repr(view)
    raise AssertionError(kind)


_OBSERVATIONS = ("clone", "sum", "tolist", "save", "pickle", "numpy", "storage", "data_ptr",
                 "safetensors", "repr")


def _program(seed: int) -> list[tuple]:
    """A random program: a list of (op, args) steps; tensors are made by ``_make_tensors``."""
    rng = random.Random(seed)
    steps: list[tuple] = []
    for _ in range(rng.randint(2, 9)):
        r = rng.random()
        if r < 0.5:
            steps.append(("fill", rng.randrange(len(_FILLS)), rng.random()))
        elif r < 0.75:
            steps.append(("observe", rng.choice(_OBSERVATIONS), rng.random()))
        elif r < 0.9:
            steps.append(("update", rng.choice(["mul", "setitem", "add_other", "copy"]),
                          rng.random()))
        elif r < 0.95:
            steps.append(("module", rng.choice(["linear", "conv", "embedding", "lstm"]),
                          rng.random()))
        else:
            steps.append(("raise", None, rng.random()))
            break
    return steps


class _Boom(Exception):
    pass


def _update(kind: str, view: torch.Tensor, tensors, names, rng: random.Random) -> None:
    with torch.no_grad():
        if kind == "mul":
            view.mul_(0.5)
        elif kind == "setitem":
            view[...] = 2.5
        elif kind == "add_other":
            other = tensors[names[rng.randrange(len(names))]]
            view.add_(other.reshape(-1)[:1].to(view.dtype))
        else:
            other = tensors[names[rng.randrange(len(names))]].reshape(-1)
            if other.numel() >= view.numel():
                view.copy_(other[: view.numel()].reshape(view.shape).to(view.dtype))


def _run(seed: int, deferred: bool):
    """Run program ``seed``; return (log of observations, final tensors, modules)."""
    rng = random.Random(seed * 7919 + 1)
    tensors = _make_tensors(rng)
    names = list(tensors)
    log: list = []
    kept: list[nn.Module] = []
    torch.manual_seed(seed)
    try:
        with fastinit.patch(deferred=deferred):
            for op, arg, u in _program(seed):
                name = names[int(u * len(names))]
                desc, view = _view(tensors[name], rng)
                if op == "fill":
                    fn_name, fn = _FILLS[arg]
                    try:
                        fn(view, rng)
                        log.append(("fill", fn_name, desc))
                    except Exception as exc:  # the same error in both modes
                        log.append(("error", fn_name, desc, type(exc).__name__))
                elif op == "observe":
                    log.append(("observe", arg, desc, _observe(arg, tensors, name, view)))
                elif op == "update":
                    try:
                        _update(arg, view, tensors, names, rng)
                        log.append(("update", arg, desc))
                    except RuntimeError as exc:  # e.g. writing overlapping elements
                        log.append(("error", arg, desc, str(exc)[:40]))
                elif op == "module":
                    kept.append({"linear": lambda: nn.Linear(5, 3),
                                 "conv": lambda: nn.Conv2d(2, 3, 3),
                                 "embedding": lambda: nn.Embedding(6, 4, padding_idx=1),
                                 "lstm": lambda: nn.LSTM(3, 4)}[arg]())
                else:
                    raise _Boom
    except _Boom:
        log.append("raised")
    return log, tensors, kept


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
                and torch.equal(bits(a), bits(b)))
    if isinstance(a, np.ndarray):
        return a.tobytes() == b.tobytes() and a.dtype == b.dtype
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("chunk", range(6))
def test_random_programs_deferred_equal_eager(chunk):
    """PROGRAMS programs in 6 chunks: observations and final memory bitwise equal."""
    per = PROGRAMS // 6
    kinds = set()
    for seed in range(chunk * per, (chunk + 1) * per):
        log_e, final_e, mods_e = _run(seed, deferred=False)
        log_d, final_d, mods_d = _run(seed, deferred=True)
        assert _equal(log_e, log_d), f"program {seed}: observations differ\n{log_e}\n{log_d}"
        for name in final_e:
            assert _equal(final_e[name], final_d[name]), f"program {seed}: {name} differs"
        for me, md in zip(mods_e, mods_d):
            for (pn, pe), pd in zip(me.state_dict().items(), md.state_dict().values()):
                assert _equal(pe, pd), f"program {seed}: module {pn} differs"
        kinds.update(step[0] if isinstance(step, tuple) else step for step in log_e)
    assert {"fill", "observe", "update"} <= kinds  # the programs exercise what they claim
