"""``fastinit.rules``: the machinery recipes are built on - inits, plans, rules.

* An init used on its own is the fastinit function it stands for: outside ``materialize``
  it draws its own key like any ``fastinit.<fn>_`` call (consecutive calls differ,
  ``torch.manual_seed`` reproduces them, ``seed=`` and ``generator=`` pin them); inside it,
  the key and stream are the materialize seed and the parameter's name
  (tests/test_materialize.py). The fan-based inits are the fan-based functions, per block.
* A :class:`~fastinit.rules.Plan` keeps one write per tensor (the last assignment wins),
  checks every init before anything is written.
* :class:`~fastinit.rules.Rules`: the first matching glob wins; ``strict`` names the
  parameters no rule matches; bad rules are refused when the recipe is made.
"""
from __future__ import annotations

import math

import pytest
import torch

import fastinit
from fastinit import recipes, rules
from tests.common import assert_bitwise_equal


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


def test_fan_inits_match_the_functions():
    w = torch.empty(24, 16, 3)
    cases = [
        (recipes.kaiming_normal(mode="fan_out", nonlinearity="relu"),
         lambda t, s: fastinit.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", seed=s)),
        (recipes.kaiming_uniform(a=math.sqrt(5)),
         lambda t, s: fastinit.kaiming_uniform_(t, a=math.sqrt(5), seed=s)),
        (recipes.xavier_uniform(gain=2.0), lambda t, s: fastinit.xavier_uniform_(t, 2.0, seed=s)),
        (recipes.xavier_normal(), lambda t, s: fastinit.xavier_normal_(t, seed=s)),
    ]
    for init, fn in cases:
        assert_bitwise_equal(init(w.clone(), seed=4), fn(w.clone(), 4))
    # per-block fans: each of 3 blocks of 8 rows is a 8 x 48 layer
    gated = recipes.xavier_uniform(blocks=3)(w.clone(), seed=4)
    assert_bitwise_equal(gated, fastinit.uniform_(w.clone(), -math.sqrt(6 / (48 + 24)),
                                                  math.sqrt(6 / (48 + 24)), seed=4))
    with pytest.raises(ValueError, match="Mode fan_sum"):
        recipes.kaiming_normal(mode="fan_sum")
    with pytest.raises(ValueError, match="blocks"):
        recipes.xavier_uniform(blocks=0)


def test_layer_index_reads_the_block_index():
    assert rules.layer_index("model.layers.7.mlp.down_proj.weight") == 7
    assert rules.layer_index("transformer.h.11.attn.c_proj.weight") == 11
    assert rules.layer_index("blocks.0.fc.weight") == 0
    with pytest.raises(ValueError, match="cannot find a layer index"):
        rules.layer_index("embed.weight")
    with pytest.raises(ValueError, match="cannot find a layer index"):
        rules.layer_index("sublayers.3.weight")  # "layers" must be a whole name part


def test_plan_keeps_the_last_write_per_tensor_and_checks_before_writing():
    a, b = torch.full((4, 4), 7.0), torch.full((4,), 7.0)
    plan = rules.Plan("mine")
    assert not plan and len(plan) == 0
    plan.add("a", a, recipes.ones())
    plan.add("b", b, recipes.zeros())
    plan.add("a", a, recipes.constant(2.0))  # replaces the first entry, moves to the end
    assert [(n, repr(i)) for n, _, i in plan.writes] == [("b", repr(recipes.zeros())),
                                                        ("a", repr(recipes.constant(2.0)))]
    assert plan.targets() == {"b": b, "a": a} and len(plan) == 2 and not plan.has_procedures
    plan.run()
    assert (a == 2).all() and (b == 0).all()
    bad = rules.Plan("mine")
    c, v = torch.full((4, 4), 7.0), torch.full((4,), 7.0)
    bad.add("c", c, recipes.ones())
    bad.add("v", v, recipes.xavier_uniform())  # a vector has no fans
    with pytest.raises(ValueError, match="recipe 'mine', v: "):
        bad.run()
    assert (c == 7).all() and (v == 7).all()  # nothing written


def test_rules_first_matching_glob_wins_and_strict_names_the_rest():
    params = {"lin.weight": torch.empty(3, 3), "lin.bias": torch.empty(3),
              "norm.weight": torch.empty(3)}
    r = rules.Rules({"lin.*": recipes.zeros(), "*.weight": recipes.ones()}, warn_unused=False)
    plan = r.plan(None, params)
    assert [(n, repr(i)) for n, _, i in plan.writes] == [
        ("lin.weight", repr(recipes.zeros())), ("lin.bias", repr(recipes.zeros())),
        ("norm.weight", repr(recipes.ones()))]
    strict = recipes.rules({"*.weight": recipes.ones()}, strict=True)
    with pytest.raises(ValueError, match="no recipe rule matches these parameters: lin.bias$"):
        strict.plan(None, params)
    with pytest.warns(UserWarning, match="recipe rule 'head.\\*' matched no parameter"):
        rules.Rules({"head.*": recipes.ones(), "*": recipes.zeros()}).plan(None, params)


def test_bad_rules_are_refused_when_made():
    with pytest.raises(TypeError, match="name globs"):
        recipes.rules({3: recipes.ones()})
    with pytest.raises(TypeError, match="recipe rule '\\*': expected a fastinit.recipes init"):
        recipes.rules({"*": 0.02})
