"""Parity of the ``torch.nn.init`` drop-in with the installed torch.

* The surface: every name of ``torch.nn.init.__all__`` exists as ``fastinit.<name>``
  with torch's parameters (names, kinds, order, defaults) as a prefix of fastinit's,
  and the only addition is the keyword-only ``seed=None`` of the random functions.
* Bad arguments: a table of inputs torch rejects goes through torch and fastinit;
  fastinit must raise an instance of torch's exception type (``ArgumentError`` is both a
  ValueError and a RuntimeError), with torch's message where the table says so, and
  leave the NaN-filled (or sentinel-filled) tensor untouched. A second table lists the
  deliberate deviations: inputs torch accepts (or rejects only by accident) that
  fastinit rejects with a ValueError; each entry checks that torch still behaves as
  documented, so a change in torch shows up here.
* Warnings, meta tensors and return values as torch.
* Distributions: on random shapes of 2 to 5 dimensions (plus conv-shaped weights),
  every random function's values are compared with its analytic law by a
  Kolmogorov-Smirnov test, the parameters of that law being torch's (fan rule, gain,
  std, bound), and the bound / std fastinit hands to its backend equals the value torch
  passes to ``Tensor.uniform_`` / ``Tensor.normal_``, bit for bit.

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
import fastinit.init as finit
import fastinit.route as froute

from tests.stats_helpers import KS_ALPHA, Z_MAX  # the thresholds, defined once

#: Functions that draw random numbers (and take ``generator`` and fastinit's ``seed``).
RANDOM = {"uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
          "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_"}
DEPRECATED = {"uniform", "normal", "constant", "eye", "dirac", "xavier_uniform",
              "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse"}

# --- the surface ------------------------------------------------------------------------------


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


def test_calculate_gain_equals_torch():
    cases = [("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
             ("conv_transpose1d", None), ("conv_transpose2d", None), ("conv_transpose3d", None),
             ("sigmoid", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
             ("leaky_relu", 0.2), ("leaky_relu", 3), ("leaky_relu", -0.5), ("selu", None),
             ("relu", "ignored")]
    for nl, p in cases:
        t, f = tinit.calculate_gain(nl, p), fastinit.calculate_gain(nl, p)
        assert type(t) is type(f) and t == f, (nl, p)


# --- bad arguments ----------------------------------------------------------------------------

NAN = math.nan
INF = math.inf


def _f(*shape, dtype=torch.float32):
    return lambda: torch.full(shape, NAN, dtype=dtype)


def _i(*shape):
    return lambda: torch.full(shape, 7, dtype=torch.int32)


#: (id, call(module, tensor), tensor factory, torch's message is replicated)
BAD = [
    ("uniform a>b", lambda m, t: m.uniform_(t, 1.0, 0.0), _f(4, 4), True),
    ("uniform a=nan", lambda m, t: m.uniform_(t, NAN, 1.0), _f(4, 4), False),
    ("uniform b=inf", lambda m, t: m.uniform_(t, 0.0, INF), _f(4, 4), True),
    ("uniform a=-inf", lambda m, t: m.uniform_(t, -INF, 0.0), _f(4, 4), True),
    ("uniform f16 b=1e6", lambda m, t: m.uniform_(t, 0.0, 1e6), _f(4, 4, dtype=torch.float16),
     True),
    ("uniform int", lambda m, t: m.uniform_(t), _i(4, 4), False),
    ("uniform a=str", lambda m, t: m.uniform_(t, "x", 1.0), _f(4, 4), False),
    ("uniform generator=str", lambda m, t: m.uniform_(t, generator="g"), _f(4, 4), False),
    ("normal std<0", lambda m, t: m.normal_(t, 0.0, -1.0), _f(4, 4), False),
    ("normal std=nan", lambda m, t: m.normal_(t, 0.0, NAN), _f(4, 4), False),
    ("normal int", lambda m, t: m.normal_(t), _i(4, 4), False),
    ("normal mean=None", lambda m, t: m.normal_(t, None), _f(4, 4), False),
    ("trunc std=0", lambda m, t: m.trunc_normal_(t, 0.0, 0.0), _f(4, 4), False),
    ("trunc a>b", lambda m, t: m.trunc_normal_(t, 0.0, 1.0, 2.0, 1.0), _f(4, 4), False),
    ("trunc int", lambda m, t: m.trunc_normal_(t), _i(4, 4), False),
    ("trunc a=str", lambda m, t: m.trunc_normal_(t, 0.0, 1.0, "x", 2.0), _f(4, 4), False),
    ("constant f16 overflow", lambda m, t: m.constant_(t, 1e6), _f(4, dtype=torch.float16),
     True),
    ("constant f32 overflow", lambda m, t: m.constant_(t, 1e39), _f(4), True),
    ("constant bf16 overflow", lambda m, t: m.constant_(t, -1e39),
     _f(4, dtype=torch.bfloat16), True),
    ("constant str", lambda m, t: m.constant_(t, "x"), _f(4), False),
    ("constant None", lambda m, t: m.constant_(t, None), _f(4), False),
    ("constant 1-d value", lambda m, t: m.constant_(t, torch.tensor([1.0])), _f(4), True),
    ("constant complex", lambda m, t: m.constant_(t, 1 + 2j), _f(4), True),
    ("eye 3-d", lambda m, t: m.eye_(t), _f(2, 2, 2), True),
    ("eye 1-d", lambda m, t: m.eye_(t), _f(3), True),
    ("dirac 2-d", lambda m, t: m.dirac_(t), _f(3, 3), True),
    ("dirac 6-d", lambda m, t: m.dirac_(t), _f(1, 1, 1, 1, 1, 1), True),
    ("dirac groups not dividing", lambda m, t: m.dirac_(t, 3), _f(4, 2, 3), True),
    ("dirac groups=1.5", lambda m, t: m.dirac_(t, 1.5), _f(6, 2, 3), False),
    ("xavier_uniform 1-d", lambda m, t: m.xavier_uniform_(t), _f(5), True),
    ("xavier_uniform gain=nan", lambda m, t: m.xavier_uniform_(t, NAN), _f(4, 4), False),
    ("xavier_uniform gain<0", lambda m, t: m.xavier_uniform_(t, -1.0), _f(4, 4), False),
    ("xavier_uniform gain=inf", lambda m, t: m.xavier_uniform_(t, INF), _f(4, 4), False),
    ("xavier_uniform int", lambda m, t: m.xavier_uniform_(t), _i(4, 4), False),
    ("xavier_uniform 0x0", lambda m, t: m.xavier_uniform_(t), _f(0, 0), True),
    ("xavier_normal 1-d", lambda m, t: m.xavier_normal_(t), _f(5), True),
    ("xavier_normal gain<0", lambda m, t: m.xavier_normal_(t, -1.0), _f(4, 4), False),
    ("xavier_normal gain=nan", lambda m, t: m.xavier_normal_(t, NAN), _f(4, 4), False),
    ("kaiming_uniform mode", lambda m, t: m.kaiming_uniform_(t, mode="fan_avg"), _f(4, 4),
     True),
    ("kaiming_uniform nonlinearity", lambda m, t: m.kaiming_uniform_(t, nonlinearity="gelu"),
     _f(4, 4), True),
    ("kaiming_uniform a=str", lambda m, t: m.kaiming_uniform_(t, a="x"), _f(4, 4), True),
    ("kaiming_uniform a=True", lambda m, t: m.kaiming_uniform_(t, a=True), _f(4, 4), True),
    ("kaiming_uniform 1-d", lambda m, t: m.kaiming_uniform_(t), _f(5), True),
    ("kaiming_uniform a=nan", lambda m, t: m.kaiming_uniform_(t, a=NAN), _f(4, 4), False),
    ("kaiming_uniform mode=None", lambda m, t: m.kaiming_uniform_(t, mode=None), _f(4, 4),
     True),
    ("kaiming_uniform int", lambda m, t: m.kaiming_uniform_(t), _i(4, 4), False),
    ("kaiming_normal mode", lambda m, t: m.kaiming_normal_(t, mode="avg"), _f(4, 4), True),
    ("kaiming_normal a=nan", lambda m, t: m.kaiming_normal_(t, a=NAN), _f(4, 4), False),
    ("kaiming_normal int", lambda m, t: m.kaiming_normal_(t), _i(4, 4), False),
    ("orthogonal 1-d", lambda m, t: m.orthogonal_(t), _f(5), True),
    ("orthogonal int", lambda m, t: m.orthogonal_(t), _i(4, 4), False),
    ("orthogonal gain=str", lambda m, t: m.orthogonal_(t, "x"), _f(4, 4), False),
    ("sparse 1-d", lambda m, t: m.sparse_(t, 0.5), _f(5), True),
    ("sparse 3-d", lambda m, t: m.sparse_(t, 0.5), _f(2, 2, 2), True),
    ("sparse std<0", lambda m, t: m.sparse_(t, 0.5, -1.0), _f(4, 4), False),
    ("sparse sparsity=nan", lambda m, t: m.sparse_(t, NAN), _f(4, 4), False),
    ("sparse sparsity=str", lambda m, t: m.sparse_(t, "x"), _f(4, 4), False),
    ("sparse int", lambda m, t: m.sparse_(t, 0.5), _i(4, 4), False),
    ("calculate_gain unknown", lambda m, t: m.calculate_gain("gelu"), _f(1), True),
    ("calculate_gain slope=str", lambda m, t: m.calculate_gain("leaky_relu", "x"), _f(1), True),
    ("calculate_gain slope=np32",
     lambda m, t: m.calculate_gain("leaky_relu", np.float32(0.2)), _f(1), True),
]


def _untouched(t: torch.Tensor) -> bool:
    if t.is_floating_point():
        return bool(t.isnan().all())
    return bool((t == 7).all())


def test_the_bad_argument_table_is_large():
    assert len(BAD) >= 30


@pytest.mark.parametrize("call,make,same_message", [c[1:] for c in BAD],
                         ids=[c[0] for c in BAD])
def test_bad_arguments_raise_torchs_type_before_writing(call, make, same_message):
    with pytest.raises(Exception) as torch_exc:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(tinit, make())
    t = make()
    with pytest.raises(Exception) as fast_exc:
        call(fastinit, t)
    assert isinstance(fast_exc.value, torch_exc.type), (fast_exc.value, torch_exc.value)
    if same_message:
        assert str(fast_exc.value) == str(torch_exc.value)
    assert _untouched(t)


#: Inputs that torch accepts although they make no sense, or rejects with an accidental
#: exception type: fastinit raises ValueError. (id, call(module, tensor), factory,
#: what torch does: None = returns, or the exception type it raises)
DEVIATIONS = [
    ("normal mean=nan", lambda m, t: m.normal_(t, NAN, 1.0), _f(4, 4), None),
    ("normal std=inf", lambda m, t: m.normal_(t, 0.0, INF), _f(4, 4), None),
    ("trunc mean=nan", lambda m, t: m.trunc_normal_(t, NAN, 1.0), _f(4, 4), None),
    ("trunc std<0", lambda m, t: m.trunc_normal_(t, 0.0, -1.0), _f(4, 4), None),
    ("trunc a==b", lambda m, t: m.trunc_normal_(t, 0.0, 1.0, 1.0, 1.0), _f(4, 4), None),
    ("trunc far tail", lambda m, t: m.trunc_normal_(t, 0.0, 1.0, 12.0, 13.0), _f(4, 4), None),
    ("uniform bf16 empty range", lambda m, t: m.uniform_(t, 1.0001, 1.001),
     _f(4, dtype=torch.bfloat16), None),
    ("uniform meta a>b", lambda m, t: m.uniform_(t, 1.0, 0.0),
     lambda: torch.empty(4, device="meta"), None),
    ("xavier_normal gain=inf", lambda m, t: m.xavier_normal_(t, INF), _f(4, 4), None),
    ("kaiming_uniform a=inf", lambda m, t: m.kaiming_uniform_(t, a=INF), _f(4, 4), None),
    ("kaiming empty bad mode", lambda m, t: m.kaiming_uniform_(t, mode="x"), _f(0, 4), None),
    ("orthogonal gain=nan", lambda m, t: m.orthogonal_(t, NAN), _f(4, 4), None),
    ("orthogonal gain=inf", lambda m, t: m.orthogonal_(t, INF), _f(4, 4), None),
    ("sparse sparsity>1", lambda m, t: m.sparse_(t, 1.5), _f(4, 4), None),
    ("sparse sparsity<0", lambda m, t: m.sparse_(t, -0.5), _f(4, 4), None),
    ("sparse sparsity=inf", lambda m, t: m.sparse_(t, INF), _f(4, 4), OverflowError),
    ("dirac groups<0", lambda m, t: m.dirac_(t, -2), _f(4, 2, 3), None),
    ("dirac groups=0", lambda m, t: m.dirac_(t, 0), _f(4, 2, 3), ZeroDivisionError),
]


@pytest.mark.parametrize("call,make,torch_does", [c[1:] for c in DEVIATIONS],
                         ids=[c[0] for c in DEVIATIONS])
def test_deliberate_deviations_raise_value_error(call, make, torch_does):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if torch_does is None:
            call(tinit, make())
        else:
            with pytest.raises(torch_does):
                call(tinit, make())
    t = make()
    with pytest.raises(ValueError):
        call(fastinit, t)
    assert t.is_meta or _untouched(t)


def test_argument_error_is_both_value_and_runtime_error():
    assert issubclass(finit.ArgumentError, ValueError)
    assert issubclass(finit.ArgumentError, RuntimeError)


# --- warnings, meta tensors, return values ----------------------------------------------------


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
@pytest.mark.parametrize("shape", [(0, 4), (3, 0, 2), (0,)])
def test_zero_element_warning_like_torch(name, shape):
    with pytest.warns(UserWarning) as tw:
        getattr(tinit, name)(torch.empty(shape))
    t = torch.empty(shape)
    with pytest.warns(UserWarning) as fw:
        assert getattr(fastinit, name)(t) is t
    assert [str(w.message) for w in fw] == [str(w.message) for w in tw]
    assert fw[0].filename == __file__  # stacklevel points at the caller, as torch's


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


# --- distributions against torch's parameters -------------------------------------------------


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


def _ks_crit(n: int) -> float:
    return float(scipy.stats.kstwo.isf(KS_ALPHA, n))


def _check_law(x: torch.Tensor, cdf, var: float, mu4: float) -> None:
    v = x.double().flatten().numpy()
    n = v.size
    d = scipy.stats.kstest(v, cdf).statistic
    assert d < _ks_crit(n), f"KS distance {d:.4g} >= {_ks_crit(n):.4g} (n={n})"
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
