"""fastinit.cli.inspect: what ``fastinit inspect MODEL --recipe R`` builds (:func:`build`)
and which recipe ``R`` names (:func:`resolve_recipe`), called directly.

The command itself (the report it prints and writes, its one-line errors) runs in
``tests/test_report.py``.
"""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
import torch

import fastinit
from fastinit.cli.inspect import build, resolve_recipe
from fastinit.cli.models import LlamaShaped, fingerprint
from fastinit.cli.parser import CommandError

MODULE = """
import fastinit.recipes as R
from torch import nn

def mlp():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

def not_a_model():
    return [1, 2, 3]

HE = {"*.weight": R.kaiming_normal(nonlinearity="relu"), "*.bias": R.zeros()}

def he():
    return HE

NUMBER = 3
"""

CPU = torch.device("cpu")


@pytest.fixture
def entry_points(tmp_path, monkeypatch):
    """A module ``cli_inspect_entry`` on ``sys.path`` with a model, recipes and non-models."""
    (tmp_path / "cli_inspect_entry.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("cli_inspect_entry")
    sys.modules.pop("cli_inspect_entry", None)


def test_build_a_builtin_shape_is_its_materialized_model():
    model, title = build("tiny", seed=3, device=CPU)
    assert title.startswith("LlamaShaped tiny (")
    assert not any(p.is_meta for p in model.parameters())
    with torch.device("meta"):
        expected = LlamaShaped("tiny")
    assert fingerprint(model) == fingerprint(
        fastinit.materialize(expected, "cpu", seed=3, progress=False))
    other, _ = build("tiny", seed=4, device=CPU)
    assert fingerprint(other) != fingerprint(model)


def test_build_an_entry_point_with_and_without_a_recipe(entry_points):
    own, title = build("cli_inspect_entry:mlp", seed=5, device=CPU)
    assert title == "Sequential (cli_inspect_entry:mlp)"
    with fastinit.empty_init():
        ref = entry_points.mlp()
    assert fingerprint(own) == fingerprint(fastinit.materialize(ref, "cpu", seed=5,
                                                                progress=False))
    he, _ = build("cli_inspect_entry:mlp", seed=5, device=CPU, recipe=entry_points.HE)
    with fastinit.empty_init():
        ref = entry_points.mlp()
    assert fingerprint(he) == fingerprint(fastinit.materialize(
        ref, "cpu", seed=5, recipe=entry_points.HE, progress=False))
    assert fingerprint(he) != fingerprint(own)  # the recipe was applied
    assert bool((he[0].bias == 0).all()) and not bool((own[0].bias == 0).all())
    with pytest.raises(CommandError, match="returned list, not an nn.Module"):
        build("cli_inspect_entry:not_a_model", seed=0, device=CPU)
    with pytest.raises(CommandError, match="not a built-in shape"):
        build("no-such-model", seed=0, device=CPU)


def test_resolve_recipe_names_a_builtin_or_the_object(entry_points):
    assert resolve_recipe("gpt2") == "gpt2"  # built-in recipes are kept by name
    assert resolve_recipe("cli_inspect_entry:HE") is entry_points.HE
    assert resolve_recipe("cli_inspect_entry:he") is entry_points.HE  # a function is called
    with pytest.raises(CommandError, match="unknown recipe"):
        resolve_recipe("no-such-recipe")
    with pytest.raises(CommandError, match="expected a fastinit recipe.*got int"):
        resolve_recipe("cli_inspect_entry:NUMBER")
