"""No uninitialized memory, as a property of the data flow; the generator rule; and the
smaller holes of the real-clients work, each compared with eager construction.

The oracle for garbage: replay a construction with unwritten memory poisoned by two
different patterns; any element that differs depends on memory nobody wrote. materialize
must refuse exactly the models where such an element reaches a parameter or buffer."""
from __future__ import annotations

import functools
import sys

import pytest
import torch
from torch import nn

import fastinit
from tests.common import Poison, assert_bitwise_equal

EARLY = functools.partial(nn.init.trunc_normal_, std=0.02)


def _poisoned(cls, value: float) -> dict[str, torch.Tensor]:
    """The model replayed with its unwritten memory holding ``value`` (the data-flow
    check switched off: the oracle must see what would be handed out)."""
    from unittest import mock

    materialize_module = sys.modules["fastinit.materialize"]
    with fastinit.empty_init():
        model = cls()
    with Poison(value), mock.patch.object(materialize_module, "unwritten", lambda *a: {}):
        fastinit.materialize(model, "cpu", seed=0)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _depends_on_garbage(cls) -> list[str]:
    a, b = _poisoned(cls, 1.0e30), _poisoned(cls, -3.0)
    return [k for k in a if not torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8))]


class KeywordAndPartial(nn.Module):
    """The issue's repro: an init call with ``tensor=``, and a partial made at import that
    writes a temporary copied into a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(256, 256, bias=False)
        self.f = nn.Linear(256, 256, bias=False)
        t = self.f.weight.new_empty(256, 256)
        nn.init.trunc_normal_(tensor=self.lin.weight, std=0.02)
        EARLY(t)
        self.f.weight.data.copy_(t)


def test_keyword_tensor_and_partials_are_recorded_as_writes():
    with fastinit.empty_init():
        m = KeywordAndPartial()
    fastinit.materialize(m, "cpu", seed=0)
    for w in (m.lin.weight, m.f.weight):
        assert w.isfinite().all() and w.abs().max() <= 2.0  # trunc_normal_'s default bounds
        assert abs(w.std().item() - 0.02) < 0.001  # kaiming-uniform's 0.036 if lost
    assert _depends_on_garbage(KeywordAndPartial) == []


class FusedQKV(nn.Module):
    """Temporaries written, then fused through cat and copy_ (torchtitan's wqkv)."""

    def __init__(self, write_k: bool = True) -> None:
        super().__init__()
        self.wqkv = nn.Linear(16, 48, bias=False)
        q, k, v = (self.wqkv.weight.new_empty(16, 16) for _ in range(3))
        nn.init.normal_(q, std=0.02)
        if write_k:
            nn.init.normal_(tensor=k, std=0.02)
        EARLY(v)
        self.wqkv.weight.data.copy_(torch.cat([q, k, v]))


class Unwritten(FusedQKV):
    def __init__(self) -> None:
        super().__init__(write_k=False)


class ViewOfUnwritten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(8, 8))
        tmp = torch.empty(64)
        with torch.no_grad():
            self.w.copy_(tmp.view(8, 8) * 2 + 1)


class PartlyWrittenTemporary(nn.Module):
    """Half a temporary written, all of it used: only the other half is garbage."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(8, 8))
        tmp = torch.empty(8, 8)
        tmp[:4] = 1.0
        with torch.no_grad():
            self.w.copy_(tmp)


class GarbageOverwritten(nn.Module):
    """A parameter computed from garbage, then written whole: fine, as eagerly."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(8, 8).mul(2))
        nn.init.ones_(self.w)


@pytest.mark.parametrize("cls", [FusedQKV, GarbageOverwritten])
def test_values_from_written_memory_are_accepted(cls):
    assert _depends_on_garbage(cls) == []
    with fastinit.empty_init():
        m = cls()
    fastinit.materialize(m, "cpu", seed=0)
    assert all(t.isfinite().all() for t in m.state_dict().values())


