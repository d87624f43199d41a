"""patch(): unmodified code through fastinit, exactly as eager code, and nothing left behind.

* routing: torch's layers and ``torch.nn.init`` calls give fastinit's values;
* restoration: after the block (normal exit, exception, nesting) every module holds
  torch's own functions again - by identity - also modules first imported inside it;
* deferred: whatever the code can observe inside the block (reads, ``torch.save``,
  pickling, safetensors, ``numpy()`` on views, raw storage) or after an exception leaves
  it is what eager execution gives; autograd sees the writes.
"""
from __future__ import annotations

import importlib
import io
import math
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import fastinit
from fastinit import backends
from fastinit.intercept import INIT_NAMES, ORIGINALS, patch
from tests.common import assert_bitwise_equal


def _holders_of_init_functions() -> dict[tuple[str, str], object]:
    """(module, attribute) -> value, for every module global that is one of torch's init
    functions (by identity)."""
    public = {id(getattr(torch.nn.init, n)) for n in INIT_NAMES}
    found = {}
    for modname, mod in list(sys.modules.items()):
        d = getattr(mod, "__dict__", None)
        if type(d) is not dict:
            continue
        for k, v in list(d.items()):
            if id(v) in public:
                found[(modname, k)] = v
    return found


def _assert_torch_values_outside(before: dict) -> None:
    """Outside any block: no reference was replaced, and every one gives torch's values."""
    after = _holders_of_init_functions()
    for where, value in before.items():
        assert after[where] is value, f"{where} changed"
    for name in ("normal_", "uniform_", "kaiming_uniform_"):
        torch.manual_seed(4)
        got = getattr(torch.nn.init, name)(torch.empty(16, 8))
        torch.manual_seed(4)
        assert_bitwise_equal(got, ORIGINALS[name](torch.empty(16, 8)))


def test_patch_routes_torch_layers_through_fastinit():
    torch.manual_seed(0)
    with patch():
        lin = nn.Linear(64, 32)
    torch.manual_seed(0)
    w = fastinit.kaiming_uniform_(torch.empty(32, 64), a=math.sqrt(5))
    b = fastinit.uniform_(torch.empty(32), -1 / 8, 1 / 8)
    assert_bitwise_equal(lin.weight.detach(), w)
    assert_bitwise_equal(lin.bias.detach(), b)


def test_identities_never_change_and_signatures_and_sources_are_torchs():
    import inspect

    before = _holders_of_init_functions()
    assert before, "expected torch's own modules to hold init functions"
    with patch():
        inside = _holders_of_init_functions()
    assert inside == before
    for name in INIT_NAMES:
        fn = getattr(torch.nn.init, name)
        assert inspect.signature(fn) == inspect.signature(ORIGINALS[name])
        assert inspect.getsource(fn) == inspect.getsource(ORIGINALS[name])
        assert fn.__module__ == "torch.nn.init" and fn.__name__ == name


def test_patch_covers_copies_held_by_torch_layers_and_transformers():
    import transformers.initialization as hf_init

    table = hf_init.TORCH_INIT_FUNCTIONS
    with patch():
        torch.manual_seed(3)
        a = table["normal_"](torch.empty(40))
    torch.manual_seed(3)
    assert_bitwise_equal(a, fastinit.normal_(torch.empty(40)))
    torch.manual_seed(3)
    outside = table["normal_"](torch.empty(40))
    torch.manual_seed(3)
    assert_bitwise_equal(outside, ORIGINALS["normal_"](torch.empty(40)))


def test_torch_values_after_exit_exception_and_nesting():
    before = _holders_of_init_functions()
    with patch():
        pass
    _assert_torch_values_outside(before)
    with pytest.raises(KeyError):
        with patch(deferred=True):
            raise KeyError("x")
    _assert_torch_values_outside(before)
    with patch():
        with patch(deferred=True):
            pass
        # the inner block's exit must not undo the outer one
        torch.manual_seed(1)
        a = nn.Linear(8, 8).weight.detach().clone()
    torch.manual_seed(1)
    expected = fastinit.kaiming_uniform_(torch.empty(8, 8), a=math.sqrt(5))
    assert_bitwise_equal(a, expected)
    _assert_torch_values_outside(before)


