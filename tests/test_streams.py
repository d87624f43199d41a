"""Seeds, generators and stream ids (fastinit.streams).

* ``torch.manual_seed(s)`` makes a sequence of fastinit calls reproducible, in this
  process and in fresh processes;
* ``generator=g`` with ``g.manual_seed(s)`` gives what the global generator seeded with
  ``s`` gives; consecutive calls give different values;
* ``seed=`` pins a call's stream and draws nothing from any generator;
* a call that fails validation (or has nothing to write) draws nothing;
* device generators (CUDA's Philox) give keys from their host-side (seed, offset) and
  advance the offset, without touching the device: tested here with a stand-in
  ``torch.Generator`` subclass that reports a CUDA device; the real CUDA generator is
  exercised by the ``gpu`` tests (skipped without a GPU);
* seeds are unsigned 64-bit keys (negative ones wrap as in ``torch.manual_seed``), and
  ``stream_for_name`` gives each name a stable stream id of its own.
"""
from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import fastinit
from fastinit import streams
from fastinit.kernels import contract as C
from tests.common import FNS, assert_bitwise_equal

#: Every random function with arguments (tensor shape, positional args).
RANDOM_CALLS = [
    ("uniform_", (16, 9), (-1.0, 2.0)),
    ("normal_", (16, 9), (0.5, 2.0)),
    ("trunc_normal_", (16, 9), (0.0, 1.0, -1.0, 1.5)),
    ("xavier_uniform_", (16, 4, 3), ()),
    ("xavier_normal_", (16, 4, 3), ()),
    ("kaiming_uniform_", (16, 4, 3), ()),
    ("kaiming_normal_", (16, 4, 3), ()),
    ("orthogonal_", (16, 4, 3), ()),
    ("sparse_", (16, 9), (0.3,)),
    ("scaled_residual_", (16, 9), (0.02, 4)),
]
IDS = [c[0] for c in RANDOM_CALLS]


def _call(name, shape, args, **kw):
    return getattr(fastinit, name)(torch.empty(shape), *args, **kw)


def _sequence() -> list[torch.Tensor]:
    return [_call(*c) for c in RANDOM_CALLS] + [_call(*c) for c in RANDOM_CALLS]


def test_manual_seed_makes_every_function_reproducible():
    torch.manual_seed(1234)
    a = _sequence()
    torch.manual_seed(1234)
    b = _sequence()
    for x, y in zip(a, b):
        assert_bitwise_equal(x, y)
    torch.manual_seed(1235)
    c = _sequence()
    assert all(not torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("name,shape,args", RANDOM_CALLS, ids=IDS)
def test_generator_equals_the_global_generator_with_the_same_seed(name, shape, args):
    g = torch.Generator().manual_seed(99)
    a1 = _call(name, shape, args, generator=g)
    a2 = _call(name, shape, args, generator=g)
    torch.manual_seed(99)
    b1 = _call(name, shape, args)
    b2 = _call(name, shape, args)
    assert_bitwise_equal(a1, b1)
    assert_bitwise_equal(a2, b2)
    assert not torch.equal(a1, a2)  # consecutive calls differ


@pytest.mark.parametrize("name,shape,args", RANDOM_CALLS, ids=IDS)
def test_seed_pins_the_stream_and_draws_nothing(name, shape, args):
    g = torch.Generator().manual_seed(3)
    g_state, global_state = g.get_state(), torch.get_rng_state()
    a = _call(name, shape, args, seed=2**40 + 7, generator=g)  # seed wins over generator
    b = _call(name, shape, args, seed=2**40 + 7)
    c = _call(name, shape, args, seed=2**40 + 8)
    assert_bitwise_equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(g.get_state(), g_state)
    assert torch.equal(torch.get_rng_state(), global_state)


def test_each_call_draws_exactly_one_key_from_the_generator():
    g = torch.Generator().manual_seed(5)
    keys = [streams.draw_seed(g) for _ in range(3)]
    g.manual_seed(5)
    for k in keys:
        assert_bitwise_equal(fastinit.normal_(torch.empty(33), generator=g),
                             fastinit.normal_(torch.empty(33), seed=k))
    assert all(0 <= k < 2**63 for k in keys) and len(set(keys)) == 3


BAD_CALLS = [
    lambda g: fastinit.uniform_(torch.empty(4), 1.0, 0.0, generator=g),
    lambda g: fastinit.normal_(torch.empty(4), 0.0, -1.0, generator=g),
    lambda g: fastinit.trunc_normal_(torch.empty(4), 0.0, 1.0, 2.0, 1.0, generator=g),
    lambda g: fastinit.xavier_uniform_(torch.empty(4), generator=g),
    lambda g: fastinit.kaiming_normal_(torch.empty(4, 4), mode="x", generator=g),
    lambda g: fastinit.orthogonal_(torch.empty(4, 4), math.nan, generator=g),
    lambda g: fastinit.sparse_(torch.empty(4, 4), 2.0, generator=g),
    lambda g: fastinit.sparse_(torch.empty(4, 4, dtype=torch.int32), 0.5, generator=g),
    lambda g: fastinit.scaled_residual_(torch.empty(4, 4), generator=g),
    lambda g: fastinit.normal_(torch.empty(4), seed=2**64, generator=g),
    lambda g: fastinit.kaiming_uniform_(torch.empty(0, 4), generator=g),  # nothing to write
    lambda g: fastinit.orthogonal_(torch.empty(3, 0), generator=g),
    lambda g: fastinit.normal_(torch.empty(3, 3, device="meta"), generator=g),
]


@pytest.mark.parametrize("call", BAD_CALLS)
@pytest.mark.parametrize("use_global", [False, True])
def test_failed_or_empty_calls_draw_nothing(call, use_global):
    g = None if use_global else torch.Generator().manual_seed(8)
    before = torch.get_rng_state() if use_global else g.get_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the zero-element warning of kaiming_*
        try:
            call(g)
        except (ValueError, RuntimeError, TypeError):
            pass
    after = torch.get_rng_state() if use_global else g.get_state()
    assert torch.equal(before, after)


@pytest.mark.parametrize("bad", ["g", 3, torch.empty(1)])
def test_generator_must_be_a_generator(bad):
    t = torch.full((4,), math.nan)
    with pytest.raises(TypeError, match="generator"):
        fastinit.normal_(t, generator=bad)
    with pytest.raises(TypeError, match="generator"):
        fastinit.normal_(torch.empty(0), generator=bad)
    assert t.isnan().all()


# --- fresh processes -----------------------------------------------------------------------------

_SCRIPT = r"""
from tests.test_streams import _digest_here
print(_digest_here())
"""


def _digest_here() -> str:
    torch.manual_seed(20240601)
    h = hashlib.sha256()
    for c in RANDOM_CALLS + RANDOM_CALLS:
        h.update(_call(*c).numpy().tobytes())
    g = torch.Generator().manual_seed(7)
    for c in RANDOM_CALLS:
        h.update(_call(*c, generator=g).numpy().tobytes())
    return h.hexdigest()


def test_reproducible_across_fresh_processes():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONHASHSEED="random")
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    digests = [out.strip() for out, _ in outs]
    assert digests[0] == digests[1] == _digest_here()