@pytest.mark.parametrize("cls, name, how", [
    (Unwritten, "wqkv.weight", "new_empty and never written, through cat, through copy_"),
    (ViewOfUnwritten, "w", "empty and never written"),
    (PartlyWrittenTemporary, "w", "empty and never written"),
])
def test_values_from_memory_nobody_wrote_are_refused_naming_the_tensor(cls, name, how):
    assert name in _depends_on_garbage(cls)  # the oracle agrees: garbage reaches it
    with fastinit.empty_init():
        m = cls()
    before = {k: v for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match=rf"{name} \((partly )?computed from memory made by {how}"):
        fastinit.materialize(m, "cpu", seed=0)
    assert all(v.is_meta for v in m.state_dict().values())  # left as it was
    assert m.state_dict().keys() == before.keys()


class ReadOfUnwritten(nn.Module):
    """A value read from a temporary nobody wrote decides a buffer (``fill_`` of an
    ``.item()``): the garbage leaves no trace in the buffer's own data flow."""

    def __init__(self) -> None:
        super().__init__()
        tmp = torch.empty(8)
        self.register_buffer("b", torch.zeros(8))
        self.b.fill_(tmp.abs().sum().item() % 5)


@pytest.mark.parametrize("value", [1.0, -3.0, float("nan")])
def test_a_value_read_from_memory_nobody_wrote_is_refused(value):
    # whatever the memory holds - the same at construction and in the replay included,
    # where the value read checks out - the program is refused, before any allocation
    with Poison(value):
        with fastinit.empty_init():
            m = ReadOfUnwritten()
        with pytest.raises(ValueError, match=r"read the values of a tensor \(shape \(\), "
                           r"torch.float32.* computed from memory made by empty and never "
                           r"written, through abs, through sum"):
            fastinit.materialize(m, "cpu", seed=0)
    assert m.b.is_meta


def test_partly_garbage_names_the_part():
    with fastinit.empty_init():
        m = PartlyWrittenTemporary()
    with pytest.raises(ValueError, match=r"w \(partly computed from"):
        fastinit.materialize(m, "cpu", seed=0)


# --- the generator rule -------------------------------------------------------------------


class OwnGenerator(nn.Module):
    """olmo-core's way: a generator seeded from the config's init seed."""

    def __init__(self, init_seed: int = 1, reseed: bool = False) -> None:
        super().__init__()
        self.init_seed, self.reseed = init_seed, reseed
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.init_weights()

    def init_weights(self) -> None:
        if self.reseed:
            torch.manual_seed(self.init_seed)
            g = None
        else:
            g = torch.Generator().manual_seed(self.init_seed)
        nn.init.trunc_normal_(self.a.weight, std=0.02, generator=g)
        nn.init.normal_(self.b.weight, std=0.02, generator=g)
        nn.init.zeros_(self.a.bias)
        nn.init.zeros_(self.b.bias)


def _gen(build: str, init_seed: int, reseed: bool, seed: int = 0) -> dict:
    if build == "empty_init":
        with fastinit.empty_init():
            m = OwnGenerator(init_seed, reseed)
    else:
        with torch.device("meta"):
            m = OwnGenerator(init_seed, reseed)
    state = torch.get_rng_state()
    fastinit.materialize(m, "cpu", seed=seed)
    assert torch.equal(torch.get_rng_state(), state)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("reseed", [False, True], ids=["generator", "manual_seed"])
@pytest.mark.parametrize("build", ["empty_init", "meta"])
def test_an_explicit_generator_or_manual_seed_in_init_code_decides_the_values(build, reseed):
    one, two, again = _gen(build, 1, reseed), _gen(build, 2, reseed), _gen(build, 1, reseed)
    assert not torch.equal(one["a.weight"], two["a.weight"])  # the knob does something
    for k in one:
        assert_bitwise_equal(one[k], again[k])
    # the user's seed decides, not materialize's
    other = _gen(build, 1, reseed, seed=5)
    assert_bitwise_equal(one["a.weight"], other["a.weight"])
    # each tensor its own stream: the two weights are not the same draws
    assert not torch.equal(one["a.weight"][:4], one["b.weight"][:4])


def test_the_generator_rule_is_the_same_for_both_builds():
    for reseed in (False, True):
        a, b = _gen("empty_init", 3, reseed), _gen("meta", 3, reseed)
        for k in a:
            assert_bitwise_equal(a[k], b[k])


# --- smaller holes ------------------------------------------------------------------------


