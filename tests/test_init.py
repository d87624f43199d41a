"""The torch.nn.init-compatible front end (fastinit.init): parity with the installed torch,
the basic and composite functions, and the schemes torch.nn.init lacks.

* The surface: every name of ``torch.nn.init.__all__`` exists as ``fastinit.<name>``
  with torch's parameters (names, kinds, order, defaults) as a prefix of fastinit's,
  and the only addition is the keyword-only ``seed=None`` of the random functions.
  Deprecated aliases, meta tensors and return values as torch.
* Distributions: on random shapes of 2 to 5 dimensions (plus conv-shaped weights),
  every random function's values are compared with its analytic law by a
  Kolmogorov-Smirnov test, the parameters of that law being torch's (fan rule, gain,
  std, bound), and the bound / std fastinit hands to its backend equals the value torch
  passes to ``Tensor.uniform_`` / ``Tensor.normal_``, bit for bit.
* ``constant_``, ``zeros_``, ``ones_`` equal torch's bit for bit.
* ``scaled_residual_``: std / sqrt(2 num_layers) and std / sqrt(2 (layer_id + 1)), normal
  and truncated, against their laws; argument validation.
* Every function on non-contiguous views (transposed, strided slices, channels_last)
  writes by logical index and nothing outside the view; fp64/fp32/bf16/fp16;
  ``requires_grad`` parameters.
* ``variance_scaling_`` against the statistics of ``jax.nn.initializers.variance_scaling``
  written down from JAX's documented formulas (JAX is not a dependency): the fans of
  ``_compute_fans`` on JAX's ``[..., in, out]`` layout, the variance ``scale / denominator``
  per mode, and per distribution the law JAX samples (a standard normal truncated to
  [-2, 2] times ``sqrt(variance) / .87962566103423978``, a normal, or a uniform on
  ``[-1, 1)`` times ``sqrt(3 variance)``). KS and moments with the thresholds of
  tests/stats_helpers.py.
* ``class_prior_bias_``: the activation of the bias is the prior; bad input: clear errors,
  nothing written, the generator not advanced.

The argument checks are in test_arguments.py, the structured functions (``orthogonal_``,
``eye_``, ``dirac_``, ``sparse_``) in test_structured.py, ``mean_resize_embeddings_`` in
test_embeddings.py, validation and rounding of the distributions in test_spec.py, seeds
and generators in test_streams.py.

Thresholds. Every sample comes from a fixed ``seed=`` (or a seeded generator), so each
statistic is a fixed number and no test is flaky; the thresholds are still significance
tests at level 1e-6 so that correct code sits far from them. KS: reject when the
distance D exceeds ``kstwo.isf(1e-6, n)`` (n the sample size; 0.0146 for n = 10**5).
Variances: within 5 standard errors, SE(s^2) = sqrt((mu4 - sigma^4) / n) with mu4 the
exact 4th central moment (3 sigma^4 for a normal, 9/5 sigma^4 for a uniform; two-sided
normal tail 5.7e-7). The two-sample KS test against torch's own output uses
``D > c(1e-6) sqrt((n + m) / (n m))`` with c(alpha) = sqrt(-ln(alpha / 2) / 2) = 2.70.
All float32 samples: rounding to float32 moves a CDF by < 1e-7, far below the thresholds.
"""
from __future__ import annotations

import inspect
import math
import warnings
import zlib
from unittest import mock

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.init as tinit

import fastinit
import fastinit.route as froute
from fastinit import recipes
from tests.common import FNS, assert_bitwise_equal
from tests.sample_checks import law_errors
from tests.stats_helpers import (KS_ALPHA, Z_MAX, ks_critical, normal_law, trunc_normal_law,
                                 uniform_law)

NAN = math.nan
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("fn,kw", FNS)
def test_returns_the_tensor_and_fills_every_element(fn, kw):
    t = torch.full((17, 5), math.nan)
    assert fn(t, **kw, seed=1) is t
    assert not t.isnan().any()


def test_meta_and_empty_tensors():
    m = torch.empty(3, 4, device="meta")
    assert fastinit.normal_(m) is m
    e = torch.empty(0, 4)
    assert fastinit.trunc_normal_(e) is e


