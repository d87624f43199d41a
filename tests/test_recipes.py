"""``fastinit.recipes``: ``apply`` and ``apply_recipe`` - recipes on real models.

``apply`` outside ``materialize`` draws its own key like any ``fastinit.<fn>_`` call;
``apply_recipe`` equals ``materialize``'s recipe on the tensors it matches, in grouped
launches, with its seeds and generators; its errors write nothing; a built-in recipe that
finds nothing of what it is for raises (and writes nothing), one whose targets are all kept
warns. The inits, plans and rules themselves: tests/test_rules.py.
"""
from __future__ import annotations

import pytest
import torch

import fastinit
from fastinit import recipes
from tests.common import assert_bitwise_equal


def test_constant_inits_and_apply_outside_materialize():
    w, b = torch.empty(4, 4), torch.empty(4)
    torch.manual_seed(0)
    recipes.apply({"*.weight": recipes.normal(std=0.1), "*": recipes.zeros()},
                  {"lin.weight": w, "lin.bias": b})
    torch.manual_seed(0)
    assert_bitwise_equal(w, fastinit.normal_(torch.empty(4, 4), 0.0, 0.1))
    assert (b == 0).all()
    before = w.clone()
    recipes.apply({"*.weight": recipes.normal(std=0.1), "*": recipes.zeros()},
                  {"lin.weight": w, "lin.bias": b})
    assert not torch.equal(w, before), "apply repeated the previous values"


# --- apply_recipe: composition, seeds, errors ------------------------------------------------------

from torch import nn  # noqa: E402

from fastinit.cli.models import LlamaConfig, LlamaShaped  # noqa: E402

SMALL = LlamaConfig("small", hidden=64, intermediate=96, layers=2, heads=4, kv_heads=2, vocab=300)


def _snapshot(model):
    return {n: t.detach().clone() for n, t in model.state_dict(keep_vars=True).items()}


def _unchanged(model, before):
    return all(torch.equal(before[n], t) for n, t in _snapshot(model).items())


def test_apply_recipe_equals_materialize_and_writes_in_grouped_launches(monkeypatch):
    import fastinit.backends as backends

    calls = []
    original = backends.fill_grouped
    monkeypatch.setattr(backends, "fill_grouped",
                        lambda entries, **kw: (calls.append(len(entries)), original(entries, **kw)))
    torch.manual_seed(0)
    real = LlamaShaped(SMALL)
    fastinit.apply_recipe(real, "llama", seed=11)
    n_params = len(list(real.parameters()))
    assert calls == [n_params]  # one grouped fill for the whole model (the CPU: one pass)
    with torch.device("meta"):
        meta = LlamaShaped(SMALL)
    fastinit.materialize(meta, "cpu", seed=11, recipe="llama")
    for (n, a), b in zip(real.named_parameters(), meta.parameters()):
        assert_bitwise_equal(a.detach(), b.detach())
    assert abs(real.layers[0].mlp.up_proj.weight.std().item() - 0.02) < 1e-3
    assert (real.norm.weight == 1).all()


def test_materialize_recipe_overwrites_only_what_it_matches():
    """The model's own init first, then the recipe: unmatched parameters keep the values
    of a materialize without recipe (same names, same streams)."""
    def build():
        return nn.ModuleDict({"lstm": nn.LSTM(8, 16), "head": nn.Linear(16, 4)})

    with torch.device("meta"):
        a, b = build(), build()
    fastinit.materialize(a, "cpu", seed=5, recipe="rnn")
    fastinit.materialize(b, "cpu", seed=5)
    assert_bitwise_equal(a.head.weight.detach(), b.head.weight.detach())
    assert_bitwise_equal(a.head.bias.detach(), b.head.bias.detach())
    assert not torch.equal(a.lstm.weight_hh_l0, b.lstm.weight_hh_l0)
    # a mapping rewrites what its globs match, the rest keeps the model's init
    with torch.device("meta"):
        c = build()
    fastinit.materialize(c, "cpu", seed=5, recipe={"head.bias": recipes.constant(0.5)})
    assert (c.head.bias == 0.5).all()
    assert_bitwise_equal(c.head.weight.detach(), b.head.weight.detach())
    assert_bitwise_equal(c.lstm.weight_hh_l0.detach(), b.lstm.weight_hh_l0.detach())