class PlainAttribute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.scale = torch.full((4,), 3.0)
        self.mask = torch.ones(3, 3).tril()


def test_plain_tensor_attributes_made_in_empty_init_are_materialized():
    eager = PlainAttribute()
    with fastinit.empty_init():
        m = PlainAttribute()
    fastinit.materialize(m, "cpu", seed=0)
    assert not m.scale.is_meta and not m.mask.is_meta
    assert_bitwise_equal(m.scale, eager.scale)
    assert_bitwise_equal(m.mask, eager.mask)


class QR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(16, 16))
        self.w = nn.Parameter(q)


def test_values_from_ops_returning_structseqs_are_replayed():
    with fastinit.empty_init():
        m = QR()
    fastinit.materialize(m, "cpu", seed=0)
    assert not m.w.is_meta
    assert torch.allclose(m.w.T @ m.w, torch.eye(16), atol=1e-5)


class BoundSeed(nn.Module):
    """torch.manual_seed reached through a name bound at import; and a draw from torch's
    CPU generator on a real tensor during construction (which is not a seeding)."""

    def __init__(self, seed: int | None) -> None:
        super().__init__()
        from torch import manual_seed

        torch.randn(3)  # advances the CPU generator: materialize's seed must still decide
        if seed is not None:
            manual_seed(seed)
        self.a = nn.Linear(16, 16)


@pytest.mark.parametrize("build", ["empty_init", "meta"])
def test_manual_seed_is_seen_however_reached_and_a_draw_is_not_a_seeding(build):
    def run(seed, key):
        if build == "empty_init":
            with fastinit.empty_init():
                m = BoundSeed(seed)
        else:
            with torch.device("meta"):
                m = BoundSeed(seed)
            m.init_weights = lambda: (torch.manual_seed(seed) if seed is not None else None,
                                      m.a.reset_parameters())
        return fastinit.materialize(m, "cpu", seed=key).a.weight.detach().clone()

    assert not torch.equal(run(None, 0), run(None, 1))  # materialize's seed decides
    assert_bitwise_equal(run(7, 0), run(7, 1))  # the user's seed decides
    assert not torch.equal(run(7, 0), run(8, 0))


# --- the same on a plain meta build: the init code runs on real memory ----------------------


class PlainTemporaries(nn.Module):
    """An init_weights() (torchtitan's entry point) that fills temporaries and copies them
    in, or forgets to write some of them (``forget``)."""

    def __init__(self, forget: str = "") -> None:
        super().__init__()
        self.forget = forget
        self.f = nn.Linear(16, 16, bias=False)
        self.g = nn.Linear(16, 8, bias=False)
        self.h = nn.Linear(16, 4, bias=False)

    def init_weights(self) -> None:
        with torch.no_grad():
            t = self.f.weight.new_empty(16, 16)
            if self.forget != "f":
                EARLY(t)
            self.f.weight.copy_(t)
            q, k = torch.empty(4, 16), torch.zeros(4, 16)
            if self.forget != "g":
                q[:2].normal_()
                nn.init.uniform_(q[2:])
            self.g.weight.copy_(torch.cat([q, k]))
            tmp = torch.empty(4, 16)
            tmp.fill_(0.5)
            self.h.weight.data = tmp * 2


def test_plain_meta_temporaries_written_are_accepted():
    with torch.device("meta"):
        m = PlainTemporaries()
    fastinit.materialize(m, "cpu", seed=0)
    assert abs(m.f.weight.std().item() - 0.02) < 0.002
    assert (m.g.weight[4:] == 0).all() and m.g.weight[:4].isfinite().all()
    assert (m.h.weight == 1.0).all()


@pytest.mark.parametrize("forget, name, how", [
    ("f", "f.weight", "new_empty and never written, through copy_"),
    ("g", "g.weight", "empty and never written, through cat, through copy_"),
])
def test_plain_meta_values_from_memory_nobody_wrote_are_refused(forget, name, how):
    with torch.device("meta"):
        m = PlainTemporaries(forget)
    with pytest.raises(ValueError, match=rf"{name} \(computed from memory made by {how}\)"):
        fastinit.materialize(m, "cpu", seed=0)
    assert all(t.is_meta for t in m.state_dict().values())
