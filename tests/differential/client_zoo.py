"""Models from other libraries' own code for the client-model zoo (``test_client_zoo.py``).

Each builder returns what a user of that library gets from eager construction on the
CPU, with tiny configs: timm's ``create_model`` (its tiny ``test_*`` models and small
overrides), torchvision's model classes, diffusers' model classes, torchtitan's
config ``build()`` followed by ``init_states()`` (torchtitan's own init entry point, which
its trainer calls after building on meta), and litgpt's ``GPT``. The comparison with eager
construction is ``tests/differential/zoo.py``'s.

torchvision. Its PyPI wheel for Linux is a CUDA build: its C++ operator library
(``torchvision._C``, nms, roi_align, ...) links against torch's CUDA libraries and does
not load beside a CPU torch, and ``import torchvision`` then fails while registering
fake kernels for ``torchvision::nms`` / ``qnms``. The models are pure Python and use none
of those operators, so ``import_torchvision`` declares the schemas of those two operators
when (and only when) the library cannot be loaded, and then imports torchvision normally;
calling a detection operator still fails, with torch's "no kernel" error. timm imports
torchvision (``torchvision.ops.misc.FrozenBatchNorm2d``), so it goes through the same
function. CI (``.ci/clients``) installs torchvision outside site-packages, in
``<venv>/lib/torchvision-no-ops`` (``TORCHVISION_DIR``), so that no other test - nor
transformers, which imports torchvision whenever it is installed - sees a torchvision
that cannot be imported; ``import_torchvision`` puts that folder on ``sys.path``.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from tests.differential import zoo

#: Where CI installs torchvision (``pip install --no-deps --target``), see the docstring.
TORCHVISION_DIR = Path(sys.prefix) / "lib" / "torchvision-no-ops"

_OP_SCHEMAS = (  # the operators torchvision's import registers fake kernels for unconditionally
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_declared: list = []  # keeps the torch.library fragment alive


@functools.lru_cache(None)
def import_torchvision():
    """``torchvision``, importable beside a CPU torch (see the module docstring), or a
    pytest skip when it is not installed."""
    if importlib.util.find_spec("torchvision") is None and TORCHVISION_DIR.is_dir():
        sys.path.append(str(TORCHVISION_DIR))
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchvision is not installed (.ci/clients installs it)")
    folder = Path(list(spec.submodule_search_locations)[0])
    libs = sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd"))
    loaded = False
    if libs:
        try:
            torch.ops.load_library(str(libs[0]))
            loaded = True
        except OSError:
            loaded = False
    if not loaded and not hasattr(torch.ops.torchvision, "nms"):
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _OP_SCHEMAS:
            lib.define(schema)
        _declared.append(lib)
    return importlib.import_module("torchvision")


def import_timm():
    """``timm`` (after torchvision, which it imports), or a pytest skip."""
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (.ci/clients installs it)")
    import_torchvision()
    return importlib.import_module("timm")


def need(module: str):
    """``module`` imported, or a pytest skip naming it."""
    return pytest.importorskip(module, reason=f"{module} is not installed (.ci/clients)")


# --- inputs --------------------------------------------------------------------------------


def image(size: int = 32, channels: int = 3) -> zoo.Inputs:
    return lambda m: (torch.randn(2, channels, size, size),)


def timm_image() -> zoo.Inputs:
    """A batch at the model's own default input size (ViTs need their image size)."""
    def inputs(m):
        c, h, w = m.pretrained_cfg.get("input_size", (3, 32, 32))
        return (torch.randn(2, c, h, w),)
    return inputs


def tokens(vocab: int, seq: int = 8) -> torch.Tensor:
    return torch.randint(0, vocab, (1, seq))


# --- timm ------------------------------------------------------------------------------------


def timm_case(name: str, model: str, notes: str = "", **kw) -> zoo.Case:
    def build():
        return import_timm().create_model(model, pretrained=False, **kw)
    return zoo.Case(name, build, timm_image(), notes)


def timm_class(name: str, module: str, cls: str, inputs: zoo.Inputs, notes: str = "",
               args: Callable[[], tuple] = tuple, **kw) -> zoo.Case:
    """``timm.models.<module>.<cls>(*args(), **kw)``: a tiny instance of a timm class."""
    def build():
        import_timm()
        mod = importlib.import_module(f"timm.models.{module}")
        return getattr(mod, cls)(*args(), **kw)
    return zoo.Case(name, build, inputs, notes)


def _regnet_cfg():
    from timm.models.regnet import RegNetCfg
    return (RegNetCfg(depth=8, w0=8, wa=4.0, wm=1.5, group_size=8, se_ratio=0.25),)



