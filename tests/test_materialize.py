"""materialize: meta models to real ones, the model's own init, grouped fills, recipes."""
from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import fastinit
from fastinit.fill import fill_tensor
from fastinit.materialize import materialize
from fastinit.spec import InitSpec
from fastinit.streams import stream_for_name
from tests.common import assert_bitwise_equal, count_grouped_fills

SEED = 1234


def _stack() -> nn.Module:
    return nn.Sequential(
        nn.Embedding(300, 64, padding_idx=3),
        nn.Linear(64, 256),
        nn.LayerNorm(256),
        nn.Linear(256, 64, bias=False),
        nn.Conv2d(4, 32, 3),
        nn.BatchNorm2d(32),
    )


def _on_meta(build):
    with torch.device("meta"):
        return build()


def _expected(name: str, shape, spec: InitSpec, dtype=torch.float32) -> torch.Tensor:
    t = torch.empty(shape, dtype=dtype)
    fill_tensor(t, spec.kernel_params(dtype), SEED, stream_for_name(name))
    return t


def test_plain_modules_follow_torch_defaults_bit_for_bit():
    """Each tensor is the fastinit stream of its name with torch's default distribution."""
    m = materialize(_on_meta(_stack), "cpu", seed=SEED)
    b1 = 1 / math.sqrt(64)  # kaiming_uniform(a=sqrt(5)) and the bias rule give 1/sqrt(fan_in)
    expected = {
        "0.weight": _expected("0.weight", (300, 64), InitSpec.normal(0, 1)),
        "1.weight": _expected("1.weight", (256, 64), InitSpec.uniform(-b1, b1)),
        "1.bias": _expected("1.bias", (256,), InitSpec.uniform(-b1, b1)),
        "3.weight": _expected("3.weight", (64, 256), InitSpec.uniform(-1 / 16, 1 / 16)),
        "4.weight": _expected("4.weight", (32, 4, 3, 3), InitSpec.uniform(-1 / 6, 1 / 6)),
        "4.bias": _expected("4.bias", (32,), InitSpec.uniform(-1 / 6, 1 / 6)),
    }
    expected["0.weight"][3] = 0  # padding row
    sd = m.state_dict()
    for name, value in expected.items():
        assert_bitwise_equal(sd[name], value)
    assert torch.equal(sd["2.weight"], torch.ones(256)) and torch.equal(sd["2.bias"], torch.zeros(256))
    assert torch.equal(sd["5.running_var"], torch.ones(32))
    assert torch.equal(sd["5.running_mean"], torch.zeros(32))
    assert sd["5.num_batches_tracked"].item() == 0
    assert all(p.requires_grad and p.device.type == "cpu" for p in m.parameters())


def test_plain_modules_match_torch_distributions():
    """KS against torch's definitions: U(+-1/sqrt(fan_in)) for Linear/Conv, N(0, 1) for
    Embedding. n >= 1.6e4 per test; reject at p < 1e-6 (fixed seed: deterministic)."""
    m = materialize(_on_meta(lambda: nn.Sequential(nn.Linear(128, 512), nn.Embedding(500, 64),
                                                   nn.Conv1d(16, 64, 5))), "cpu", seed=SEED)
    for w, cdf in [(m[0].weight, stats.uniform(-1 / math.sqrt(128), 2 / math.sqrt(128)).cdf),
                   (m[1].weight, stats.norm().cdf),
                   (m[2].weight, stats.uniform(-1 / math.sqrt(80), 2 / math.sqrt(80)).cdf)]:
        assert stats.kstest(w.detach().numpy().ravel(), cdf).pvalue > 1e-6


def test_values_do_not_depend_on_module_order():
    class Net(nn.Module):
        def __init__(self, order):
            super().__init__()
            for name in order:
                setattr(self, name, nn.Linear(8, 8) if name != "emb" else nn.Embedding(10, 8))

    a = materialize(_on_meta(lambda: Net(["emb", "fc1", "fc2"])), "cpu", seed=SEED)
    b = materialize(_on_meta(lambda: Net(["fc2", "emb", "fc1"])), "cpu", seed=SEED)
    for name, value in a.state_dict().items():
        assert_bitwise_equal(value, b.state_dict()[name])
    c = materialize(_on_meta(lambda: Net(["emb", "fc1", "fc2"])), "cpu", seed=SEED + 1)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