def test_uniform_equal_bounds_is_a_constant_like_torch():
    t = fastinit.uniform_(torch.empty(5), 0.25, 0.25)
    assert (t == 0.25).all()


def test_non_contiguous_views_are_filled_by_logical_index():
    base = torch.full((6, 10), math.nan)
    view = base.t()  # strided innermost dimension
    fastinit.normal_(view, seed=8)
    expected = fastinit.normal_(torch.empty(10, 6), seed=8)
    assert_bitwise_equal(view.contiguous(), expected)
    sl = torch.full((6, 10), math.nan)
    fastinit.uniform_(sl[1:5, 2:7], seed=8)
    assert_bitwise_equal(sl[1:5, 2:7].contiguous(), fastinit.uniform_(torch.empty(4, 5), seed=8))
    outside = torch.ones(6, 10, dtype=torch.bool)
    outside[1:5, 2:7] = False
    assert sl[outside].isnan().all()


def test_parameters_requiring_grad_are_filled_without_autograd():
    p = torch.nn.Parameter(torch.empty(3, 3))
    out = fastinit.normal_(p, seed=1)
    assert out is p and p.grad_fn is None and p.requires_grad


#: Functions that draw random numbers (and take ``generator`` and fastinit's ``seed``).
RANDOM = {"uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
          "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_"}


DEPRECATED = {"uniform", "normal", "constant", "eye", "dirac", "xavier_uniform",
              "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse"}


def test_every_torch_name_is_exported():
    missing = [n for n in tinit.__all__ if not callable(getattr(fastinit, n, None))]
    assert not missing
    assert set(tinit.__all__) <= set(fastinit.__all__)
    assert "scaled_residual_" in fastinit.__all__
    assert RANDOM | DEPRECATED | {"calculate_gain", "constant_", "ones_", "zeros_", "eye_",
                                  "dirac_"} == set(tinit.__all__)


def _same_default(a, b) -> bool:
    if a is inspect.Parameter.empty or b is inspect.Parameter.empty:
        return a is b
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name", tinit.__all__)
def test_signature_matches_installed_torch(name):
    tp = list(inspect.signature(getattr(tinit, name)).parameters.values())
    fp = list(inspect.signature(getattr(fastinit, name)).parameters.values())
    assert len(fp) >= len(tp)
    for t, f in zip(tp, fp):
        assert (f.name, f.kind) == (t.name, t.kind), f"{name}: {f} vs torch's {t}"
        assert _same_default(f.default, t.default), f"{name}: {f} vs torch's {t}"
    extra = fp[len(tp):]
    if name in RANDOM:
        assert [(p.name, p.kind, p.default) for p in extra] == [
            ("seed", inspect.Parameter.KEYWORD_ONLY, None)]
    else:
        assert extra == []


def test_scaled_residual_signature():
    params = inspect.signature(fastinit.scaled_residual_).parameters
    assert list(params) == ["tensor", "std", "num_layers", "layer_id", "mean", "truncated",
                            "a", "b", "generator", "seed"]
    assert params["std"].default == 0.02
    kinds = {p.name: p.kind for p in params.values()}
    assert all(kinds[n] == inspect.Parameter.KEYWORD_ONLY for n in list(params)[3:])


@pytest.mark.parametrize("name", sorted(set(tinit.__all__) | {"scaled_residual_"}))
def test_documented_like_torch(name):
    doc = inspect.getdoc(getattr(fastinit, name))
    assert doc
    if name not in DEPRECATED:
        assert "Args:" in doc and "Examples:" in doc


@pytest.mark.parametrize("name", sorted(DEPRECATED))
def test_deprecated_aliases_warn_and_delegate(name):
    args = {"uniform": (), "normal": (), "constant": (0.5,), "eye": (), "dirac": (),
            "xavier_uniform": (), "xavier_normal": (), "kaiming_uniform": (),
            "kaiming_normal": (), "orthogonal": (), "sparse": (0.5,)}[name]
    shape = (4, 2, 3) if name == "dirac" else (6, 4)
    with pytest.warns(FutureWarning, match=rf"`nn\.init\.{name}` is now deprecated"):
        getattr(tinit, name)(torch.empty(shape), *args)
    t = torch.full(shape, NAN)
    msg = rf"^`fastinit\.{name}` is now deprecated in favor of `fastinit\.{name}_`\.$"
    with pytest.warns(FutureWarning, match=msg) as w:
        out = getattr(fastinit, name)(t, *args)
    assert w[0].filename == __file__
    assert out is t and not t.isnan().any()
    kw = {"seed": 5} if f"{name}_" in RANDOM else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        a = getattr(fastinit, name)(torch.empty(shape), *args, **kw)
    b = getattr(fastinit, f"{name}_")(torch.empty(shape), *args, **kw)
    assert torch.equal(a, b)


