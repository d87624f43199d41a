"""The schemes torch.nn.init lacks: variance_scaling_ / lecun_*, class_prior_bias_,
mean_resize_embeddings_.

* ``variance_scaling_`` against the statistics of ``jax.nn.initializers.variance_scaling``
  written down from JAX's documented formulas (JAX is not a dependency): the fans of
  ``_compute_fans`` on JAX's ``[..., in, out]`` layout, the variance ``scale / denominator``
  per mode, and per distribution the law JAX samples (a standard normal truncated to
  [-2, 2] times ``sqrt(variance) / .87962566103423978``, a normal, or a uniform on
  ``[-1, 1)`` times ``sqrt(3 variance)``). KS and moments with the thresholds of
  tests/stats_helpers.py.
* ``class_prior_bias_``: the activation of the bias is the prior.
* ``mean_resize_embeddings_`` against transformers' ``resize_token_embeddings(...,
  mean_resizing=True)`` step (``_init_added_embeddings_weights_with_mean``): the mean
  exact to float32 rounding, the spread that of ``1e-9 * covariance``.
* Bad input: clear errors, nothing written, the generator not advanced.
"""
from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

import fastinit
from fastinit import recipes
from tests.common import assert_bitwise_equal
from tests.sample_checks import law_errors, same_law_errors
from tests.stats_helpers import Z_MAX, normal_law, trunc_normal_law, uniform_law

SEED = 1234

# --- variance_scaling_: JAX's formulas ----------------------------------------------------------

#: ``jax.nn.initializers.variance_scaling``: "stddev of a standard normal truncated to (-2, 2)"
JAX_TRUNCATED_STD = .87962566103423978


def jax_fans(jax_shape: tuple[int, ...], in_axis: int = -2, out_axis: int = -1) -> tuple[float, float]:
    """``jax._src.nn.initializers._compute_fans`` (no batch axes)."""
    receptive = math.prod(jax_shape) / jax_shape[in_axis] / jax_shape[out_axis]
    return jax_shape[in_axis] * receptive, jax_shape[out_axis] * receptive


def jax_law(jax_shape, scale, mode, distribution):
    """The law of one element of ``variance_scaling(scale, mode, distribution)(key, shape)``."""
    fan_in, fan_out = jax_fans(jax_shape)
    denominator = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
                   "fan_geo_avg": (fan_in * fan_out) ** 0.5}[mode]
    variance = scale / denominator
    if distribution == "truncated_normal":
        s = math.sqrt(variance) / JAX_TRUNCATED_STD
        return trunc_normal_law(0.0, s, -2 * s, 2 * s), variance
    if distribution == "normal":
        return normal_law(0.0, math.sqrt(variance)), variance
    b = math.sqrt(3 * variance)
    return uniform_law(-b, b), variance