def _digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_FRESH = """
import hashlib, torch
from torch import nn
from fastinit.materialize import materialize
with torch.device("meta"):
    m = nn.Sequential(nn.Embedding(300, 64, padding_idx=3), nn.Linear(64, 256), nn.LayerNorm(256),
                      nn.Linear(256, 64, bias=False), nn.Conv2d(4, 32, 3), nn.BatchNorm2d(32))
materialize(m, "cpu", seed=%d)
h = hashlib.sha256()
for name, t in sorted(m.state_dict().items()):
    h.update(name.encode())
    h.update(t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
print(h.hexdigest())
"""


def test_same_seed_same_bytes_in_a_fresh_process():
    out = subprocess.run([sys.executable, "-c", _FRESH % SEED], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == _digest(materialize(_on_meta(_stack), "cpu", seed=SEED))


def test_one_grouped_fill_per_wave(monkeypatch):
    """All of a model's fills go through one grouped fill (per dtype on a GPU); a partial
    overwrite (an embedding's padding row) takes a second, tiny wave."""
    calls = count_grouped_fills(monkeypatch)
    materialize(_on_meta(lambda: nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8),
                                               nn.Linear(8, 4).to(torch.bfloat16))), "cpu", seed=1)
    assert calls == [6]
    calls.clear()
    materialize(_on_meta(_stack), "cpu", seed=1)
    assert calls == [12, 1]  # 12 floating-point tensors, then the padding row


def _tied_and_shared():
    emb = nn.Embedding(20, 8, padding_idx=0)
    head = nn.Linear(8, 20, bias=False)
    head.weight = emb.weight
    block = nn.Linear(8, 8)
    return nn.ModuleDict({"emb": emb, "head": head, "a": block, "b": block})


def test_ties_and_shared_modules_are_kept():
    # (on meta, a tensor two resetting modules share is refused unless the resets' order
    # is accepted: see the next test)
    m = materialize(_on_meta(_tied_and_shared), "cpu", seed=SEED, accept_reset_defaults=True)
    assert m.head.weight is m.emb.weight
    assert m.a is m.b
    assert not m.emb.weight.is_meta and not torch.isnan(m.emb.weight).any()
    with fastinit.empty_init():
        r = _tied_and_shared()
    materialize(r, "cpu", seed=SEED)
    assert r.head.weight is r.emb.weight and r.a is r.b


def test_tie_between_resetting_modules_is_refused_on_meta_and_exact_when_recorded():
    """``head.weight = emb.weight`` after both were built: eager construction leaves the
    embedding's values (normal, padding row zero; the head's reset wrote the tensor the tie
    replaced). A meta build cannot tell which module made the tensor: refused, naming both;
    built under empty_init it is the embedding's fill, exactly. A shared module (one module
    in two places) is not a tie of two resetting modules and is not refused."""
    from fastinit.initscan import LostInitError, ambiguous_ties

    meta = _on_meta(_tied_and_shared)
    assert ambiguous_ties(meta) == [["emb.weight", "head.weight"]]
    with pytest.raises(LostInitError, match=r"emb\.weight = head\.weight.*empty_init"):
        materialize(meta, "cpu", seed=SEED)
    assert meta.emb.weight.is_meta  # nothing allocated
    block = nn.Linear(8, 8, device="meta")
    assert ambiguous_ties(nn.ModuleDict({"a": block, "b": block})) == []

    with fastinit.empty_init():
        r = _tied_and_shared()
    materialize(r, "cpu", seed=SEED)
    expected = _expected("emb.weight", (20, 8), InitSpec.normal(0, 1))
    expected[0] = 0.0
    assert_bitwise_equal(r.emb.weight.detach(), expected)
    torch.manual_seed(0)
    eager = _tied_and_shared()
    assert (eager.emb.weight[0] == 0).all()  # eager keeps the embedding's reset too
    assert eager.emb.weight.abs().max() > 1 / math.sqrt(8)  # beyond the head's uniform bound


