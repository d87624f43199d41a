"""What a fill may write: layouts, overlapping views, autograd, and checks before any draw.

* sparse compressed (CSR/CSC/BSR/BSC) and nested tensors: the elementwise fills write
  the stored values (as torch does for the functions it supports there); COO tensors and
  structured functions (``eye_``, ``orthogonal_``, ...) raise ``NotImplementedError``;
  constants do what torch's ``fill_`` / ``zero_`` do;
* a view whose elements overlap (``expand``) is refused with torch's ``RuntimeError``
  for random fills (a constant is fine, as in torch);
* every refused call leaves the tensor and the generator untouched;
* fastinit's writes move autograd's version counter like an in-place torch op;
* a fill of a view by another tensor's index goes through a temporary when no segment
  list describes it (a transposed view of a channels_last tensor).

(float64 truncated normals too narrow for float32 variates: test_spec.py.)
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

import fastinit
from fastinit.fill import Fill, execute, fill_tensor
from fastinit.spec import InitSpec
from tests.common import assert_bitwise_equal

RANDOM = {
    "uniform_": lambda t: fastinit.uniform_(t, -1, 1),
    "normal_": lambda t: fastinit.normal_(t, 0, 2),
    "trunc_normal_": lambda t: fastinit.trunc_normal_(t, 0, 1, -1, 1),
    "xavier_uniform_": lambda t: fastinit.xavier_uniform_(t),
    "xavier_normal_": lambda t: fastinit.xavier_normal_(t),
    "kaiming_uniform_": lambda t: fastinit.kaiming_uniform_(t),
    "kaiming_normal_": lambda t: fastinit.kaiming_normal_(t),
    "orthogonal_": lambda t: fastinit.orthogonal_(t),
    "sparse_": lambda t: fastinit.sparse_(t, 0.5),
}
ELEMENTWISE = ("uniform_", "normal_", "trunc_normal_")
FAN_BASED = ("xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_")


def _dense():
    return torch.arange(24, dtype=torch.float32).reshape(4, 6) + 1


LAYOUTS = {
    "coo": lambda: _dense().to_sparse(),
    "csr": lambda: _dense().to_sparse_csr(),
    "csc": lambda: _dense().to_sparse_csc(),
    "bsr": lambda: _dense().to_sparse_bsr((2, 2)),
    "bsc": lambda: _dense().to_sparse_bsc((2, 2)),
    "nested": lambda: torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)]),
    "jagged": lambda: torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)],
                                                 layout=torch.jagged),
}


def _make(layout):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nested / sparse are "prototype" in torch
        return LAYOUTS[layout]()


def _values(t):
    return t.values().clone()


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(RANDOM))
def test_random_fills_on_other_layouts(layout, name):
    t = _make(layout)
    state = torch.get_rng_state()
    compressed = layout in ("csr", "csc", "bsr", "bsc")
    supported = (compressed and (name in ELEMENTWISE or name in FAN_BASED)) or (
        layout in ("nested", "jagged") and name in ELEMENTWISE)
    if not supported:
        before = _values(t) if layout != "coo" else t._values().clone()
        with pytest.raises((NotImplementedError, ValueError)):  # ValueError: dimensions
            RANDOM[name](t)
        after = _values(t) if layout != "coo" else t._values().clone()
        assert torch.equal(before, after), "a refused fill wrote"
        assert torch.equal(torch.get_rng_state(), state), "a refused fill drew a key"
        return
    torch.manual_seed(7)
    RANDOM[name](t)
    # the stored values are the fill of a plain tensor by the values' own index (with
    # fans from the tensor's dense shape)
    torch.manual_seed(7)
    shape = t.shape if compressed else t.values().shape
    expected = RANDOM[name](torch.empty(shape)).reshape(t.values().shape)
    assert_bitwise_equal(t.values(), expected)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", ["zeros_", "ones_", "constant_"])
def test_constants_on_other_layouts_do_what_torch_does(layout, name):
    args = (0.5,) if name == "constant_" else ()
    t_torch, t_fast = _make(layout), _make(layout)
    try:
        getattr(torch.nn.init, name)(t_torch, *args)
    except Exception as exc:  # torch refuses: fastinit raises the same type
        with pytest.raises(type(exc)):
            getattr(fastinit, name)(t_fast, *args)
        return
    getattr(fastinit, name)(t_fast, *args)
    if layout == "coo":
        assert torch.equal(t_fast.to_dense(), t_torch.to_dense())
    else:
        assert torch.equal(t_fast.values(), t_torch.values())


@pytest.mark.parametrize("name", ["eye_", "dirac_"])
@pytest.mark.parametrize("layout", ["coo", "csr", "nested"])
def test_structured_fills_refuse_other_layouts(name, layout):
    t = _make(layout)
    with pytest.raises((NotImplementedError, ValueError)):
        getattr(fastinit, name)(t)


@pytest.mark.parametrize("name", list(RANDOM))
def test_overlapping_views_are_refused_before_any_draw(name):
    t = torch.zeros(1, 6).expand(8, 6)
    state = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        RANDOM[name](t)
    assert (t == 0).all()
    assert torch.equal(torch.get_rng_state(), state)
    # torch refuses the same views
    if name in ("uniform_", "normal_", "xavier_uniform_", "orthogonal_"):
        with pytest.raises(RuntimeError, match="more than one element"):
            getattr(torch.nn.init, name)(torch.zeros(1, 6).expand(8, 6))


def test_constants_fill_overlapping_views_as_torch_does():
    a, b = torch.zeros(1, 6), torch.zeros(1, 6)
    torch.nn.init.constant_(a.expand(8, 6), 3.0)
    fastinit.constant_(b.expand(8, 6), 3.0)
    assert torch.equal(a, b)


def test_writes_move_the_version_counter_once_per_call():
    t = torch.zeros(8)
    for fn in (fastinit.normal_, fastinit.uniform_, fastinit.trunc_normal_, fastinit.ones_):
        before = t._version
        fn(t)
        assert t._version == before + 1
    with torch.inference_mode():
        u = torch.empty(8)
    fastinit.normal_(u)  # inference tensors have no version counter: still filled
    assert u.isfinite().all()


def test_a_view_of_a_permuted_base_is_filled_by_the_base_index():
    """Fill(target=view, base=b) for a channels_last base: no segments describe it, the
    temporary path must give b's values at the positions the view aliases."""
    b = torch.full((2, 3, 4, 5), math.nan).contiguous(memory_format=torch.channels_last)
    view = b[1].transpose(0, 2)  # a non-trivial view into the permuted memory
    params = InitSpec.normal(0.0, 1.0).kernel_params(torch.float32)
    execute(Fill(view, b, params, key=11, stream=3))
    whole = torch.empty(2, 3, 4, 5)
    fill_tensor(whole, params, 11, 3)
    assert_bitwise_equal(view, whole[1].transpose(0, 2))
    assert b[0].isnan().all()


def test_fills_inside_a_meta_device_context():
    """Host-side work (seeds, dtype bounds, constants) never lands on the context's device:
    fills of real tensors inside ``torch.device("meta")`` work, and so does patch()."""
    with torch.device("meta"):
        t = torch.empty(16, device="cpu")
        for fn in (lambda x: fastinit.uniform_(x, -1, 1), fastinit.normal_,
                   lambda x: fastinit.trunc_normal_(x, 0, 1, -1, 1), fastinit.ones_,
                   lambda x: fastinit.constant_(x, 0.5)):
            fn(t)
            assert t.isfinite().all()
        with fastinit.patch():
            m = torch.nn.Linear(4, 4)
        assert m.weight.is_meta
