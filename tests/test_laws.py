"""fastinit.laws: the init math in one place, and its two users agreeing to the bit.

* the fan rule and the standard deviations against torch.nn.init's own arithmetic;
* each recipe init (``fastinit.recipes``) writes bitwise what the matching public
  function writes with the same seed, float64 included (where a bound one ulp off shows):
  the formulas had two copies before, in different operation orders;
* ``scaled_residual``: the recipe and ``scaled_residual_`` take the same arguments and
  give the same values; the recipe's ``cutoff`` keeps its meaning.
"""
import math

import pytest
import torch
import torch.nn.init as tinit

import fastinit
from fastinit import laws, recipes
from tests.common import assert_bitwise_equal

SHAPES = [(3, 5), (129, 199), (64, 7, 3), (16, 8, 3, 3), (7, 100)]
GAINS = [1.0, 5.0 / 3, math.sqrt(2.0), 0.75]


@pytest.mark.parametrize("shape", SHAPES + [(2, 3, 4, 5, 6)])
def test_fans_are_torchs(shape):
    t = torch.empty(shape, device="meta")
    assert laws.fans(t) == tinit._calculate_fan_in_and_fan_out(t)


def test_fans_of_one_block_and_errors():
    assert laws.fans(torch.empty(12, 5, device="meta"), blocks=4) == (5, 3)
    with pytest.raises(ValueError, match="do not split into 5 equal blocks"):
        laws.fans(torch.empty(12, 5, device="meta"), blocks=5)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        laws.fans(torch.empty(4, device="meta"))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gain", GAINS)
def test_stds_are_torchs_arithmetic(shape, gain):
    fan_in, fan_out = tinit._calculate_fan_in_and_fan_out(torch.empty(shape, device="meta"))
    assert laws.xavier_std(fan_in, fan_out, gain) == gain * math.sqrt(2.0 / float(fan_in + fan_out))
    assert laws.kaiming_std(fan_in, fan_out, gain, "fan_in") == gain / math.sqrt(fan_in)
    assert laws.kaiming_std(fan_in, fan_out, gain, "fan_out") == gain / math.sqrt(fan_out)
    bound = laws.spread(laws.xavier_std(fan_in, fan_out, gain), "uniform").high
    assert bound == math.sqrt(3.0) * (gain * math.sqrt(2.0 / float(fan_in + fan_out)))


def test_calculate_gain_is_one_function():
    assert fastinit.calculate_gain is laws.calculate_gain is fastinit.init.calculate_gain
    assert fastinit.init.TRUNCATED_NORMAL_STD_AT_2 is laws.TRUNCATED_NORMAL_STD_AT_2


PAIRS = [
    (lambda g: recipes.xavier_uniform(gain=g), lambda t, g, s: fastinit.xavier_uniform_(t, g, seed=s)),
    (lambda g: recipes.xavier_normal(gain=g), lambda t, g, s: fastinit.xavier_normal_(t, g, seed=s)),
    (lambda g: recipes.kaiming_uniform(a=g), lambda t, g, s: fastinit.kaiming_uniform_(t, g, seed=s)),
    (lambda g: recipes.kaiming_normal(a=g, mode="fan_out", nonlinearity="relu"),
     lambda t, g, s: fastinit.kaiming_normal_(t, g, "fan_out", "relu", seed=s)),
    (lambda g: recipes.orthogonal(gain=g), lambda t, g, s: fastinit.orthogonal_(t, g, seed=s)),
]


@pytest.mark.parametrize("pair", range(len(PAIRS)))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_recipe_inits_write_the_public_functions_bits(pair, dtype):
    make, public = PAIRS[pair]
    for shape in SHAPES:
        for gain in GAINS:
            ours = make(gain)(torch.full(shape, math.nan, dtype=dtype), seed=11)
            theirs = public(torch.full(shape, math.nan, dtype=dtype), gain, 11)
            assert_bitwise_equal(ours, theirs)


@pytest.mark.parametrize("kw", [dict(), dict(truncated=True), dict(truncated=True, a=-0.01, b=0.02),
                                dict(mean=0.1), dict(truncated=True, mean=0.1)])
def test_scaled_residual_recipe_and_function_agree(kw):
    ours = recipes.scaled_residual(0.02, 6, **kw)(torch.empty(64, 48, dtype=torch.float64), seed=5)
    theirs = fastinit.scaled_residual_(torch.empty(64, 48, dtype=torch.float64), 0.02, 6, **kw, seed=5)
    assert_bitwise_equal(ours, theirs)
    deep = recipes.scaled_residual(0.02, depth=True, **kw)
    ours = deep(torch.empty(64, 48), "layers.3.attn.wo.weight", seed=5)
    assert_bitwise_equal(ours, fastinit.scaled_residual_(torch.empty(64, 48), 0.02, layer_id=3,
                                                         **kw, seed=5))


def test_scaled_residual_cutoff_is_in_scaled_stds():
    s = 0.02 / math.sqrt(2 * 6)
    spec = recipes.scaled_residual(0.02, 6, truncated=True, cutoff=3.0).spec(torch.empty(4, 4), "")
    assert (spec.low, spec.high, spec.std) == (-3.0 * s, 3.0 * s, s)
    ours = recipes.scaled_residual(0.02, 6, truncated=True, cutoff=3.0)(torch.empty(64, 48), seed=2)
    assert_bitwise_equal(ours, fastinit.trunc_normal_(torch.empty(64, 48), 0.0, s, -3.0 * s, 3.0 * s,
                                                      seed=2))


@pytest.mark.parametrize("kw, match", [
    (dict(a=-1.0), "truncated normal only"),
    (dict(cutoff=2.0), "truncated normal only"),
    (dict(truncated=True, a=-1.0, cutoff=2.0), "not both"),
])
def test_scaled_residual_recipe_refuses_mixed_cutoffs_at_once(kw, match):
    with pytest.raises(ValueError, match=match):
        recipes.scaled_residual(0.02, 6, **kw)