def test_apply_recipe_seeds_and_generators():
    model = LlamaShaped(SMALL)
    torch.manual_seed(3)
    fastinit.apply_recipe(model, "llama")
    first = _snapshot(model)
    fastinit.apply_recipe(model, "llama")  # a new key from the default generator
    assert not torch.equal(first["lm_head.weight"], model.lm_head.weight)
    torch.manual_seed(3)
    fastinit.apply_recipe(model, "llama")
    assert all(torch.equal(first[n], t) for n, t in _snapshot(model).items())
    g = torch.Generator().manual_seed(3)
    state = torch.get_rng_state()
    fastinit.apply_recipe(model, "llama", generator=g)  # g's first draw = the global's above
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(first[n], t) for n, t in _snapshot(model).items())
    fastinit.apply_recipe(model, "llama", seed=3)
    assert not torch.equal(first["lm_head.weight"], model.lm_head.weight)


def test_apply_recipe_ignores_hf_initialized_flags():
    model = nn.Sequential(nn.Linear(8, 8))
    model[0].weight._is_hf_initialized = True
    before = model[0].weight.detach().clone()
    fastinit.apply_recipe(model, {"*.weight": recipes.normal(std=0.5)}, seed=1)
    assert not torch.equal(model[0].weight, before)


@pytest.mark.parametrize("recipe,exc,match", [
    ("gpt3", ValueError, "known recipes: bert, dcgan, gpt2, llama, lora, mup, resnet, rezero, "
                         "rnn, torchtitan_llama, vit"),
    (recipes.rules({"*.weight": recipes.ones()}, strict=True), ValueError,
     r"no recipe rule matches these parameters: 0\.bias, 1\.bias"),
    ({"*": recipes.orthogonal()}, ValueError, r"0\.bias: Only tensors with 2 or more"),
    ({"*.weight": recipes.normal(std=0.1), "1.bias": recipes.constant(1e6)}, RuntimeError,
     "1.bias"),
    ({"*": 3.0}, TypeError, "callable"),
    (42, TypeError, "recipe must be"),
])
def test_apply_recipe_errors_write_nothing(recipe, exc, match):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4, dtype=torch.float16))
    before = _snapshot(model)
    state = torch.get_rng_state()
    with pytest.raises(exc, match=match):
        fastinit.apply_recipe(model, recipe)
    assert _unchanged(model, before)
    assert torch.equal(state, torch.get_rng_state())


def test_apply_recipe_matching_nothing_warns_and_meta_models_are_refused():
    model = nn.Sequential(nn.Linear(4, 4))
    before = _snapshot(model)
    for recipe in ("resnet", "rnn", "dcgan", "lora"):
        with pytest.raises(ValueError, match=f"recipe '{recipe}' found nothing to initialize "
                                             "in Sequential: it looks for"):
            fastinit.apply_recipe(model, recipe)
        assert _unchanged(model, before)
    with pytest.warns(UserWarning, match="'nothing.*' matched no parameter"):
        fastinit.apply_recipe(model, {"nothing.*": recipes.zeros(), "*": recipes.zeros()})
    assert (model[0].weight == 0).all()
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="meta device.*materialize"):
        fastinit.apply_recipe(meta, {"*": recipes.normal(std=0.02)})


# --- a built-in recipe that finds nothing of what it is for --------------------------------------


class _CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 2)


#: (model, recipe, what the message says the recipe looks for): every built-in recipe's
#: "nothing found" case
NOTHING_FOUND = [
    (_CNN, "rnn", "nn.LSTM / nn.GRU / nn.RNN"),
    (_CNN, "lora", "PEFT LoRA adapters"),
    (_CNN, "rezero", "'\\*alpha\\*'"),
    (_MLP, "resnet", "convolutions"),
    (_MLP, "dcgan", "convolutions / transposed convolutions and BatchNorm"),
    (_CNN, "llama", "'\\*norm.weight'"),
    (_CNN, "bert", "'\\*LayerNorm.weight'"),
    (_CNN, "vit", "'\\*norm\\*.weight'"),
    (_MLP, recipes.rezero("*.gate"), "'\\*.gate'"),
]


def _rezero_globs_warn(recipe):
    return isinstance(recipe, recipes.Recipe) and getattr(recipe, "globs", None)


@pytest.mark.parametrize("build,recipe,looks_for", NOTHING_FOUND,
                         ids=[str(r) for _, r, _ in NOTHING_FOUND])
