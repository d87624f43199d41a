"""The client-model zoo: models from timm, torchvision, diffusers, torchtitan and litgpt,
written by those libraries (``tests/differential/client_zoo.py``), built both ways fastinit offers -
under ``fastinit.empty_init()`` and under a plain ``torch.device("meta")`` - materialized,
and compared with the library's own eager construction by ``tests/differential/zoo.py`` (tensor by
tensor: constants and fixed elements bitwise, random tensors by law; ties, shared storage,
memory format, a finite forward pass, seeds).

Every (model, way) must be exact, or - for the plain meta build only, which cannot see what
``__init__`` did - a clear error: an exception whose message names a tensor or a module
class of the model and the fix (``fastinit.empty_init``). A silent difference fails, and so
does any error under ``empty_init``. Nothing here is marked xfail: a failure is a defect
of materialize.

``-eager`` cases check the comparison itself on each model: eager construction under other
seeds passes (no false alarm). The tests at the end show that it fails on wrong stand-ins
(torch's layer defaults in place of a model's own init loop, one tensor re-drawn from a
wrong law, one element of garbage), naming the tensor.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.differential import client_zoo, zoo

WAYS = ("eager", "meta", "empty_init")
_MODES = {m.name: m for m in zoo.MODES}


def _params() -> list:
    out = []
    for case in client_zoo.CASES:
        for way in WAYS:
            marks = []
            if way in _MODES and _MODES[way].skip_reason() is not None:
                marks.append(pytest.mark.skip(reason=_MODES[way].skip_reason()))
            out.append(pytest.param(case, way, marks=marks, id=f"{case.name}-{way}"))
    return out


_REF: dict = {}  # the latest case's eager reference (the ways of one case run together)


def _reference(case: zoo.Case) -> zoo.Reference:
    if case.name not in _REF:
        _REF.clear()
        _REF[case.name] = zoo.reference(case.build)
    return _REF[case.name]


def unclear(error: BaseException, ref: zoo.Reference) -> list[str]:
    """Why ``error`` is not a clear refusal (empty: it is one): it must be an exception of
    torch's kinds whose message names a tensor or a module class of the model and the fix."""
    msg = str(error)
    problems = []
    if not isinstance(error, (ValueError, TypeError, RuntimeError, NotImplementedError)):
        problems.append(f"raised {type(error).__name__}, not a ValueError/TypeError/"
                        "RuntimeError/NotImplementedError")
    names = set(ref.snaps[0].info)
    classes = {type(m).__name__ for m in ref.model.modules()}
    if not any(n in msg for n in names) and not any(c in msg for c in classes):
        problems.append("the message names no tensor and no module class of the model")
    if "empty_init" not in msg:
        problems.append("the message does not name the fix (fastinit.empty_init)")
    return problems


@pytest.mark.parametrize("case,way", _params())
def test_client_model(case: zoo.Case, way: str) -> None:
    """``eager``: the comparison accepts eager construction under other seeds. ``meta`` /
    ``empty_init``: materialize equals eager construction in every aspect of
    ``zoo.ASPECTS``, or (plain meta only) refuses clearly."""
    ref = _reference(case)
    if way == "eager":
        errs = zoo.eager_errors(case, ref)
        assert errs == [], f"{case.name}: the comparison rejects eager construction itself: {errs}"
        return
    mode = _MODES[way]
    if way == "meta":
        try:
            with zoo._quiet(), torch.device("meta"):
                case.build()
        except Exception as e:  # noqa: BLE001 - the library's code, before fastinit runs
            pytest.skip(f"{case.name} cannot be built under torch.device('meta') at all "
                        f"({type(e).__name__}: {e}); nothing to materialize")
    outcome = zoo.Outcome(case, mode, ref, zoo.materialize_all(case.build, mode))
    error = outcome.ours.error
    if error is not None:
        problems = unclear(error, ref) if way == "meta" else ["empty_init must be exact"]
        if problems:
            pytest.fail(f"{case.name} [{way}]: materialize raised {type(error).__name__}: "
                        f"{error}\n  -> not acceptable: {'; '.join(problems)}", pytrace=False)
        return  # a clear refusal of a plain meta build
    failed = {a: zoo.check(outcome, a) for a in zoo.ASPECTS}
    failed = {a: e for a, e in failed.items() if e}
    if failed:
        lines = [f"{a}: {e}" for a, errs in failed.items() for e in errs[:6]]
        counts = ", ".join(f"{a} ({len(e)} failure(s))" for a, e in failed.items())
        pytest.fail(f"{case.name} [{way}]: silent differences from eager construction in "
                    f"{counts}; the first of each:\n  " + "\n  ".join(lines), pytrace=False)


def test_zoo_size_and_kinds() -> None:
    """At least 30 models, from every library the zoo draws on."""
    names = [c.name for c in client_zoo.CASES]
    assert len(names) == len(set(names)) and len(names) >= 30, len(names)
    for prefix in ("timm-", "tv-", "diffusers-", "torchtitan-", "litgpt-"):
        assert any(n.startswith(prefix) for n in names), prefix