ALL_CALLS = [
    ("uniform_", ()), ("normal_", ()), ("trunc_normal_", ()), ("constant_", (0.5,)),
    ("ones_", ()), ("zeros_", ()), ("eye_", ()), ("dirac_", ()), ("xavier_uniform_", ()),
    ("xavier_normal_", ()), ("kaiming_uniform_", ()), ("kaiming_normal_", ()),
    ("orthogonal_", ()), ("sparse_", (0.3,)),
]


def _shape_for(name):
    return {"dirac_": (6, 4, 3, 3), "eye_": (6, 4), "sparse_": (6, 4)}.get(name, (6, 4, 3))


@pytest.mark.parametrize("name,args", ALL_CALLS, ids=[c[0] for c in ALL_CALLS])
def test_meta_tensors_like_torch(name, args):
    torch_out = getattr(tinit, name)(torch.empty(_shape_for(name), device="meta"), *args)
    assert torch_out.is_meta
    t = torch.empty(_shape_for(name), device="meta")
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    kw = {"generator": g} if name in RANDOM else {}
    assert getattr(fastinit, name)(t, *args, **kw) is t
    assert t.is_meta and t.shape == torch_out.shape
    assert torch.equal(g.get_state(), state)  # nothing drawn for a meta tensor


@pytest.mark.parametrize("name,args", ALL_CALLS, ids=[c[0] for c in ALL_CALLS])
def test_returns_the_tensor_and_writes_every_element(name, args):
    t = torch.full(_shape_for(name), NAN)
    assert getattr(fastinit, name)(t, *args) is t
    assert not t.isnan().any()


def _random_shapes(seed: int) -> list[tuple[int, ...]]:
    """One random shape of each rank 2..5 with 3e4..1.5e5 elements (fixed by the seed)."""
    rng = np.random.default_rng(seed)
    shapes = []
    for ndim in (2, 3, 4, 5):
        hi = int(2 * 1e5 ** (1 / ndim))
        while True:
            shape = tuple(int(x) for x in rng.integers(1, hi + 1, size=ndim))
            if 30_000 <= math.prod(shape) <= 150_000:
                shapes.append(shape)
                break
    return shapes


CONV_SHAPES = [(64, 32, 3, 3), (128, 16, 7), (32, 16, 3, 3, 3), (256, 512)]


SHAPES = CONV_SHAPES + _random_shapes(seed=2024)


def _check_law(x: torch.Tensor, cdf, var: float, mu4: float) -> None:
    v = x.double().flatten().numpy()
    n = v.size
    d = scipy.stats.kstest(v, cdf).statistic
    assert d < ks_critical(n), f"KS distance {d:.4g} >= {ks_critical(n):.4g} (n={n})"
    se = math.sqrt((mu4 - var * var) / n)
    s2 = float(np.mean(v * v)) if var > 0 else 0.0  # mean 0 for every law below
    assert abs(s2 - var) < Z_MAX * se, f"variance {s2:.6g} vs {var:.6g} (SE {se:.3g})"


def _torch_fans(shape):
    return tinit._calculate_fan_in_and_fan_out(torch.empty(shape, device="meta"))


