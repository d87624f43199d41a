"""The argument checks of the init functions (fastinit.arguments), against torch.nn.init.

* Bad arguments: a table of inputs torch rejects goes through torch and fastinit;
  fastinit must raise an instance of torch's exception type (``ArgumentError`` is both a
  ValueError and a RuntimeError), with torch's message where the table says so, and
  leave the NaN-filled (or sentinel-filled) tensor untouched. A second table lists the
  deliberate deviations: inputs torch accepts (or rejects only by accident) that
  fastinit rejects with a ValueError; each entry checks that torch still behaves as
  documented, so a change in torch shows up here.
* Gains (``calculate_gain``) and the zero-element warning of the fan rule as torch.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.init as tinit

import fastinit
import fastinit.init as finit


def test_calculate_gain_equals_torch():
    cases = [("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
             ("conv_transpose1d", None), ("conv_transpose2d", None), ("conv_transpose3d", None),
             ("sigmoid", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
             ("leaky_relu", 0.2), ("leaky_relu", 3), ("leaky_relu", -0.5), ("selu", None),
             ("relu", "ignored")]
    for nl, p in cases:
        t, f = tinit.calculate_gain(nl, p), fastinit.calculate_gain(nl, p)
        assert type(t) is type(f) and t == f, (nl, p)


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
