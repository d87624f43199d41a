"""Routing (fastinit.route): one decision per fill, made after validation and before any draw.

* Without a router the decision is DRAW: the caller's key (``seed=``, or one draw from the
  generator), stream 0, the tensor's own index.
* A router's SKIP leaves the tensor alone, draws nothing, and holds for constants too.
* A router's Keyed decision gives the fill its key and stream by the index of ``base``; an
  explicit ``seed=`` or ``generator=`` keeps the stream and takes the call's own key.
* NameRouter: named tensors take the stream of their name and are written at ``flush``;
  protected tensors are skipped; other tensors draw as usual.
* ``route.internal()``: fastinit's own work inside a recording runs with fastinit's modes off
  the stack and finds them back afterwards.
"""
from __future__ import annotations

import math

import pytest
import torch

import fastinit
from fastinit import route, streams
from fastinit.fill import Fill, execute, fill_tensor
from fastinit.intercept import recording_into
from fastinit.materialize import CoveringRouter as _Router, Coverage
from fastinit.spec import InitSpec
from tests.common import assert_bitwise_equal

NORMAL = InitSpec.normal(0.0, 1.0).kernel_params(torch.float32)


class StandIn:
    """A router that answers one fixed decision and writes what it is handed, keeping it."""

    def __init__(self, decide):
        self.decide = decide
        self.writes = []

    def route(self, tensor):
        return self.decide(tensor)

    def emit(self, write):
        self.writes.append(write)
        execute(write)


def test_without_a_router_the_decision_is_the_callers_key_and_stream_zero():
    t = torch.empty(5)
    assert route.active() is None
    key, stream, base = route.decide(t, 77, None)
    assert (key, stream) == (77, 0) and base is t
    g = torch.Generator().manual_seed(3)
    expected = streams.draw_seed(torch.Generator().manual_seed(3))
    key, stream, base = route.decide(t, None, g)
    assert (key, stream) == (expected, 0) and base is t
    # that one decision drew exactly one key
    assert torch.equal(g.get_state(), _after_draws(3, 1))


def _after_draws(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        streams.draw_seed(g)
    return g.get_state()


def test_skip_leaves_the_tensor_alone_and_draws_nothing():
    router = StandIn(lambda t: route.SKIP)
    t = torch.full((4, 3), math.nan)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    with route.routing(router) as active:
        assert active is router and route.active() is router
        assert route.decide(t, None, g) is None
        fastinit.normal_(t, generator=g)
        fastinit.kaiming_uniform_(t, generator=g)
        fastinit.constant_(t, 0.5)
        fastinit.orthogonal_(t, generator=g)
    assert route.active() is None
    assert t.isnan().all() and torch.equal(g.get_state(), state) and router.writes == []


def test_keyed_gives_the_routers_key_and_stream_by_the_index_of_base():
    base = torch.full((6, 4), math.nan)
    view = base[2:5]
    router = StandIn(lambda t: route.Keyed(99, 7, base))
    with route.routing(router):
        fastinit.normal_(view)
    (write,) = router.writes
    assert isinstance(write, Fill) and (write.key, write.stream) == (99, 7)
    assert write.target is view and write.base is base
    whole = torch.empty(6, 4)
    fill_tensor(whole, NORMAL, 99, 7)
    assert_bitwise_equal(view, whole[2:5])
    assert base[:2].isnan().all() and base[5:].isnan().all()


def test_an_explicit_seed_or_generator_keeps_the_stream_and_takes_the_calls_key():
    t = torch.empty(8)
    router = StandIn(lambda x: route.Keyed(99, 7, x))
    g = torch.Generator().manual_seed(11)
    drawn = streams.draw_seed(torch.Generator().manual_seed(11))
    with route.routing(router):
        fastinit.normal_(t, seed=4)
        fastinit.normal_(t, generator=g)
    assert [(w.key, w.stream) for w in router.writes] == [(4, 7), (drawn, 7)]
    expected = torch.empty(8)
    fill_tensor(expected, NORMAL, drawn, 7)
    assert_bitwise_equal(t, expected)


def test_name_router_streams_of_names_protected_tensors_and_temporaries():
    w = torch.full((5, 3), math.nan)
    p = torch.full((4,), math.nan)
    other = torch.full((6,), math.nan)
    router = route.NameRouter(1234, {"layer.weight": w}, protected=[p])
    assert isinstance(router.route(w), route.Keyed) and router.route(p) is route.SKIP
    assert router.route(other) is route.DRAW
    with route.routing(router):
        fastinit.normal_(w)
        fastinit.normal_(p)
        fastinit.normal_(other, seed=3)
    assert w.isnan().all()  # recorded, written at flush
    assert router.written == {"layer.weight"}
    router.flush()
    expected = torch.empty(5, 3)
    fill_tensor(expected, NORMAL, 1234, streams.stream_for_name("layer.weight"))
    assert_bitwise_equal(w, expected)
    assert p.isnan().all()
    router.flush()
    assert_bitwise_equal(other, fastinit.normal_(torch.empty(6), seed=3))


def test_internal_marks_fastinits_own_operations():
    assert not route.inside()
    with route.internal():
        assert route.inside()
    assert not route.inside()


@pytest.mark.parametrize("seed", [None, 0])
def test_a_failed_check_never_reaches_the_router(seed):
    router = StandIn(lambda t: route.Keyed(1, 1, t))
    t = torch.full((3, 3), math.nan)
    with route.routing(router), pytest.raises(RuntimeError):
        fastinit.normal_(t, 0.0, -1.0, seed=seed)
    assert router.writes == [] and t.isnan().all()


def test_own_work_runs_without_fastinit_modes():
    """fastinit's bookkeeping inside a recording (a replay resolving its tensors) runs with
    fastinit's modes - the recording's device context included - off the stack, and finds
    them back afterwards."""
    router = _Router(99, {}, (), Coverage())
    with recording_into(router, torch.device("meta")):
        depth = torch._C._len_torch_function_stack()
        assert depth == 2  # the device context and the init mode
        assert torch.empty(2).is_meta
        with route.internal():
            assert torch._C._len_torch_function_stack() == 0
            assert route.inside()
            assert not torch.empty(2).is_meta
        assert torch._C._len_torch_function_stack() == depth and not route.inside()
        assert torch.empty(2).is_meta  # the device context applies again