# name, kwargs, "uniform" | "normal", torch's std for the shape
STD_CASES = [
    ("xavier_uniform_", {}, "uniform",
     lambda s: 1.0 * math.sqrt(2.0 / sum(_torch_fans(s)))),
    ("xavier_uniform_", {"gain": 5.0 / 3}, "uniform",
     lambda s: 5.0 / 3 * math.sqrt(2.0 / sum(_torch_fans(s)))),
    ("xavier_normal_", {"gain": 0.5}, "normal",
     lambda s: 0.5 * math.sqrt(2.0 / sum(_torch_fans(s)))),
    ("kaiming_uniform_", {}, "uniform",
     lambda s: tinit.calculate_gain("leaky_relu", 0) / math.sqrt(_torch_fans(s)[0])),
    ("kaiming_uniform_", {"a": math.sqrt(5)}, "uniform",  # nn.Linear / nn.Conv's default
     lambda s: tinit.calculate_gain("leaky_relu", math.sqrt(5)) / math.sqrt(_torch_fans(s)[0])),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, "normal",
     lambda s: math.sqrt(2.0) / math.sqrt(_torch_fans(s)[1])),
    ("kaiming_normal_", {"nonlinearity": "tanh"}, "normal",
     lambda s: 5.0 / 3 / math.sqrt(_torch_fans(s)[0])),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,kw,law,std_of", STD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(STD_CASES)])
def test_fan_based_functions_follow_torchs_law(name, kw, law, std_of, shape):
    std = std_of(shape)
    seed = zlib.crc32(repr((name, kw, shape)).encode())
    x = getattr(fastinit, name)(torch.empty(shape), **kw, seed=seed)
    if law == "uniform":
        bound = math.sqrt(3.0) * std
        assert x.abs().max().item() <= bound
        _check_law(x, scipy.stats.uniform(-bound, 2 * bound).cdf, std * std, 1.8 * std**4)
    else:
        _check_law(x, scipy.stats.norm(0, std).cdf, std * std, 3 * std**4)


def _recorded(name, shape, kw):
    """(torch's args to Tensor.uniform_/normal_, fastinit's kernel params) for one call."""
    seen = {}

    def rec(kind):
        def f(self, *args, **kwargs):
            seen["torch"] = (kind,) + args[:2]
            return self
        return f

    with mock.patch.object(torch.Tensor, "uniform_", rec("uniform")), \
            mock.patch.object(torch.Tensor, "normal_", rec("normal")):
        getattr(tinit, name)(torch.empty(shape), **kw)
    with mock.patch.object(froute, "fill",
                           lambda t, params, *a, **k: seen.__setitem__("fast", params)):
        getattr(fastinit, name)(torch.empty(shape), **kw, seed=1)
    return seen["torch"], seen["fast"]


@pytest.mark.parametrize("shape", SHAPES + [(3, 5), (1, 1), (7, 1, 1, 1)], ids=str)
@pytest.mark.parametrize("name,kw", [
    ("xavier_uniform_", {}), ("xavier_uniform_", {"gain": 1.7}),
    ("xavier_uniform_", {"gain": 2}),
    ("xavier_normal_", {}), ("xavier_normal_", {"gain": 0.3}),
    ("kaiming_uniform_", {}), ("kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_uniform_", {"mode": "FAN_OUT", "nonlinearity": "relu"}),
    ("kaiming_normal_", {}), ("kaiming_normal_", {"a": 0.2, "mode": "fan_out"}),
    ("kaiming_normal_", {"nonlinearity": "selu"}),
    ("uniform_", {"a": -0.3, "b": 0.7}), ("normal_", {"mean": 0.1, "std": 0.02}),
], ids=lambda x: str(x))
def test_bounds_and_std_equal_torchs_bit_for_bit(name, kw, shape):
    (kind, p0, p1), params = _recorded(name, shape, kw)
    if kind == "uniform":
        assert params.dist == 1 and params.shift == p0 and params.scale == p1 - p0
    else:
        assert params.dist == 2 and params.shift == p0 and params.scale == p1


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[4]], ids=str)
@pytest.mark.parametrize("name", ["xavier_uniform_", "kaiming_normal_"])
def test_two_sample_ks_against_torchs_own_output(name, shape):
    g = torch.Generator().manual_seed(11)
    t = getattr(tinit, name)(torch.empty(shape), generator=g).flatten().double().numpy()
    f = getattr(fastinit, name)(torch.empty(shape), seed=11).flatten().double().numpy()
    n = t.size
    crit = math.sqrt(-math.log(KS_ALPHA / 2) / 2) * math.sqrt(2.0 / n)
    assert scipy.stats.ks_2samp(t, f).statistic < crit