def test_real_parameters_are_left_alone_unless_overwrite():
    m = _on_meta(lambda: nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)))
    m[0] = nn.Linear(4, 4)  # real
    nn.init.constant_(m[0].weight, 7.0)
    materialize(m, "cpu", seed=SEED)
    assert (m[0].weight == 7.0).all()
    assert not m[1].weight.is_meta
    materialize(m, "cpu", seed=SEED, overwrite=True)
    assert not (m[0].weight == 7.0).any()


def test_uninitialized_tensors_raise_and_leave_the_module_untouched():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.ones(4))  # no init code writes it on meta

    m = _on_meta(Custom)
    with pytest.raises(ValueError, match="scale"):
        materialize(m, "cpu", seed=SEED)
    assert m.scale.is_meta and m.lin.weight.is_meta
    materialize(m, "cpu", seed=SEED, recipe={"*.weight": fastinit.recipes.normal(std=0.1),
                                              "*": fastinit.recipes.ones()})
    assert torch.equal(m.scale.detach(), torch.ones(4)) and torch.equal(m.lin.bias.detach(), torch.ones(4))


def test_recipe_errors_and_warnings():
    m = _on_meta(lambda: nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)))
    with pytest.raises(ValueError, match="known recipes: bert, dcgan, gpt2, llama, lora, mup, "
                                         "resnet, rezero, rnn, torchtitan_llama, vit"):
        materialize(m, "cpu", seed=1, recipe="gpt3")
    # a mapping overwrites what it matches; strict mode (every parameter covered) on request
    with pytest.raises(ValueError, match=r"no recipe rule matches these parameters: 0\.bias, 1\.bias"):
        materialize(m, "cpu", seed=1, recipe=fastinit.recipes.rules(
            {"*.weight": fastinit.recipes.ones()}, strict=True))
    assert m[0].weight.is_meta  # nothing was written
    with pytest.warns(UserWarning, match="'nothing.*' matched no parameter"):
        materialize(m, "cpu", seed=1, recipe={"nothing.*": fastinit.recipes.zeros(),
                                              "*": fastinit.recipes.zeros()})
    assert (m[0].weight == 0).all()


def test_recipe_scaled_residual_and_depth():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(32, 32)
            self.c_proj = nn.Linear(32, 32)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.h = nn.ModuleList([Block() for _ in range(3)])

    m = materialize(_on_meta(Net), "cpu", seed=SEED, recipe={
        "*.c_proj.weight": fastinit.recipes.scaled_residual(0.02, 3),
        "*.c_attn.weight": fastinit.recipes.scaled_residual(0.02, depth=True),
        "*.bias": fastinit.recipes.zeros()})
    assert_bitwise_equal(m.h[1].c_proj.weight.detach(),
                         _expected("h.1.c_proj.weight", (32, 32), InitSpec.normal(0, 0.02 / math.sqrt(6))))
    assert_bitwise_equal(m.h[2].c_attn.weight.detach(),
                         _expected("h.2.c_attn.weight", (32, 32), InitSpec.normal(0, 0.02 / math.sqrt(6))))


