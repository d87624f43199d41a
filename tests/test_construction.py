"""Recording construction (``fastinit.construction``): the program an ``empty_init()``
block records - :class:`~fastinit.construction.Ref` s of the model's tensors, the
operations a storage depends on - its evaluation on the CPU, and the replay
``materialize`` runs: the generator rule (an explicit generator or ``torch.manual_seed``
in init code decides the values, for a recorded build as for a plain meta build) and the
smaller holes of the real-clients work, each compared with eager construction."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fastinit
from fastinit.construction import Ref, active_recorder, construction_of, evaluate, fname_of, sid
from tests.common import assert_bitwise_equal


# --- the program of a block ---------------------------------------------------------------


def test_a_block_records_the_model_tensors_as_refs_of_its_program():
    with fastinit.empty_init():
        m = nn.Linear(4, 3)
        program = active_recorder().program
    c = construction_of(m)
    assert c is not None and c.program is program
    assert c.refs == {"weight": Ref(sid(m.weight), 0, (3, 4), (4, 1), torch.float32),
                      "bias": Ref(sid(m.bias), 0, (3,), (1,), torch.float32)}
    assert c.objects["weight"] is m.weight and c.objects["bias"] is m.bias
    assert [fname_of(op.func) for op in program.ops] == [
        "empty", "empty", "kaiming_uniform_", "uniform_"]
    assert construction_of(nn.Linear(4, 3)) is None  # built outside a block


def test_needed_keeps_the_operations_a_storage_depends_on_in_program_order():
    with fastinit.empty_init():
        program = active_recorder().program
        a = torch.zeros(3)
        b = torch.ones(2)
        a.add_(1)
        b.mul_(3)
    assert [fname_of(op.func) for op in program.ops] == ["zeros", "ones", "add_", "mul_"]
    assert [fname_of(op.func) for op in program.needed({sid(a)})] == ["zeros", "add_"]
    assert [fname_of(op.func) for op in program.needed({sid(b)})] == ["ones", "mul_"]


def test_evaluate_computes_recorded_views_on_the_cpu_as_eager_code():
    def build():
        base = torch.arange(6.0).reshape(2, 3) * 2
        a = torch.zeros(3)
        a.add_(1)
        return base.t()[1], a

    eager = build()
    with fastinit.empty_init():
        program = active_recorder().program
        recorded = build()
    assert all(t.is_meta for t in recorded)
    assert program.ref(recorded[0]) == Ref(sid(recorded[0]), 1, (2,), (3,), torch.float32)
    values = evaluate(program, list(recorded))
    for t, expected in zip(recorded, eager):
        assert_bitwise_equal(values[id(t)], expected)
    assert all(t.is_meta for t in recorded)  # evaluated, not materialized


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


class Relayout(nn.Module):
    """Init code that changes the layout of an alias in place (``t_()``, ``unsqueeze_()``
    on a ``detach()`` of a parameter: the same view of the same memory) and then fills the
    parameter, whole and through views; ``relayout=False``: the same without them."""

    def __init__(self, relayout: bool) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.empty(4, 6))
        self.q = nn.Parameter(torch.empty(6, 4))
        with torch.no_grad():
            w = self.p.detach()
            if relayout:
                w.t_()
                w.t_()
                w.unsqueeze_(0)
            nn.init.normal_(self.p)
            nn.init.normal_(self.p[1], std=0.5)
            nn.init.zeros_(self.p.view(-1)[1::2])
            v = self.q.detach()
            if relayout:
                v.t_()
            nn.init.normal_(self.q.t()[1], std=0.5)
            nn.init.uniform_(self.q)
            nn.init.normal_(self.q[:, 2])


def test_a_layout_changed_in_place_on_an_alias_does_not_move_the_draws():
    """The replay's views of a parameter serve its routing and coverage too; an operation
    that changes an alias's layout in place gets a view of its own, so every fill after
    it still draws each element from its own index (eagerly, the alias is another tensor
    object)."""
    def build(relayout):
        with fastinit.empty_init():
            m = Relayout(relayout)
        return fastinit.materialize(m, "cpu", seed=3)

    a, b = build(True), build(False)
    assert_bitwise_equal(a.p, b.p)
    assert_bitwise_equal(a.q, b.q)
    assert (a.p.detach().view(-1)[1::2] == 0).all()