@pytest.mark.parametrize("shape", SHAPES[2:], ids=str)
def test_basic_functions_follow_their_laws(shape):
    u = fastinit.uniform_(torch.empty(shape), -0.25, 0.75, seed=21)
    _check_law(u - 0.25, scipy.stats.uniform(-0.5, 1.0).cdf, 1 / 12, 1 / 80)
    nrm = fastinit.normal_(torch.empty(shape), 0.0, 0.02, seed=22)
    _check_law(nrm, scipy.stats.norm(0, 0.02).cdf, 0.02**2, 3 * 0.02**4)
    tn = fastinit.trunc_normal_(torch.empty(shape), 0.0, 1.0, -1.5, 1.5, seed=23)
    law = scipy.stats.truncnorm(-1.5, 1.5)
    _check_law(tn, law.cdf, law.var(), law.moment(4))


@pytest.mark.parametrize("shape", [(512, 256), (1000, 100), (200, 64)], ids=str)
def test_sparse_nonzero_values_follow_the_normal(shape):
    x = fastinit.sparse_(torch.empty(shape), 0.3, std=0.05, seed=31)
    nz = x[x != 0]
    assert nz.numel() == (shape[0] - math.ceil(0.3 * shape[0])) * shape[1]
    _check_law(nz, scipy.stats.norm(0, 0.05).cdf, 0.05**2, 3 * 0.05**4)


CONSTANT_VALUES = [0.0, 1.0, -2.5, 1 / 3, 0.1, 1.00390625 + 1e-9, 65504.0, 1e-8, 1e-40,
                   5e-324, 3.3895313892515355e38, math.inf, -math.inf, math.nan, True, 7,
                   2**53 + 1]


@pytest.mark.parametrize("dtype", DTYPES + [torch.int32, torch.int64, torch.bool,
                                            torch.complex64], ids=str)
def test_constant_equals_torchs_fill(dtype):
    for v in CONSTANT_VALUES:
        try:
            expected = tinit.constant_(torch.empty(9, dtype=dtype), v)
        except RuntimeError:
            with pytest.raises(RuntimeError):
                fastinit.constant_(torch.empty(9, dtype=dtype), v)
            continue
        t = torch.empty(9, dtype=dtype)
        assert fastinit.constant_(t, v) is t
        assert_bitwise_equal(t, expected)
    for fn in ("zeros_", "ones_"):
        assert_bitwise_equal(getattr(fastinit, fn)(torch.empty(5, 3, dtype=dtype)),
                             getattr(tinit, fn)(torch.empty(5, 3, dtype=dtype)))


def test_constant_takes_0_dim_tensors_and_numpy_scalars():
    assert (fastinit.constant_(torch.empty(4), torch.tensor(2.5)) == 2.5).all()
    assert (fastinit.constant_(torch.empty(4), np.float32(0.5)) == 0.5).all()
    assert (fastinit.constant_(torch.empty(4), 1.5 + 0j) == 1.5).all()


def test_constant_negative_zero():
    assert_bitwise_equal(fastinit.constant_(torch.empty(4), -0.0),
                         torch.full((4,), -0.0))


def test_constants_on_views_leave_the_rest_alone():
    base = torch.full((6, 8), NAN)
    fastinit.constant_(base[::2, 1::3], 0.25)
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[::2, 1::3] = True
    assert (base[mask] == 0.25).all() and base[~mask].isnan().all()


def _scale(seen):
    return seen[0].scale


def _recorded_params(monkeypatch, call):
    seen = []
    monkeypatch.setattr("fastinit.route.fill", lambda t, p, *a, **k: seen.append(p))
    call(torch.empty(4, 4))
    return seen[0]


def test_scaled_residual_std_formulas(monkeypatch):
    for n in range(1, 201):  # GPT-2 / Megatron: sigma / sqrt(2.0 * num_layers)
        p = _recorded_params(monkeypatch, lambda t: fastinit.scaled_residual_(t, 0.02, n))
        assert p.dist == 2 and p.shift == 0.0 and p.scale == 0.02 / math.sqrt(2.0 * n)
    for layer_id in range(128):  # torchtitan depth_init
        p = _recorded_params(
            monkeypatch, lambda t: fastinit.scaled_residual_(t, layer_id=layer_id,
                                                             truncated=True))
        assert p.dist == 3 and p.scale == 0.02 / (2 * (layer_id + 1)) ** 0.5