# --- device generators ----------------------------------------------------------------------------


class StandInCudaGenerator(torch.Generator):
    """A torch.Generator that reports a CUDA device and keeps (seed, offset) like CUDA's
    Philox generator (offset in multiples of 4, reset by manual_seed). Calls to anything
    that would read device state are recorded as failures."""

    def __new__(cls, seed: int = 0):
        return super().__new__(cls)

    def __init__(self, seed: int = 0):
        self._seed, self._offset = seed, 0

    @property
    def device(self):
        return torch.device("cuda", 0)

    def manual_seed(self, seed):
        self._seed, self._offset = seed, 0
        return self

    def initial_seed(self):
        return self._seed

    def get_offset(self):
        return self._offset

    def set_offset(self, offset):
        assert offset % 4 == 0
        self._offset = offset

    def get_state(self):  # would copy device state
        raise AssertionError("get_state called on a device generator")

    def seed(self):
        raise AssertionError("seed called on a device generator")


def test_device_generator_keys_come_from_seed_and_offset():
    g = StandInCudaGenerator(11)
    cpu_state = torch.get_rng_state()
    a1 = fastinit.normal_(torch.empty(40), generator=g)
    assert g.get_offset() == 4
    a2 = fastinit.kaiming_uniform_(torch.empty(8, 5), generator=g)
    assert g.get_offset() == 8
    assert torch.equal(torch.get_rng_state(), cpu_state)  # the CPU generator is untouched
    g.manual_seed(11)
    assert_bitwise_equal(fastinit.normal_(torch.empty(40), generator=g), a1)
    assert_bitwise_equal(fastinit.kaiming_uniform_(torch.empty(8, 5), generator=g), a2)
    h = StandInCudaGenerator(11)  # a second generator with the same seed: same stream
    assert_bitwise_equal(fastinit.normal_(torch.empty(40), generator=h), a1)
    assert not torch.equal(fastinit.normal_(torch.empty(40), generator=h), a1)
    other = StandInCudaGenerator(12)
    assert not torch.equal(fastinit.normal_(torch.empty(40), generator=other), a1)


def test_device_generator_keys_are_63_bit_and_distinct():
    g = StandInCudaGenerator(0)
    keys = [streams.draw_seed(g) for _ in range(1000)]
    assert len(set(keys)) == 1000 and all(0 <= k < 2**63 for k in keys)
    g2 = StandInCudaGenerator(1)
    assert not set(keys) & {streams.draw_seed(g2) for _ in range(1000)}


