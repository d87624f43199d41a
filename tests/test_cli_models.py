"""fastinit.cli.models: the Llama-shaped models have their stated parameter counts, and
the tiny one runs forward once materialized."""
from __future__ import annotations

import torch

from fastinit.cli.models import LlamaShaped, get_config
from fastinit.materialize import materialize


def test_models_match_their_parameter_count():
    for name in ("tiny", "125m", "8b"):
        cfg = get_config(name)
        with torch.device("meta"):
            model = LlamaShaped(cfg)
        assert sum(p.numel() for p in model.parameters()) == cfg.num_parameters()
    cfg = get_config("8b")  # Llama 3.1 8B: 8.03 B parameters
    assert (cfg.hidden, cfg.intermediate, cfg.layers, cfg.heads, cfg.kv_heads, cfg.vocab) == (
        4096, 14336, 32, 32, 8, 128256)
    assert cfg.num_parameters() == 8_030_261_248


def test_tiny_model_runs_forward():
    with torch.device("meta"):
        model = LlamaShaped("tiny")
    materialize(model, "cpu", seed=0, progress=False)
    logits = model(torch.tensor([[1, 2, 3, 4]]))
    assert logits.shape == (1, 4, get_config("tiny").vocab) and torch.isfinite(logits).all()
    for name, p in model.named_parameters():
        if name.endswith("layernorm.weight") or name == "norm.weight":
            assert bool((p == 1).all()), name
