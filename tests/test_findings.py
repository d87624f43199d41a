"""``fastinit.findings``: the one record the law check and the propagation check return."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

import fastinit
from fastinit import provenance as P
from fastinit import recipes
from fastinit.findings import Finding


def test_a_finding_is_a_frozen_record_with_optional_numbers():
    f = Finding("0.weight", "scale", "std 1 where 0.02 was expected")
    assert (f.observed, f.expected) == (None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.check = "law"
    assert f == Finding("0.weight", "scale", "std 1 where 0.02 was expected")
    assert len({f, Finding("0.weight", "scale", "std 1 where 0.02 was expected")}) == 1


def test_as_dict_is_plain_json():
    f = Finding("h.0.mlp", "activation-growth", "grows", observed=3.5, expected=1.0)
    d = f.as_dict()
    assert d == {"name": "h.0.mlp", "check": "activation-growth", "message": "grows",
                 "observed": 3.5, "expected": 1.0}
    assert json.loads(json.dumps(d)) == d
    assert Finding(**d) == f


def test_the_law_check_returns_findings():
    with torch.device("meta"):
        model = nn.Linear(256, 256)
    fastinit.materialize(model, "cpu", seed=0)
    fastinit.apply_recipe(model, {"weight": recipes.normal(std=1.0)}, seed=0)
    (f,) = P.check_laws(model)
    assert type(f) is Finding and (f.name, f.check) == ("weight", "fan")
    assert f.observed == pytest.approx(1.0, rel=0.05)
    assert math.isfinite(f.expected) and f.expected < 0.2