@pytest.mark.gpu
def test_cuda_generator_and_no_synchronization():
    g = torch.Generator(device="cuda").manual_seed(5)
    x = torch.empty(1000, 100, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        a = fastinit.normal_(x, generator=g).clone()
        fastinit.kaiming_uniform_(torch.empty(64, 32, 3, 3, device="cuda"))
        fastinit.trunc_normal_(x, seed=3)
        fastinit.scaled_residual_(x, num_layers=12)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert g.get_offset() == 4
    g.manual_seed(5)
    assert torch.equal(fastinit.normal_(x, generator=g), a)
    torch.manual_seed(9)  # the default generator for CUDA tensors is torch's CPU one
    b = fastinit.normal_(torch.empty(1000, 100, device="cuda"))
    torch.manual_seed(9)
    c = fastinit.normal_(torch.empty(1000, 100))
    assert torch.allclose(b.cpu(), c, rtol=1e-5, atol=1e-6)  # same key; a few ulp apart


@pytest.mark.gpu
def test_orthogonal_and_sparse_on_cuda_match_the_cpu():
    q = fastinit.orthogonal_(torch.empty(64, 32, device="cuda"), seed=4)
    assert torch.allclose(q.cpu(), fastinit.orthogonal_(torch.empty(64, 32), seed=4),
                          atol=1e-5)
    s = fastinit.sparse_(torch.empty(50, 40, device="cuda"), 0.3, seed=4)
    assert torch.equal((s.cpu() == 0), fastinit.sparse_(torch.empty(50, 40), 0.3, seed=4) == 0)



# --- the basic functions: seed=, torch.manual_seed, generators ---------------------------------

@pytest.mark.parametrize("fn,kw", FNS)
def test_seed_pins_values_and_draws_differ(fn, kw):
    a = fn(torch.empty(64), seed=3)
    b = fn(torch.empty(64), seed=3)
    assert torch.equal(a, b)
    c = fn(torch.empty(64))
    d = fn(torch.empty(64))
    assert not torch.equal(c, d)


def test_manual_seed_makes_a_sequence_reproducible():
    def run():
        torch.manual_seed(1234)
        return [fastinit.normal_(torch.empty(8)), fastinit.uniform_(torch.empty(8)),
                fastinit.trunc_normal_(torch.empty(8))]

    for x, y in zip(run(), run()):
        assert torch.equal(x, y)


def test_generator_equals_global_generator_with_same_seed():
    g = torch.Generator().manual_seed(99)
    a = fastinit.normal_(torch.empty(32), generator=g)
    torch.manual_seed(99)
    b = fastinit.normal_(torch.empty(32))
    assert torch.equal(a, b)


def test_seed_values():
    a = fastinit.normal_(torch.empty(8), seed=-1)
    b = fastinit.normal_(torch.empty(8), seed=2**64 - 1)
    assert torch.equal(a, b)  # negative seeds wrap as in torch.manual_seed
    with pytest.raises(TypeError):
        fastinit.normal_(torch.empty(8), seed=1.5)
    with pytest.raises(ValueError):
        fastinit.normal_(torch.empty(8), seed=2**64)



# --- seeds and stream ids ----------------------------------------------------------------------

#: ``stream_for_name("model.layers.0.weight")`` and ``stream_for_name("lm_head.weight")``
GOLDEN_STREAMS = (56532750410821170, 22424720698733556)


@pytest.mark.parametrize("seed,key", [(0, 0), (5, 5), (-1, 2**64 - 1), (-(2**63), 2**63),
                                      (2**64 - 1, 2**64 - 1), (np.int64(-2), 2**64 - 2),
                                      (torch.tensor(7).item(), 7)])
def test_normalize_seed_wraps_into_64_bits(seed, key):
    assert streams.normalize_seed(seed) == key


@pytest.mark.parametrize("seed,exc", [(2**64, ValueError), (-(2**63) - 1, ValueError),
                                      (1.0, TypeError), ("1", TypeError), (None, TypeError)])
def test_normalize_seed_refuses_what_is_not_a_64_bit_integer(seed, exc):
    with pytest.raises(exc):
        streams.normalize_seed(seed)


def test_call_key_takes_the_seed_or_draws_one_key():
    g = torch.Generator().manual_seed(21)
    state = g.get_state()
    assert streams.call_key(-1, g) == 2**64 - 1
    assert torch.equal(g.get_state(), state)  # a seed draws nothing
    expected = streams.draw_seed(torch.Generator().manual_seed(21))
    assert streams.call_key(None, g) == expected
    assert streams.call_key(None, g) != expected  # the generator moved on
    with pytest.raises(TypeError, match="torch.Generator"):
        streams.check_rng(None, "g")
    with pytest.raises(ValueError):
        streams.check_rng(2**64, None)


def test_stream_for_name_is_stable_distinct_and_in_range():
    names = [f"model.layers.{i}.{p}" for i in range(400) for p in ("weight", "bias", "norm")]
    ids = [streams.stream_for_name(n) for n in names]
    assert len(set(ids)) == len(ids)
    assert all(0 <= s <= C.MAX_STREAM for s in ids)
    assert [streams.stream_for_name(n) for n in names] == ids
    # the ids are part of the value contract: these two must never change
    assert streams.stream_for_name("model.layers.0.weight") == GOLDEN_STREAMS[0]
    assert streams.stream_for_name("lm_head.weight") == GOLDEN_STREAMS[1]