def test_a_recipe_that_finds_nothing_raises_and_writes_nothing(build, recipe, looks_for):
    """On the old code these only warned (or were silent): this fails there."""
    torch.manual_seed(0)
    model = build()
    before = _snapshot(model)
    state = torch.get_rng_state()
    name = recipe if isinstance(recipe, str) else recipe.name
    match = f"recipe '{name}' found nothing to initialize in {build.__name__}: it looks for .*" \
            f"{looks_for}.*nothing was written"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning instead of the error
        if _rezero_globs_warn(recipe):
            warnings.simplefilter("ignore")  # the glob's own "matched no parameter" note
        with pytest.raises(ValueError, match=match):
            fastinit.apply_recipe(model, recipe, seed=0)
    assert _unchanged(model, before)
    assert torch.equal(state, torch.get_rng_state())
    # the same through materialize: the module is left as it was
    with torch.device("meta"):
        meta = build()
    tensors = {n: t for n, t in meta.state_dict(keep_vars=True).items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=match):
            fastinit.materialize(meta, "cpu", seed=0, recipe=recipe)
    after = meta.state_dict(keep_vars=True)
    assert all(after[n] is t and t.is_meta for n, t in tensors.items())


def test_zero_init_residual_without_residual_blocks_raises():
    model = _CNN()
    before = _snapshot(model)
    with pytest.raises(ValueError, match="no residual block was found in _CNN.*residual_norms="):
        fastinit.apply_recipe(model, recipes.resnet(zero_init_residual=True), seed=0)
    assert _unchanged(model, before)


def test_gpt2_and_torchtitan_llama_name_the_recipe_when_they_cannot_size_the_model():
    for recipe in ("gpt2", "torchtitan_llama"):
        with pytest.raises(ValueError, match=f"recipe '{recipe}': "):
            fastinit.apply_recipe(_CNN(), recipe, seed=0)


def test_a_recipe_whose_finds_are_all_kept_warns_and_mappings_still_warn():
    """Found, but every target is a weight materialize keeps: nothing to write, a warning
    (not the user's mistake); a mapping of globs that matches nothing warns as before."""
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 4))
    model.append(nn.LSTM(4, 4))  # real: kept
    lstm = {n: t.detach().clone() for n, t in model[1].named_parameters()}
    with pytest.warns(UserWarning, match="recipe 'rnn' matched nothing in Sequential"):
        fastinit.materialize(model, "cpu", seed=0, recipe="rnn")
    assert all(torch.equal(lstm[n], t) for n, t in model[1].named_parameters())
    real = _MLP()
    with pytest.warns(UserWarning, match="'nothing.\\*' matched no parameter"):
        fastinit.apply_recipe(real, {"nothing.*": recipes.zeros()}, seed=0)


def test_recipes_that_find_what_they_are_for_do_not_raise():
    fastinit.apply_recipe(nn.Sequential(nn.LSTM(4, 4)), "rnn", seed=0)
    fastinit.apply_recipe(_CNN(), "resnet", seed=0)
    fastinit.apply_recipe(_CNN(), "dcgan", seed=0)
    norm = nn.Sequential(nn.Linear(4, 4))
    norm.add_module("norm", nn.LayerNorm(4))
    for recipe in ("llama", "vit"):
        fastinit.apply_recipe(norm, recipe, seed=0)


def test_a_recipe_that_finds_nothing_in_a_hugging_face_model_leaves_it_as_it_was():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                  num_hidden_layers=2, num_attention_heads=2)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg)
    before = _snapshot(model)
    for recipe in ("rnn", "lora", "rezero", "resnet", "dcgan"):
        with pytest.raises(ValueError, match=f"recipe '{recipe}' found nothing"):
            fastinit.apply_recipe(model, recipe, seed=0)
        assert _unchanged(model, before)
    with torch.device("meta"):
        meta = transformers.BertModel(cfg)
    tensors = dict(meta.state_dict(keep_vars=True))
    with pytest.raises(ValueError, match="recipe 'rnn' found nothing to initialize in BertModel"):
        fastinit.materialize(meta, "cpu", seed=0, recipe="rnn")
    assert all(meta.state_dict(keep_vars=True)[n] is t and t.is_meta for n, t in tensors.items())
    with fastinit.empty_init():
        recorded = transformers.BertModel(cfg)
    fastinit.materialize(recorded, "cpu", seed=0, recipe="bert")  # what it is for: no error