TIMM = [
    timm_case("timm-test_resnet", "test_resnet", "ResNet, zero_init_last, own init loop",
              num_classes=10),
    timm_case("timm-test_efficientnet", "test_efficientnet", "_init_weight_goog",
              num_classes=10),
    timm_case("timm-test_efficientnet_evos", "test_efficientnet_evos", "EvoNorm",
              num_classes=10),
    timm_case("timm-test_convnext", "test_convnext", "ConvNeXt, layer scale", num_classes=10),
    timm_case("timm-test_vit", "test_vit", "ViT: trunc-normal pos_embed, jax-style init",
              num_classes=10),
    timm_case("timm-test_vit_relpos", "test_vit_relpos", "relative position ViT",
              num_classes=10),
    timm_case("timm-test_byobnet", "test_byobnet", "BYOB net, zero_init_last", num_classes=10),
    timm_case("timm-test_nfnet", "test_nfnet", "normalizer-free, scaled weight standardization",
              num_classes=10),
    timm_case("timm-test_coatnet", "test_coatnet", "MaxxViT family, conv + attention",
              num_classes=10),
    timm_case("timm-mobilenetv3", "mobilenetv3_small_050", "MobileNetV3, _init_weight_goog",
              num_classes=10),
    timm_class("timm-RegNet", "regnet", "RegNet", image(),
               "zero_init_last", args=_regnet_cfg, num_classes=10),
    timm_class("timm-DenseNet", "densenet", "DenseNet", image(),
               "own kaiming loop", growth_rate=8, block_config=(2, 2), num_classes=10),
    timm_class("timm-SwinTransformer", "swin_transformer", "SwinTransformer",
               image(), "relative position bias table, trunc-normal",
               img_size=32, patch_size=4, embed_dim=16, depths=(1, 1), num_heads=(2, 4),
               window_size=4, num_classes=10),
    timm_class("timm-ConvNeXt-ls", "convnext", "ConvNeXt", image(),
               "layer scale gamma = ls_init_value, head_init_scale",
               depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), ls_init_value=0.5, head_init_scale=0.25,
               num_classes=10),
    timm_class("timm-Beit", "beit", "Beit", image(),
               "layer scale init_values, relative position bias, rescaled blocks",
               img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, init_values=0.1,
               use_rel_pos_bias=True, num_classes=10),
]


# --- torchvision -----------------------------------------------------------------------------


def tv_case(name: str, make: Callable[[Any], Any], notes: str = "", size: int = 32) -> zoo.Case:
    """``make(torchvision.models)``: a torchvision model, eager as its users build it."""
    def build():
        return make(import_torchvision().models)
    return zoo.Case(name, build, image(size), notes)


def _tv_efficientnet(models):
    from torchvision.models import efficientnet
    setting, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25,
                                                    depth_mult=0.25)
    return efficientnet.EfficientNet(setting, 0.2, num_classes=10, last_channel=last)


def _tv_regnet(models):
    from torchvision.models import regnet
    params = regnet.BlockParams.from_init_params(depth=2, w_0=8, w_a=8.0, w_m=2.0,
                                                 group_width=8)
    return regnet.RegNet(params, num_classes=10)


def _tv_convnext(models):
    from torchvision.models import convnext
    return convnext.ConvNeXt([convnext.CNBlockConfig(16, 32, 1), convnext.CNBlockConfig(32, None, 1)],
                             layer_scale=0.5, num_classes=10)


TORCHVISION = [
    tv_case("tv-resnet", lambda m: m.resnet.ResNet(m.resnet.BasicBlock, [1, 1, 1, 1],
                                                   num_classes=10, zero_init_residual=True),
            "kaiming-normal fan-out loop, zero_init_residual"),
    tv_case("tv-mobilenet_v3_small", lambda m: m.mobilenet_v3_small(width_mult=0.25,
                                                                    num_classes=10),
            "own init loop: kaiming fan-out, normal(0, 0.01) head"),
    tv_case("tv-efficientnet", _tv_efficientnet, "own init loop: uniform(1/sqrt(out)) head"),
    tv_case("tv-densenet", lambda m: m.DenseNet(growth_rate=8, block_config=(2, 2),
                                                num_init_features=16, num_classes=10),
            "own kaiming loop, zero Linear bias"),
    tv_case("tv-squeezenet1_1", lambda m: m.squeezenet1_1(num_classes=10),
            "kaiming_uniform loop, normal(0, 0.01) final conv"),
    tv_case("tv-vit", lambda m: m.VisionTransformer(image_size=32, patch_size=8, num_layers=2,
                                                    num_heads=4, hidden_dim=32, mlp_dim=64,
                                                    num_classes=10),
            "trunc-normal conv_proj, zero head"),
    tv_case("tv-swin", lambda m: m.swin_transformer.SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=[4, 4],
        num_classes=10), "trunc-normal loop, relative position bias table"),
    tv_case("tv-convnext", _tv_convnext, "layer scale, trunc-normal loop"),
    tv_case("tv-regnet", _tv_regnet, "own init loop, zero_init_last-style BN"),
    tv_case("tv-shufflenet_v2", lambda m: m.shufflenet_v2_x0_5(num_classes=10),
            "torch defaults only"),
]