@pytest.mark.parametrize("form", [{"num_layers": 12}, {"layer_id": 5}])
def test_scaled_residual_normal_law(form):
    depth = form.get("num_layers", form.get("layer_id", 0) + 1)
    sigma = 0.02 / math.sqrt(2 * depth)
    x = fastinit.scaled_residual_(torch.empty(1000, 1000), 0.02, **form, seed=77)
    v = x.double().flatten().numpy()
    assert scipy.stats.kstest(v, scipy.stats.norm(0, sigma).cdf).statistic < ks_critical(v.size)
    se = math.sqrt(2 * sigma**4 / v.size)  # SE of the sample variance of a normal
    assert abs(np.mean(v * v) - sigma**2) < Z_MAX * se


@pytest.mark.parametrize("form", [{"num_layers": 24}, {"layer_id": 0}])
def test_scaled_residual_truncated_law(form):
    depth = form.get("num_layers", form.get("layer_id", 0) + 1)
    sigma = 0.02 / math.sqrt(2 * depth)
    lo, hi = -1.5 * sigma, 2.0 * sigma  # tight bounds, so the truncation matters
    x = fastinit.scaled_residual_(torch.empty(1000, 1000), 0.02, **form, truncated=True,
                                  a=lo, b=hi, seed=78)
    v = x.double().flatten().numpy()
    assert v.min() >= lo and v.max() <= hi
    law = scipy.stats.truncnorm(-1.5, 2.0, scale=sigma)
    assert scipy.stats.kstest(v, law.cdf).statistic < ks_critical(v.size)
    m4 = law.expect(lambda y: (y - law.mean()) ** 4)
    se = math.sqrt((m4 - law.var() ** 2) / v.size)
    assert abs(np.var(v) - law.var()) < Z_MAX * se


def test_scaled_residual_equals_the_plain_fills():
    s = 0.02 / math.sqrt(2.0 * 12)
    assert_bitwise_equal(fastinit.scaled_residual_(torch.empty(64, 48), 0.02, 12, seed=5),
                         fastinit.normal_(torch.empty(64, 48), 0.0, s, seed=5))
    s = 0.02 / math.sqrt(2.0 * 4)
    assert_bitwise_equal(
        fastinit.scaled_residual_(torch.empty(64, 48), layer_id=3, truncated=True, mean=0.1,
                                  seed=5),
        fastinit.trunc_normal_(torch.empty(64, 48), 0.1, s, -2.0, 2.0, seed=5))


@pytest.mark.parametrize("kw,exc", [
    ({}, ValueError),
    ({"num_layers": 12, "layer_id": 3}, ValueError),
    ({"num_layers": 0}, ValueError),
    ({"num_layers": -2}, ValueError),
    ({"num_layers": 1.5}, TypeError),
    ({"num_layers": True}, TypeError),
    ({"layer_id": -1}, ValueError),
    ({"layer_id": "3"}, TypeError),
    ({"num_layers": 12, "std": -0.02}, ValueError),
    ({"num_layers": 12, "std": NAN}, ValueError),
    ({"num_layers": 12, "std": math.inf}, ValueError),
    ({"num_layers": 12, "mean": NAN}, ValueError),
    ({"num_layers": 12, "a": -0.1}, ValueError),
    ({"num_layers": 12, "b": 0.1}, ValueError),
    ({"num_layers": 12, "std": 0.0, "truncated": True}, ValueError),
    ({"num_layers": 12, "truncated": True, "a": 0.1, "b": -0.1}, ValueError),
    ({"num_layers": 12, "truncated": True, "a": 1.0, "b": 2.0}, ValueError),  # 490 sigma away
    ({"num_layers": 12, "generator": 3}, TypeError),
    ({"num_layers": 12, "seed": 1.5}, TypeError),
], ids=str)
def test_scaled_residual_validation(kw, exc):
    t = torch.full((8, 8), NAN)
    with pytest.raises(exc):
        fastinit.scaled_residual_(t, **kw)
    assert t.isnan().all()