# --- the comparison fails on wrong stand-ins ----------------------------------------------------

_BY_NAME = {c.name: c for c in client_zoo.CASES}


def _to_empty_and_reset(case: zoo.Case):
    """A wrong stand-in for materialize: build on meta, ``to_empty``, then every module's
    ``reset_parameters()`` - torch's layer defaults, without the model's own init."""
    def build():
        with torch.device("meta"):
            model = case.build()
        model.to_empty(device="cpu")
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
        return model
    return build


@pytest.mark.parametrize("name,blamed", [
    # timm's ResNet: kaiming-normal fan-out convolutions, zero_init_last
    ("timm-test_resnet", ["conv1.0.weight", "layer1.0.bn2.weight"]),
    # diffusers' ControlNet: its zero convolutions come back random
    ("diffusers-ControlNetModel", ["controlnet_down_blocks.0.weight",
                                   "controlnet_mid_block.weight"]),
])
def test_reset_parameters_only_fails(name: str, blamed: list[str]) -> None:
    case = _BY_NAME[name]
    ref = zoo.reference(case.build)
    assert zoo.eager_errors(case, ref) == []
    errs = zoo.value_errors(ref, zoo.standin_snapshots(_to_empty_and_reset(case)))
    for tensor in blamed:
        assert any(e.startswith(tensor) for e in errs), (tensor, errs)


@pytest.fixture(scope="module")
def titan() -> tuple[zoo.Reference, list[zoo.Snapshot]]:
    """torchtitan's Llama 3 reference and a correct stand-in (eager, other seeds)."""
    case = _BY_NAME["torchtitan-llama3"]
    ref = zoo.reference(case.build)
    return ref, zoo.standin_snapshots(case.build)


_WO = "layers.1.attention.wo.weight"  # trunc-normal, depth-scaled std 0.02 / sqrt(4)


def _redrawn(t: torch.Tensor, i: int, first: torch.Tensor) -> torch.Tensor:
    """The tensor re-drawn with the undepth-scaled std (0.02): what losing the partial's
    keyword argument would give."""
    g = torch.Generator().manual_seed(100 + i)
    return torch.nn.init.trunc_normal_(torch.empty_like(t), std=0.02, generator=g)


def _garbage_row(t: torch.Tensor, i: int, first: torch.Tensor) -> torch.Tensor:
    """One row of words of uninitialized memory (huge, finite): the tail check sees it.
    (A single such element among thousands is below what a law test can see; NaN and inf
    are caught one by one.)"""
    t[3] = 3.0e19
    return t


def _one_nan(t: torch.Tensor, i: int, first: torch.Tensor) -> torch.Tensor:
    t.view(-1)[7] = math.nan
    return t


@pytest.mark.parametrize("fn,expected", [
    (_redrawn, f"{_WO}: std"),
    (_garbage_row, f"{_WO}: "),
    (_one_nan, f"{_WO}: 2 of 8192 values are not finite"),
    (lambda t, i, first: torch.zeros_like(t), f"{_WO}: "),
])
def test_one_wrong_tensor_fails(titan, fn, expected: str) -> None:
    """One tensor of a torchtitan model wrong: caught, and only that tensor is blamed."""
    ref, ours = titan
    assert zoo.value_errors(ref, ours) == []
    errs = zoo.value_errors(ref, zoo.edit(ours, _WO, fn))
    assert any(e.startswith(expected) for e in errs), errs
    assert all(_WO in e for e in errs), errs


def test_layer_scale_constant_is_bitwise() -> None:
    """timm's ConvNeXt layer scale (a constant ``ls_init_value``): one ulp off is caught."""
    case = _BY_NAME["timm-ConvNeXt-ls"]
    ref = zoo.reference(case.build)
    ours = zoo.standin_snapshots(case.build)
    assert zoo.value_errors(ref, ours) == []
    name = next(n for n in ref.fixed if n.endswith("gamma") and not ref.is_random(n))
    errs = zoo.value_errors(ref, zoo.edit(ours, name, lambda t, i, first:
                                          torch.nextafter(t, torch.tensor(math.inf))))
    assert errs and all(e.startswith(f"{name} (constant tensor") for e in errs), errs


def test_unclear_error_is_not_accepted() -> None:
    """A refusal must name a tensor or class and the fix: a bare error is not accepted."""
    ref = zoo.reference(lambda: nn.Sequential(nn.Linear(4, 4)))
    assert unclear(ValueError("uninitialized memory"), ref) != []
    assert unclear(ValueError("0.weight: built on meta; use fastinit.empty_init()"), ref) == []
    assert unclear(ValueError("Linear: build it under fastinit.empty_init()"), ref) == []
    assert unclear(AssertionError("0.weight, fastinit.empty_init"), ref) != []