def to_jax_layout(torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    """torch [out, in, *kernel] -> JAX / Flax [*kernel, in, out]."""
    return (*torch_shape[2:], torch_shape[1], torch_shape[0])


def test_jax_constant_is_the_truncated_standard_deviation():
    assert scipy.stats.truncnorm(-2, 2).std() == pytest.approx(JAX_TRUNCATED_STD, rel=1e-15)
    assert fastinit.init.TRUNCATED_NORMAL_STD_AT_2 == pytest.approx(JAX_TRUNCATED_STD, rel=1e-15)


CASES = [((640, 512), 1.0, "fan_in", "truncated_normal"),
         ((96, 40, 5, 5), 2.0, "fan_out", "truncated_normal"),
         ((700, 300), 1.0, "fan_avg", "uniform"),
         ((64, 48, 3, 3), 0.5, "fan_geo_avg", "normal"),
         ((512, 1024), 3.0, "fan_geo_avg", "truncated_normal"),
         ((30, 20, 7), 1.0, "fan_avg", "normal")]


@pytest.mark.parametrize("shape,scale,mode,distribution", CASES, ids=str)
def test_variance_scaling_against_jax_statistics(shape, scale, mode, distribution):
    w = torch.full(shape, float("nan"))
    fastinit.variance_scaling_(w, scale, mode, distribution, seed=SEED)
    law, variance = jax_law(to_jax_layout(shape), scale, mode, distribution)
    assert law.var == pytest.approx(variance, rel=1e-12)  # the truncated law has the target variance
    assert not law_errors(w, law, f"variance_scaling_{shape}")


def test_lecun_are_variance_scaling_and_the_inits_match_the_functions():
    w = torch.empty(300, 200)
    for fn, dist in ((fastinit.lecun_normal_, "truncated_normal"),
                     (fastinit.lecun_uniform_, "uniform")):
        assert_bitwise_equal(fn(torch.empty(300, 200), seed=5),
                             fastinit.variance_scaling_(w, 1.0, "fan_in", dist, seed=5))
    assert_bitwise_equal(recipes.lecun_normal()(torch.empty(300, 200), seed=5),
                         fastinit.lecun_normal_(w, seed=5))
    assert_bitwise_equal(recipes.variance_scaling(2.0, "fan_out", "normal")(w.clone(), seed=6),
                         fastinit.variance_scaling_(w, 2.0, "fan_out", "normal", seed=6))
    s = math.sqrt(1.0 / 200) / JAX_TRUNCATED_STD  # the same stream as trunc_normal_
    assert_bitwise_equal(fastinit.lecun_normal_(torch.empty(300, 200), seed=7),
                         fastinit.trunc_normal_(w, 0.0, s, -2 * s, 2 * s, seed=7))


def test_variance_scaling_generator_and_seed_like_the_rest():
    g, h = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = fastinit.variance_scaling_(torch.empty(64, 64), generator=g)
    b = fastinit.lecun_normal_(torch.empty(64, 64), generator=h)
    assert_bitwise_equal(a, b)
    assert not torch.equal(a, fastinit.variance_scaling_(torch.empty(64, 64), generator=g))
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        w = fastinit.variance_scaling_(torch.empty(256, 256, dtype=dtype), seed=1)
        bound = 2 * math.sqrt(1 / 256) / JAX_TRUNCATED_STD
        assert w.dtype == dtype and w.double().abs().max() <= bound


@pytest.mark.parametrize("call,exc,match", [
    (lambda w: fastinit.variance_scaling_(w, mode="fan_sum"), ValueError, "fan_geo_avg"),
    (lambda w: fastinit.variance_scaling_(w, distribution="cauchy"), ValueError, "truncated_normal"),
    (lambda w: fastinit.variance_scaling_(w, 0.0), ValueError, "scale must be > 0"),
    (lambda w: fastinit.variance_scaling_(w, -1.0), ValueError, "scale must be > 0"),
    (lambda w: fastinit.variance_scaling_(w, float("nan")), ValueError, "finite"),
    (lambda w: fastinit.variance_scaling_(w, "2"), TypeError, "real number"),
    (lambda w: fastinit.variance_scaling_(w[0]), ValueError, "fewer than 2 dimensions"),
    (lambda w: fastinit.lecun_normal_(w.to(torch.int32)), NotImplementedError, "dtype"),
])
def test_variance_scaling_bad_input_writes_nothing(call, exc, match):
    w = torch.full((8, 8), float("nan"))
    state = torch.get_rng_state()
    with pytest.raises(exc, match=match):
        call(w)
    assert torch.isnan(w).all()
    assert torch.equal(state, torch.get_rng_state())


def test_variance_scaling_zero_element_warns_like_kaiming():
    with pytest.warns(UserWarning, match="zero-element"):
        fastinit.variance_scaling_(torch.empty(0, 4))


# --- class_prior_bias_ ------------------------------------------------------------------------------


def test_class_prior_bias_sigmoid_and_softmax():
    b = fastinit.class_prior_bias_(torch.empty(5, dtype=torch.float64), 0.01)
    assert torch.allclose(torch.sigmoid(b), torch.full((5,), 0.01, dtype=torch.float64),
                          rtol=1e-14, atol=0)
    p = [0.5, 0.25, 0.125, 0.0625, 0.0625]
    b = fastinit.class_prior_bias_(torch.empty(5, dtype=torch.float64), p, activation="softmax")
    assert torch.allclose(torch.softmax(b, 0), torch.tensor(p, dtype=torch.float64),
                          rtol=1e-14, atol=0)
    assert abs(float(b.sum())) < 1e-14  # centred
    # per-class sigmoid priors (multi-label), tensor prior, 16-bit bias: one rounding
    p = torch.tensor([0.9, 0.3, 1e-4])
    b = fastinit.class_prior_bias_(torch.empty(3, dtype=torch.bfloat16), p)
    exact = torch.log(p.double() / (1 - p.double()))
    assert torch.equal(b, exact.to(torch.bfloat16))
    # RetinaNet's rule: b = -log((1 - pi) / pi)
    b = fastinit.class_prior_bias_(torch.empty(1), 0.01)
    assert float(b) == pytest.approx(-math.log((1 - 0.01) / 0.01), rel=1e-7)


@pytest.mark.parametrize("prior,activation,exc,match", [
    (0.0, "sigmoid", ValueError, r"in \(0, 1\)"),
    (1.0, "sigmoid", ValueError, r"in \(0, 1\)"),
    (1.5, "sigmoid", ValueError, r"in \(0, 1\)"),
    (float("nan"), "sigmoid", ValueError, r"in \(0, 1\)"),
    ([0.5, 0.5, -0.1, 0.1], "softmax", ValueError, r"prior\[2\]"),
    ([0.5, 0.2, 0.2, 0.09], "softmax", ValueError, "sum to 1"),
    ([0.25, 0.25, 0.25, 0.25 + 2e-6], "softmax", ValueError, "sum to 1"),
    ([0.5, 0.5], "sigmoid", ValueError, "2 values for a bias of 4"),
    (0.3, "tanh", ValueError, "sigmoid"),
    ("0.3", "sigmoid", TypeError, "real number"),
])
def test_class_prior_bias_bad_input_writes_nothing(prior, activation, exc, match):
    b = torch.full((4,), float("nan"))
    with pytest.raises(exc, match=match):
        fastinit.class_prior_bias_(b, prior, activation=activation)
    assert torch.isnan(b).all()
    with pytest.raises(ValueError, match="1-D"):
        fastinit.class_prior_bias_(torch.empty(2, 2), 0.5)


def test_class_prior_bias_softmax_within_tolerance_and_float_prior():
    p = [0.25, 0.25, 0.25, 0.25 + 5e-7]  # within 1e-6 of summing to 1
    b = fastinit.class_prior_bias_(torch.empty(4, dtype=torch.float64), p, "softmax")
    assert torch.isfinite(b).all()
    b = fastinit.class_prior_bias_(torch.empty(4, dtype=torch.float64), 0.25, "softmax")
    assert torch.equal(b, torch.zeros(4, dtype=torch.float64))


def test_class_prior_bias_in_materialize():
    class Head(torch.nn.Linear):
        def reset_parameters(self):
            super().reset_parameters()
            fastinit.class_prior_bias_(self.bias, 0.01)

    with torch.device("meta"):
        m = Head(8, 3)
    fastinit.materialize(m, "cpu", seed=0)
    assert torch.allclose(torch.sigmoid(m.bias.detach()), torch.full((3,), 0.01))


# --- mean_resize_embeddings_ against transformers -----------------------------------------------


def transformers_mean_resize(old: torch.Tensor, added: int, seed: int) -> torch.Tensor:
    """transformers' own step, on an nn.Embedding of the old rows; returns the new rows."""
    transformers = pytest.importorskip("transformers")
    old_emb = torch.nn.Embedding.from_pretrained(old.clone())
    new_emb = torch.nn.Embedding(old.shape[0] + added, old.shape[1], dtype=old.dtype)
    torch.manual_seed(seed)
    # the method uses nothing of the model it is bound to
    transformers.PreTrainedModel._init_added_embeddings_weights_with_mean(
        None, old_emb, new_emb, old.shape[0], added)
    return new_emb.weight.detach()[-added:]


def correlated_rows(n: int, d: int, seed: int) -> torch.Tensor:
    """Embedding-like rows with a non-trivial mean and covariance. As in trained
    embeddings the mean is small next to the spread, so that float32's resolution at the
    mean stays far below the 1e-9-scaled spread of the new rows (which sampling tests)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    mean = 0.01 * torch.randn(d, generator=g, dtype=torch.float64)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix * 0.05 + mean).float()


def test_mean_resize_matches_transformers_when_covariance_is_positive_definite():
    n, d, added = 4000, 24, 6000
    old = correlated_rows(n, d, 0)
    w = torch.cat([old, torch.full((added, d), float("nan"))])
    fastinit.mean_resize_embeddings_(w, n, seed=SEED)
    assert torch.equal(w[:n], old)  # old rows untouched
    new = w[n:].double()
    theirs = transformers_mean_resize(old, added, 0).double()
    assert theirs.std(0).min() > 0  # transformers sampled (its covariance was PD) ...
    assert new.std(0).min() > 0     # ... and so did we
    o = old.double()
    mu = o.mean(0)
    cov = (o - mu).T @ (o - mu) / n * fastinit.init.MEAN_RESIZE_EPSILON
    # mean: within Z_MAX standard errors of the old rows' mean (SE from eps * cov)
    se = (torch.diagonal(cov) / added).sqrt()
    z = (new.mean(0) - mu) / se
    assert z.abs().max() <= Z_MAX, z
    # spread: the variance along fixed directions is v' (eps cov) v, within Z_MAX SE
    g = torch.Generator().manual_seed(1)
    dirs = torch.randn(8, d, generator=g, dtype=torch.float64)
    dirs = torch.cat([dirs, torch.linalg.eigh(cov).eigenvectors[:, [0, -1]].T])
    for v in dirs:
        proj = (new - mu) @ v
        target = float(v @ cov @ v)
        se_var = target * math.sqrt(2.0 / (added - 1))  # normal law
        assert abs(float(proj.var()) - target) <= Z_MAX * se_var
        # and the same law as transformers' samples
        assert not same_law_errors((new - mu) @ v, (theirs - mu) @ v, "projection")


def test_mean_resize_falls_back_to_the_mean_like_transformers():
    n, d, added = 16, 40, 5  # fewer rows than columns: the covariance is singular
    old = correlated_rows(n, d, 2)
    w = torch.cat([old, torch.full((added, d), float("nan"))])
    fastinit.mean_resize_embeddings_(w, n, seed=SEED)
    exact = old.double().mean(0)
    assert_bitwise_equal(w[n:], exact.float().expand(added, d).contiguous())
    theirs = transformers_mean_resize(old, added, 0)
    assert (theirs == theirs[0]).all()  # transformers took the same branch
    # transformers' float32 mean differs from the correctly rounded one only by its
    # summation error: at most n * u * mean |x| per column (u = 2^-24)
    bound = n * 2.0 ** -24 * old.double().abs().mean(0)
    assert ((theirs[0].double() - w[n].double()).abs() <= bound).all()


def test_mean_resize_reproducible_dtypes_and_no_op():
    old = correlated_rows(300, 8, 3)
    a = torch.cat([old, torch.empty(20, 8)])
    b = a.clone()
    fastinit.mean_resize_embeddings_(a, 300, seed=9)
    fastinit.mean_resize_embeddings_(b, 300, seed=9)
    assert_bitwise_equal(a, b)
    g, h = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    c, e = a.clone(), a.clone()
    fastinit.mean_resize_embeddings_(c, 300, generator=g)
    fastinit.mean_resize_embeddings_(e, 300, generator=h)
    assert_bitwise_equal(c, e)
    assert not torch.equal(c, a)
    bf = torch.cat([old, torch.empty(20, 8)]).to(torch.bfloat16)
    fastinit.mean_resize_embeddings_(bf, 300, seed=9)
    assert torch.isfinite(bf.float()).all()
    before = a.clone()
    fastinit.mean_resize_embeddings_(a, a.shape[0], seed=1)  # no new rows: no-op
    assert_bitwise_equal(a, before)


def test_mean_resize_deferred_reads_the_final_old_rows():
    """Under patch(deferred=True) the old rows' own fill is still pending when the call is
    made: the new rows must come from the values eager execution would have read."""
    def build():
        w = torch.empty(200, 8)
        fastinit.normal_(w, 0.5, 2.0, seed=1)
        return fastinit.mean_resize_embeddings_(w, 150, seed=2)

    eager = build()
    with fastinit.patch(deferred=True):
        deferred = build()
    assert_bitwise_equal(deferred, eager)


@pytest.mark.parametrize("rows,exc,match", [
    (0, ValueError, r"in \[1, 10\]"), (11, ValueError, r"in \[1, 10\]"),
    (-1, ValueError, r"in \[1, 10\]"), (2.0, TypeError, "int"), (True, TypeError, "int"),
])
def test_mean_resize_bad_rows_write_nothing(rows, exc, match):
    w = torch.full((10, 4), float("nan"))
    state = torch.get_rng_state()
    with pytest.raises(exc, match=match):
        fastinit.mean_resize_embeddings_(w, rows)
    assert torch.isnan(w).all()
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(ValueError, match="2-D"):
        fastinit.mean_resize_embeddings_(torch.empty(10), 5)