def test_scaled_residual_std_zero_gives_the_mean():
    assert (fastinit.scaled_residual_(torch.empty(5, 5), 0.0, 4, mean=0.5) == 0.5).all()


SEEDED = [
    ("uniform_", (-0.5, 0.5)), ("normal_", (0.0, 0.1)), ("trunc_normal_", (0.0, 1.0, -1.0, 1.0)),
    ("xavier_uniform_", ()), ("xavier_normal_", ()), ("kaiming_uniform_", ()),
    ("kaiming_normal_", ()), ("orthogonal_", ()), ("scaled_residual_", (0.02, 6)),
]


@pytest.mark.parametrize("name,args", SEEDED, ids=[c[0] for c in SEEDED])
def test_views_are_filled_by_logical_index(name, args):
    fn = getattr(fastinit, name)
    expected = fn(torch.empty(8, 6, 3, 3), *args, seed=42)
    cl = torch.full((8, 6, 3, 3), NAN).to(memory_format=torch.channels_last)
    assert not cl.is_contiguous()
    fn(cl, *args, seed=42)
    assert_bitwise_equal(cl.contiguous(), expected)
    # a strided slice of a bigger tensor: the rest stays NaN
    base = torch.full((10, 8, 3, 5), NAN)
    view = base[1:9, 1:7, :, 1:4]
    fn(view, *args, seed=42)
    assert_bitwise_equal(view.contiguous(), expected)
    mask = torch.ones_like(base, dtype=torch.bool)
    mask[1:9, 1:7, :, 1:4] = False
    assert base[mask].isnan().all()
    # a transposed 2-D view
    expected2 = fn(torch.empty(7, 5), *args, seed=43)
    tr = torch.full((5, 7), NAN).t()
    fn(tr, *args, seed=43)
    assert_bitwise_equal(tr.contiguous(), expected2)


def test_sparse_on_views():
    expected = fastinit.sparse_(torch.empty(9, 6), 0.4, seed=2)
    tr = torch.full((6, 9), NAN).t()
    fastinit.sparse_(tr, 0.4, seed=2)
    assert_bitwise_equal(tr.contiguous(), expected)
    base = torch.full((12, 10), NAN)
    fastinit.sparse_(base[1:10, 2:8], 0.4, seed=2)
    assert_bitwise_equal(base[1:10, 2:8].contiguous(), expected)
    base[1:10, 2:8] = 0
    assert base.isnan().sum() == 120 - 54


ALL = SEEDED + [("sparse_", (0.3,)), ("constant_", (0.5,)), ("zeros_", ()), ("ones_", ()),
                ("eye_", ()), ("dirac_", ())]


def _shape(name):
    return {"sparse_": (12, 8), "eye_": (12, 8), "dirac_": (6, 4, 3, 3)}.get(name, (12, 8, 3))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,args", ALL, ids=[c[0] for c in ALL])
def test_every_dtype(name, args, dtype):
    t = torch.full(_shape(name), NAN, dtype=dtype)
    assert getattr(fastinit, name)(t, *args) is t
    assert t.dtype == dtype and torch.isfinite(t).all()


@pytest.mark.parametrize("name,args", [("normal_", (0.0, 0.7)), ("xavier_normal_", ()),
                                       ("kaiming_normal_", ()),
                                       ("scaled_residual_", (0.02, 3))])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_normals_are_the_float32_values_rounded(name, args, dtype):
    fn = getattr(fastinit, name)
    ref = fn(torch.empty(64, 40), *args, seed=9)
    assert_bitwise_equal(fn(torch.empty(64, 40, dtype=dtype), *args, seed=9), ref.to(dtype))


@pytest.mark.parametrize("name,args", ALL, ids=[c[0] for c in ALL])
def test_parameters_requiring_grad(name, args):
    p = torch.nn.Parameter(torch.full(_shape(name), NAN))
    with torch.enable_grad():
        out = getattr(fastinit, name)(p, *args)
    assert out is p and p.requires_grad and p.is_leaf and p.grad_fn is None
    assert not p.isnan().any()


SEED = 1234


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
