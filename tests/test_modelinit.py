"""The model's own init code (``fastinit.modelinit``): which modules are transformers
models, the order :func:`~fastinit.modelinit.run_model_init` runs resets and the
model-level init in, and a parametrization given its plain initial values again."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from fastinit.modelinit import is_hf_model, outermost_hf_models, run_model_init


def test_is_hf_model_on_a_transformers_model_and_a_plain_module():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_positions=8,
                                  bos_token_id=0, eos_token_id=0)
    with torch.device("meta"):
        hf = transformers.GPT2LMHeadModel(cfg)
    assert is_hf_model(hf) and is_hf_model(hf.transformer)  # the base model is one too
    assert not is_hf_model(hf.lm_head) and not is_hf_model(nn.Linear(2, 2))
    wrapper = nn.ModuleDict({"head": nn.Linear(2, 2), "model": hf})
    assert outermost_hf_models(wrapper) == [hf]
    assert outermost_hf_models(hf) == [hf]  # not the base model inside it
    assert outermost_hf_models(nn.Linear(2, 2)) == []


class _Logged(nn.Module):
    """Logs its name when reset (``reset_parameters``)."""

    def __init__(self, log: list, name: str, *children: nn.Module) -> None:
        super().__init__()
        self.log, self.name = log, name
        for i, child in enumerate(children):
            self.add_module(f"c{i}", child)

    def reset_parameters(self) -> None:
        self.log.append(self.name)


class _Private(nn.Module):
    """Logs its name when reset through ``_reset_parameters`` (``nn.MultiheadAttention``'s)."""

    def __init__(self, log: list, name: str) -> None:
        super().__init__()
        self.log, self.name = log, name

    def _reset_parameters(self) -> None:
        self.log.append(self.name)


def test_resets_run_children_first_shared_modules_once_then_init_weights():
    log: list[str] = []
    shared = _Logged(log, "shared")
    root = _Logged(log, "root",
                   _Logged(log, "a", shared, _Private(log, "private")),
                   nn.Sequential(shared, _Logged(log, "b")))
    root.init_weights = lambda: log.append("init_weights")
    run_model_init(root)
    assert log == ["shared", "private", "a", "b", "root", "init_weights"]


def test_a_parametrization_gets_the_plain_initial_values_as_registering_it_does():
    m = nn.Linear(4, 4)
    parametrizations.weight_norm(m)
    torch.manual_seed(0)
    run_model_init(m)
    torch.manual_seed(0)
    eager = nn.Linear(4, 4)
    parametrizations.weight_norm(eager)  # registered after construction
    assert m.state_dict().keys() == eager.state_dict().keys()
    for name, value in eager.state_dict().items():
        assert torch.equal(m.state_dict()[name], value), name