def test_modules_first_imported_inside_the_block_give_torch_values_after(tmp_path, monkeypatch):
    (tmp_path / "late_model_code.py").write_text(textwrap.dedent("""
        from torch.nn.init import xavier_uniform_, normal_ as my_normal
        import torch.nn.init as I
        TABLE = {"kaiming": I.kaiming_uniform_, "zeros": I.zeros_}
        def build(t):
            return my_normal(t)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("late_model_code", None)
    with patch():
        mod = importlib.import_module("late_model_code")
        torch.manual_seed(2)
        inside = mod.build(torch.empty(10))
    try:
        assert mod.xavier_uniform_ is torch.nn.init.xavier_uniform_
        assert mod.TABLE["kaiming"] is torch.nn.init.kaiming_uniform_
        torch.manual_seed(2)
        assert_bitwise_equal(inside, fastinit.normal_(torch.empty(10)))
        torch.manual_seed(2)
        after = mod.build(torch.empty(10))
        torch.manual_seed(2)
        assert_bitwise_equal(after, ORIGINALS["normal_"](torch.empty(10)))
    finally:
        sys.modules.pop("late_model_code", None)


def test_transformers_first_imported_inside_the_block_keeps_torchs_functions():
    code = textwrap.dedent("""
        import sys, torch, fastinit
        assert "transformers" not in sys.modules
        with fastinit.patch():
            import transformers.initialization as I
            import transformers.modeling_utils
        bad = [n for n, f in I.TORCH_INIT_FUNCTIONS.items() if f is not getattr(torch.nn.init, n)]
        assert not bad, bad
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# --- deferred: exactly eager -------------------------------------------------------------------


def _build():
    return nn.Sequential(nn.Linear(32, 32), nn.Embedding(10, 32, padding_idx=0),
                         nn.LayerNorm(32), nn.Conv2d(3, 4, 3))


def test_patch_deferred_equals_patch_in_grouped_fills(monkeypatch):
    torch.manual_seed(5)
    with patch():
        a = _build()
    calls = []
    original = backends.fill_grouped
    monkeypatch.setattr(backends, "fill_grouped",
                        lambda entries, **kw: (calls.append(len(entries)), original(entries, **kw)))
    torch.manual_seed(5)
    with patch(deferred=True):
        b = _build()
    assert len(calls) >= 1 and sum(calls) >= 7 and max(calls) >= 5
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert_bitwise_equal(x, y)


def test_deferred_strided_view_then_partial_overwrite():
    """normal_(w.t()); zeros_(w.t()[:, 0]): column 0 of w.t() is zero, as eagerly."""
    def run(deferred):
        torch.manual_seed(9)
        w = torch.full((6, 4), math.nan)
        with patch(deferred=deferred):
            nn.init.normal_(w.t())
            nn.init.zeros_(w.t()[:, 0])
        return w

    eager, deferred = run(False), run(True)
    assert (deferred.t()[:, 0] == 0).all()
    assert_bitwise_equal(deferred, eager)


def test_deferred_checkpoints_inside_the_block_hold_the_values(tmp_path):
    from safetensors.torch import load_file, save_file

    def run(deferred):
        torch.manual_seed(11)
        seen = {}
        with patch(deferred=deferred):
            m = nn.Linear(16, 8)
            buf = io.BytesIO()
            torch.save(m.state_dict(), buf)
            seen["save"] = torch.load(io.BytesIO(buf.getvalue()))
            seen["pickle"] = pickle.loads(pickle.dumps(m.weight.detach()))
            path = tmp_path / f"m{int(deferred)}.safetensors"
            save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
            seen["safetensors"] = load_file(str(path))
            seen["numpy_view"] = torch.from_numpy(m.weight.detach()[2:5].numpy().copy())
            seen["storage"] = bytes(m.bias.untyped_storage())
        return seen, m

    (eager, _), (deferred, m_d) = run(False), run(True)
    for key in ("save", "safetensors"):
        for name in eager[key]:
            assert_bitwise_equal(deferred[key][name], eager[key][name])
            assert_bitwise_equal(deferred[key][name], m_d.state_dict()[name])
    assert_bitwise_equal(deferred["pickle"], eager["pickle"])
    assert_bitwise_equal(deferred["numpy_view"], eager["numpy_view"])
    assert deferred["storage"] == eager["storage"]


def test_an_exception_leaving_the_block_still_writes_what_eager_code_wrote():
    def run(deferred):
        torch.manual_seed(4)
        kept = []
        with pytest.raises(RuntimeError, match="boom"):
            with patch(deferred=deferred):
                kept.append(_build())
                t = torch.full((4, 4), math.nan)
                kept.append(t)
                nn.init.normal_(t)
                raise RuntimeError("boom")
        return kept

    eager, deferred = run(False), run(True)
    for x, y in zip(eager[0].state_dict().values(), deferred[0].state_dict().values()):
        assert_bitwise_equal(x, y)
    assert not deferred[1].isnan().any()
    assert_bitwise_equal(deferred[1], eager[1])


@pytest.mark.parametrize("deferred", [None, False, True], ids=["direct", "patch", "deferred"])
def test_reinitializing_a_saved_tensor_breaks_the_graph_as_in_torch(deferred):
    """autograd's version counter moves with fastinit's writes: torch raises on backward."""
    w = nn.Parameter(torch.randn(5, 5))
    y = (w * w).sum()  # saves w
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        if deferred is None:
            fastinit.normal_(w)
            y.backward()
        else:
            with patch(deferred=deferred):
                nn.init.normal_(w)
                y.backward()
    # torch's own function behaves the same way (the behaviour being matched)
    w2 = nn.Parameter(torch.randn(5, 5))
    y2 = (w2 * w2).sum()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        nn.init.normal_(w2)
        y2.backward()


def test_fills_of_a_saved_tensor_before_saving_are_fine():
    w = nn.Parameter(torch.empty(4, 4))
    with patch(deferred=True):
        nn.init.normal_(w)
        (w * 2).sum().backward()
    assert torch.equal(w.grad, torch.full((4, 4), 2.0))


class _Seen(torch.overrides.TorchFunctionMode):
    """A user's mode: which torch functions it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", ""))
        return func(*args, **(kwargs or {}))


def _stack() -> list:
    return [torch._C._get_function_stack_at(i)
            for i in range(torch._C._len_torch_function_stack())]


@pytest.mark.parametrize("block", ["patch", "deferred", "empty_init"])
def test_entry_points_leave_the_mode_stack_as_they_found_it(block):
    """fastinit's entry points run with fastinit's own modes taken off the top of the
    torch-function stack (they pass everything through anyway); the stack is back as it was
    after a call and after a failing call."""
    ctx = {"patch": patch, "deferred": lambda: patch(deferred=True),
           "empty_init": fastinit.empty_init}[block]
    def calls() -> None:
        before = _stack()
        t = torch.empty(4, 4)
        torch.nn.init.normal_(t)
        assert _stack() == before
        with pytest.raises(ValueError):
            torch.nn.init.kaiming_uniform_(t, mode="fan_sideways")
        assert _stack() == before
        fastinit.zeros_(t)
        assert _stack() == before

    outer = _Seen()
    with outer, ctx():
        calls()  # fastinit's mode on top: taken off and put back
        inner = _Seen()
        with inner:
            calls()  # a user's mode on top: the stack is left alone
        assert "empty" in inner.names  # the user's mode on top still sees the user's code
    assert _stack() == []
