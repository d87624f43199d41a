"""``fastinit.sessions``: the recording of writes (sessions, ``recording()`` under ``patch``).

What a recording sees under ``fastinit.patch()``; memory freed after (or inside) a recording
is not taken for the recorded tensor when the allocator hands it out again; a session leaves
the model exactly as it would be without one (values, attributes, lifetime).
"""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from torch import nn

import fastinit
from fastinit import provenance as P
from tests.provenance_models import TinyGPT, _checks, _materialized


def test_recording_under_patch():
    with fastinit.patch(), P.recording():
        model = TinyGPT(emb_std=1.0)
        model.init_weights()
    writes = P.provenance(model)["wte.weight"]
    assert [w.law for w in writes] == ["normal_", "normal_", "normal_"]
    assert writes[0].caller.endswith("Embedding.reset_parameters") and writes[0].overwritten
    assert writes[-1].params["std"] == 1.0 and writes[-1].seed is not None
    assert _checks(P.check_laws(model)) == [("wte.weight", "scale")]


def _reuse(addresses: set, build, tries: int = 64):
    """``build()`` until one of its tensors' storages sits at one of ``addresses`` (the
    allocator hands freed memory out again); the model, or a failed precondition."""
    kept = []
    for _ in range(tries):
        model = build()
        if {t.untyped_storage().data_ptr() for t in model.state_dict().values()} & addresses:
            return model
        kept.append(model)  # held, so that the next build gets other memory
    raise AssertionError("the allocator never reused the freed memory: the test shows nothing")


def test_memory_freed_after_a_recording_is_not_the_recorded_tensor():
    # A recorded model is freed; an eager model built later in its memory has none of its
    # writes (its own init was not recorded) and the law check does not judge it by them.
    with fastinit.patch(), P.recording():
        gone = TinyGPT(emb_std=1.0)
        gone.init_weights()
    addresses = {t.untyped_storage().data_ptr() for t in gone.state_dict().values()}
    del gone
    gc.collect()
    later = _reuse(addresses, lambda: TinyGPT(emb_std=0.02))
    with pytest.raises(ValueError, match="no writes were recorded"):
        P.provenance(later)
    with pytest.raises(ValueError, match="no writes were recorded"):
        P.check_laws(later)


def test_a_temporary_freed_inside_a_recording_is_not_a_later_tensor():
    # One piece of memory under two storages, one after the other: what the allocator does
    # when it hands freed memory out again, made certain here by a NumPy buffer.
    memory = np.zeros((64, 64), dtype=np.float32)

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.empty(64, 64))
            nn.init.normal_(self.weight, std=0.02)
            self.register_buffer("table", torch.from_numpy(memory))  # not a routed write

    with fastinit.patch(), P.recording():
        tmp = torch.from_numpy(memory)
        nn.init.uniform_(tmp, -3.0, 3.0)
        assert tmp.abs().max() > 1.0  # a read: the deferred fill runs
        address = tmp.untyped_storage().data_ptr()
        del tmp
        model = Holder()
    assert model.table.untyped_storage().data_ptr() == address
    writes = P.provenance(model)
    assert [w.law for w in writes["weight"]] == ["normal_"]
    assert writes["table"] == []


def test_the_model_shows_nothing_different():
    model = _materialized()
    with torch.device("meta"):
        bare = TinyGPT()
    with P.session():  # a session that attaches to no model: what a user sees without one
        fastinit.materialize(bare, "cpu", seed=0)
    assert list(model.state_dict()) == list(bare.state_dict())
    for (n, a), (_, b) in zip(model.state_dict().items(), bare.state_dict().items()):
        assert torch.equal(a, b), n
        assert a.__dict__ == b.__dict__
    assert model.__dict__.keys() == bare.__dict__.keys()
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # the records do not keep the model alive
