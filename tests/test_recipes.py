"""Recipe inits used on their own: each call is the fastinit function it stands for.

Inside ``materialize`` an init's key and stream are the materialize seed and the
parameter's name (tests/test_materialize.py); outside it, a call draws its own key like
any ``fastinit.<fn>_`` call: consecutive calls differ, ``torch.manual_seed`` reproduces
them, ``seed=`` and ``generator=`` pin them.
"""
from __future__ import annotations

import math

import pytest
import torch

import fastinit
from fastinit import recipes
from tests.conftest import assert_bitwise_equal

INITS = [
    (recipes.normal(std=0.02), lambda t, **kw: fastinit.normal_(t, 0.0, 0.02, **kw)),
    (recipes.uniform(-0.5, 0.5), lambda t, **kw: fastinit.uniform_(t, -0.5, 0.5, **kw)),
    (recipes.trunc_normal(0.0, 0.02, -0.04, 0.04),
     lambda t, **kw: fastinit.trunc_normal_(t, 0.0, 0.02, -0.04, 0.04, **kw)),
    (recipes.scaled_residual(0.02, 6),
     lambda t, **kw: fastinit.normal_(t, 0.0, 0.02 / math.sqrt(12), **kw)),
]


@pytest.mark.parametrize("init,function", INITS, ids=[repr(i) for i, _ in INITS])
def test_an_init_outside_materialize_draws_its_own_key(init, function):
    a, b = init(torch.empty(512)), init(torch.empty(512))
    assert not torch.equal(a, b), "two calls gave the same values"
    torch.manual_seed(3)
    c = init(torch.empty(512))
    torch.manual_seed(3)
    assert_bitwise_equal(c, function(torch.empty(512)))
    assert_bitwise_equal(init(torch.empty(512), seed=9), function(torch.empty(512), seed=9))
    g = torch.Generator().manual_seed(5)
    h = torch.Generator().manual_seed(5)
    assert_bitwise_equal(init(torch.empty(512), generator=g),
                         function(torch.empty(512), generator=h))


def test_constant_inits_and_apply_outside_materialize():
    w, b = torch.empty(4, 4), torch.empty(4)
    torch.manual_seed(0)
    recipes.apply({"*.weight": recipes.normal(std=0.1), "*": recipes.zeros()},
                  {"lin.weight": w, "lin.bias": b})
    torch.manual_seed(0)
    assert_bitwise_equal(w, fastinit.normal_(torch.empty(4, 4), 0.0, 0.1))
    assert (b == 0).all()
    before = w.clone()
    recipes.apply({"*.weight": recipes.normal(std=0.1), "*": recipes.zeros()},
                  {"lin.weight": w, "lin.bias": b})
    assert not torch.equal(w, before), "apply repeated the previous values"