# --- diffusers -------------------------------------------------------------------------------


def diffusers_case(name: str, cls: str, inputs: zoo.Inputs, notes: str = "", **kw) -> zoo.Case:
    def build():
        return getattr(need("diffusers"), cls)(**kw)
    return zoo.Case(name, build, inputs, notes)


def _unet_inputs(channels: int, size: int, cond: int | None = None) -> zoo.Inputs:
    def inputs(m):
        out = {"sample": torch.randn(1, channels, size, size), "timestep": torch.tensor([10])}
        if cond is not None:
            out["encoder_hidden_states"] = torch.randn(1, 4, cond)
        return out
    return inputs


def _controlnet_inputs(m):
    return {"sample": torch.randn(1, 4, 8, 8), "timestep": torch.tensor([10]),
            "encoder_hidden_states": torch.randn(1, 4, 16),
            "controlnet_cond": torch.randn(1, 3, 16, 16)}


def _dit_inputs(m):
    return {"hidden_states": torch.randn(1, 4, 8, 8), "timestep": torch.tensor([10]),
            "class_labels": torch.tensor([3])}


def _t2d_inputs(m):
    return {"hidden_states": torch.randn(1, 8, 8, 8),
            "encoder_hidden_states": torch.randn(1, 4, 16)}


def _vae_inputs(m):
    return {"sample": torch.randn(1, 3, 16, 16)}


_UNET = dict(layers_per_block=1, block_out_channels=(8, 16), norm_num_groups=4)
_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
            latent_channels=4, norm_num_groups=4, layers_per_block=1)

DIFFUSERS = [
    diffusers_case("diffusers-UNet2DModel", "UNet2DModel", _unet_inputs(3, 16),
                   "attention down/up blocks", sample_size=16, in_channels=3, out_channels=3,
                   down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                   up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4,
                   **_UNET),
    diffusers_case("diffusers-UNet2DConditionModel", "UNet2DConditionModel",
                   _unet_inputs(4, 8, cond=16), "cross attention, timestep embedding",
                   sample_size=8, in_channels=4, out_channels=4,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                   attention_head_dim=4, **_UNET),
    diffusers_case("diffusers-AutoencoderKL", "AutoencoderKL", _vae_inputs, "VAE",
                   sample_size=16, **_VAE),
    diffusers_case("diffusers-VQModel", "VQModel", _vae_inputs, "VQ-VAE codebook",
                   sample_size=16, num_vq_embeddings=16, **_VAE),
    diffusers_case("diffusers-DiTTransformer2DModel", "DiTTransformer2DModel", _dit_inputs,
                   "adaLN-zero DiT", num_attention_heads=2, attention_head_dim=8,
                   in_channels=4, out_channels=4, num_layers=1, sample_size=8, patch_size=2,
                   num_embeds_ada_norm=10),
    diffusers_case("diffusers-Transformer2DModel", "Transformer2DModel", _t2d_inputs,
                   "continuous input, cross attention", num_attention_heads=2,
                   attention_head_dim=8, in_channels=8, num_layers=1, norm_num_groups=4,
                   cross_attention_dim=16),
    diffusers_case("diffusers-ControlNetModel", "ControlNetModel", _controlnet_inputs,
                   "zero convolutions made in __init__", in_channels=4,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   cross_attention_dim=16, attention_head_dim=4,
                   conditioning_embedding_out_channels=(4, 8), **_UNET),
]


# --- torchtitan -------------------------------------------------------------------------------


def _titan_inputs(m):
    pos = torch.arange(8)[None]
    return {"tokens": tokens(128), "positions": pos,
            "attention_masks": m.get_attention_masks(positions=pos)}