def test_deferred_reads_see_the_filled_values():
    """Init code that reads a tensor it just filled (here: rescales it) sees the values."""
    class Rescaled(nn.Linear):
        def reset_parameters(self):
            nn.init.normal_(self.weight)
            with torch.no_grad():
                self.weight.mul_(0.5)
            nn.init.zeros_(self.bias)

    m = materialize(_on_meta(lambda: Rescaled(16, 16)), "cpu", seed=SEED)
    assert_bitwise_equal(m.weight.detach(), _expected("weight", (16, 16), InitSpec.normal(0, 1)) * 0.5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_dtypes(dtype):
    m = materialize(_on_meta(lambda: nn.Linear(64, 64, dtype=dtype)), "cpu", seed=SEED)
    assert m.weight.dtype == dtype
    assert (m.weight.double().abs() < 1 / 8).all()
    assert np.isfinite(m.weight.detach().double().numpy()).all()


# --- eager construction, exactly: failure paths and the rules of what is kept ---------------


def test_a_meta_device_and_lazy_parameters_are_refused_before_anything():
    m = _on_meta(lambda: nn.Linear(4, 4))
    with pytest.raises(ValueError, match="not 'meta'"):
        materialize(m, "meta", seed=1)
    lazy = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(ValueError, match="lazy"):
        materialize(lazy, "cpu", seed=1)
    assert m.weight.is_meta


def test_a_failed_allocation_is_undone_and_a_retry_works(monkeypatch):
    m = _on_meta(lambda: nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)))
    real = torch.UntypedStorage
    made = []

    class Failing:
        def __new__(cls, *args, **kwargs):
            if len(made) == 3:
                raise torch.OutOfMemoryError("simulated out of memory")
            made.append(1)
            return real(*args, **kwargs)

    monkeypatch.setattr(torch, "UntypedStorage", Failing)
    with pytest.raises(torch.OutOfMemoryError):
        materialize(m, "cpu", seed=1)
    assert all(p.is_meta for p in m.parameters())  # nothing half-done
    monkeypatch.setattr(torch, "UntypedStorage", real)
    materialize(m, "cpu", seed=1)
    assert all(not p.is_meta and p.isfinite().all() for p in m.parameters())


def test_an_out_of_range_constant_in_init_code_raises_as_torch_does():
    class Half(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.empty(4, dtype=torch.float16))

        def reset_parameters(self):
            self.w.data.fill_(1e10)

    with pytest.raises(RuntimeError, match="overflow"):
        Half().reset_parameters()  # eager torch
    m = _on_meta(Half)
    with pytest.raises(RuntimeError, match="overflow"):
        materialize(m, "cpu", seed=1)
    assert m.w.is_meta


def test_partly_written_tensors_are_refused_naming_them():
    class Diag(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(6, 6))
            self.reset_parameters()

        def reset_parameters(self):
            with torch.no_grad():
                self.w.diagonal().fill_(1.0)  # eager relies on the zeros of __init__

    m = _on_meta(Diag)
    with pytest.raises(ValueError, match=r"w \(partly written\).*empty_init"):
        materialize(m, "cpu", seed=1)
    assert m.w.is_meta
    with fastinit.empty_init():
        r = Diag()
    materialize(r, "cpu", seed=1)
    assert torch.equal(r.w.detach(), torch.eye(6))


def test_overwrite_of_parameters_sharing_one_storage_keeps_each_stream():
    """Two parameters carved from one flat buffer: each gets its own name's stream at its
    own indices (not the buffer's), and they stay views of one storage."""
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            flat = torch.empty(8 * 4 + 8)
            self.weight = nn.Parameter(flat[:32].view(8, 4))
            self.bias = nn.Parameter(flat[32:])

        def reset_parameters(self):
            nn.init.normal_(self.weight)
            nn.init.normal_(self.bias)

    m = Flat()
    materialize(m, "cpu", seed=SEED, overwrite=True)
    assert m.weight.untyped_storage().data_ptr() == m.bias.untyped_storage().data_ptr()
    assert_bitwise_equal(m.weight.detach(), _expected("weight", (8, 4), InitSpec.normal(0, 1)))
    assert_bitwise_equal(m.bias.detach(), _expected("bias", (8,), InitSpec.normal(0, 1)))


def test_init_code_drawing_from_torch_follows_the_seed_and_leaves_the_caller_rng():
    class Rand(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.empty(64))

        def reset_parameters(self):
            with torch.no_grad():
                self.b.copy_(torch.rand(64) * 0.1)

    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = materialize(_on_meta(Rand), "cpu", seed=SEED).b.detach().clone()
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)
    b = materialize(_on_meta(Rand), "cpu", seed=SEED).b.detach().clone()
    c = materialize(_on_meta(Rand), "cpu", seed=SEED + 1).b.detach().clone()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_real_tensors_of_a_transformers_model_are_construction_memory_unless_flagged():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.XLNetConfig(vocab_size=64, d_model=32, n_layer=1, n_head=4, d_inner=64)
    with torch.device("meta"):
        m = transformers.XLNetLMHeadModel(cfg)
    q = m.transformer.layer[0].rel_attn.q
    assert not q.is_meta  # a legacy nn.Parameter(torch.FloatTensor(...))
    materialize(m, "cpu", seed=SEED)
    q = m.transformer.layer[0].rel_attn.q
    assert abs(q.std().item() - 0.02) < 0.005  # the model's normal_(std=0.02), not garbage
    # flagged as loaded (or named in keep=): kept as it is
    with torch.device("meta"):
        m2 = transformers.XLNetLMHeadModel(cfg)
    q2 = m2.transformer.layer[0].rel_attn.q
    with torch.no_grad():
        q2.fill_(3.0)
    materialize(m2, "cpu", seed=SEED, keep=["*.rel_attn.q"])
    assert (m2.transformer.layer[0].rel_attn.q == 3.0).all()