def _titan_llama3(tied: bool, *, dim: int = 64, heads: int = 4, kv_heads: int = 2,
                  vocab: int = 128, layers: int = 2, multiple_of: int = 32,
                  max_seq_len: int = 64):
    """torchtitan's Llama 3 (fused qkv, complex RoPE, flex attention), small by default;
    ``tied``: the head shares the embedding. Built on the current device, init run."""
    need("torchtitan")
    from torchtitan.models import llama3 as L
    from torchtitan.models.common import (ComplexRoPE, Embedding, Linear, RMSNorm,
                                          compute_ffn_hidden_dim)
    cfg = L.Llama3Model.Config(
        dim=dim, vocab_size=vocab, enable_weight_tying=tied,
        tok_embeddings=Embedding.Config(
            num_embeddings=vocab, embedding_dim=dim,
            param_init=L._EMBEDDING_SKIP_INIT if tied else L._EMBEDDING_INIT),
        norm=RMSNorm.Config(normalized_shape=dim, param_init=L._NORM_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab,
                              param_init=L._output_linear_init(dim)),
        layers=L._build_llama3_layers(
            fuse_qkv=True, n_layers=layers, dim=dim, n_heads=heads, n_kv_heads=kv_heads,
            hidden_dim=compute_ffn_hidden_dim(dim, multiple_of=multiple_of),
            rope=ComplexRoPE.Config(dim=dim // heads, max_seq_len=max_seq_len, theta=500000,
                                    scaling="llama"),
            attn_backend="flex"))
    model = cfg.build()
    model.init_states()
    return model


def _titan_dsv3():
    need("torchtitan")
    from torchtitan.models import deepseek_v3 as D
    from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm
    dim, vocab, rope_dim = 64, 128, 16
    layers = D._build_dsv3_layers(
        n_layers=2, n_dense_layers=1, dim=dim, n_heads=4, q_lora_rank=0, kv_lora_rank=32,
        qk_nope_head_dim=16, qk_rope_head_dim=rope_dim, v_head_dim=16, mscale=0.70,
        dense_hidden_dim=128, moe_hidden_dim=32, num_experts=4, num_shared_experts=1,
        router_top_k=2, router_score_func="softmax", attn_backend="flex",
        moe_comm_backend="standard", non_blocking_capacity_factor=None,
        rope=ComplexRoPE.Config(dim=rope_dim, max_seq_len=256, theta=10000.0, scaling="yarn",
                                rope_factor=40.0, beta_fast=32.0, beta_slow=1.0,
                                original_seq_len=64))
    cfg = D.DeepSeekV3Model.Config(
        vocab_size=vocab, dim=dim,
        tok_embeddings=Embedding.Config(num_embeddings=vocab, embedding_dim=dim,
                                        param_init=D._EMBEDDING_INIT),
        norm=RMSNorm.Config(normalized_shape=dim, param_init=D._NORM_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab,
                              param_init=D._output_linear_init(dim)),
        layers=layers, mtp_layers=D._build_mtp_layers(layers[-1], dim=dim, num_mtp_layers=0))
    model = cfg.build()
    model.init_states()
    return model


TORCHTITAN = [
    zoo.Case("torchtitan-llama3", lambda: _titan_llama3(False), _titan_inputs,
             "param_init dicts of partials, fused wqkv, depth-scaled std; then init_states()"),
    zoo.Case("torchtitan-llama3-tied", lambda: _titan_llama3(True), _titan_inputs,
             "tied embeddings (skip_param_init on the embedding)"),
    zoo.Case("torchtitan-deepseek_v3", _titan_dsv3, _titan_inputs,
             "MLA attention, MoE experts and router"),
]


# --- litgpt ------------------------------------------------------------------------------------


def litgpt_case(name: str, notes: str = "", **kw) -> zoo.Case:
    def build():
        need("litgpt")
        from litgpt.config import Config
        from litgpt.model import GPT
        return GPT(Config(block_size=32, vocab_size=96, padded_vocab_size=96, n_layer=2,
                          n_head=4, n_embd=32, **kw))
    return zoo.Case(name, build, lambda m: (tokens(96),), notes)


LITGPT = [
    litgpt_case("litgpt-gpt-neox", "parallel residual, LayerNorm, GptNeoxMLP",
                rotary_percentage=0.25, parallel_residual=True, bias=True),
    litgpt_case("litgpt-llama", "RMSNorm, LLaMAMLP, grouped queries, no bias",
                rotary_percentage=1.0, parallel_residual=False, bias=False,
                norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=64,
                n_query_groups=2),
]

CASES = TIMM + TORCHVISION + DIFFUSERS + TORCHTITAN + LITGPT