def test_empty_init_and_a_plain_meta_build_agree_where_both_know_the_values():
    """The same model, built both ways: the tensors a plain meta build can initialize get
    the same bits (same init calls, same name streams), with and without a recipe."""
    for recipe in (None, {"*.weight": fastinit.recipes.normal(std=0.05)}):
        a = materialize(_on_meta(_stack), "cpu", seed=SEED, recipe=recipe)
        with fastinit.empty_init():
            b = _stack()
        materialize(b, "cpu", seed=SEED, recipe=recipe)
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert_bitwise_equal(x, y)


def test_a_recorded_model_changed_after_the_block_is_refused_clearly():
    with fastinit.empty_init():
        m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    m.to(torch.float64)  # converted outside the block: not recorded
    with pytest.raises(ValueError, match="not made by operations the fastinit.empty_init"):
        materialize(m, "cpu", seed=1)
    assert all(p.is_meta for p in m.parameters())


def test_overwrite_reinitializes_a_materialized_recorded_model_in_place():
    """After materialize, a recorded model's tensors are real: materialize(overwrite=True)
    re-initializes them (the model's init code, in place) like any real model's; without
    overwrite it leaves them be."""
    with fastinit.empty_init():
        m = _stack()
    materialize(m, "cpu", seed=1)
    before = {n: t.detach().clone() for n, t in m.state_dict().items()}
    ptrs = {n: t.data_ptr() for n, t in m.state_dict().items()}
    materialize(m, "cpu", seed=1)
    for n, t in m.state_dict().items():
        assert_bitwise_equal(t, before[n])
    materialize(m, "cpu", seed=2, overwrite=True)
    assert {n: t.data_ptr() for n, t in m.state_dict().items()} == ptrs
    assert not torch.equal(m[1].weight, before["1.weight"])
    reference = materialize(_on_meta(_stack), "cpu", seed=2)
    for (name, x), y in zip(reference.state_dict().items(), m.state_dict().values()):
        assert_bitwise_equal(x, y)


def test_what_a_meta_build_cannot_see_and_empty_init_replays():
    """As documented: a plain meta build keeps nothing of __init__, so the zeroed row is
    refused (the class and line named) before anything is allocated; with
    accept_reset_defaults=True the init code writes the linear layer whole, so the row is
    drawn again; recorded under empty_init, the row is zero as after eager construction."""

    class ZeroedRow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            with torch.no_grad():
                self.lin.weight[0].zero_()

    assert (ZeroedRow().lin.weight[0] == 0).all()  # eager
    meta_built = _on_meta(ZeroedRow)
    with pytest.raises(fastinit.initscan.LostInitError, match=r"ZeroedRow \(.*test_materialize"
                       r"\.py:\d+: in-place zero_.*fastinit\.empty_init\(\)"):
        materialize(meta_built, "cpu", seed=1)
    assert meta_built.lin.weight.is_meta  # nothing allocated
    materialize(meta_built, "cpu", seed=1, accept_reset_defaults=True)
    assert (meta_built.lin.weight[0] != 0).all()
    with fastinit.empty_init():
        recorded = ZeroedRow()
    materialize(recorded, "cpu", seed=1)
    assert (recorded.lin.weight[0] == 0).all()
    assert_bitwise_equal(recorded.lin.weight[1:], meta_built.lin.weight[1:])
