"""A plain-torch, Llama-shaped decoder used by ``fastinit demo`` and ``fastinit bench``.

The model has the parameter layout of Llama 3 (token embedding; per layer q/k/v/o and
gate/up/down projections without bias and two RMSNorms; a final RMSNorm; an untied
``lm_head``) and a working forward pass, but needs nothing beyond torch: the main job of
the command line runs without transformers. Its initialization is torch's default, i.e.
whatever ``reset_parameters`` of each module does (``Linear``: Kaiming-uniform with
``a = sqrt(5)``; ``Embedding``: N(0, 1); ``RMSNorm``: ones), so the three ways of building
it (normal construction, meta + ``to_empty`` + ``reset_parameters``, meta +
:func:`fastinit.materialize`) all draw from the same distributions.

Configurations are looked up by name with :func:`get_config`; ``"1b"``, ``"3b"`` and
``"8b"`` have the shapes of Llama 3.2 1B / 3B and Llama 3.1 8B (with an untied head, so
the two smaller ones have more parameters than the released, tied checkpoints).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["LlamaConfig", "CONFIGS", "get_config", "LlamaShaped", "RMSNorm", "hf_config",
           "parameter_bytes", "fingerprint"]


@dataclass(frozen=True)
class LlamaConfig:
    """The shape of a Llama-style decoder."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def num_parameters(self) -> int:
        """Parameter count of :class:`LlamaShaped` for this config (no tied weights)."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        attn = 2 * h * h + 2 * h * kv
        mlp = 3 * h * self.intermediate
        per_layer = attn + mlp + 2 * h
        return 2 * self.vocab * h + self.layers * per_layer + h

    def as_dict(self) -> dict:
        return asdict(self)


#: Named configurations, smallest first. "tiny" and "125m" are for quick runs on a CPU.
CONFIGS: dict[str, LlamaConfig] = {c.name: c for c in (
    LlamaConfig("tiny", hidden=256, intermediate=768, layers=4, heads=4, kv_heads=2,
                vocab=32000),
    LlamaConfig("125m", hidden=768, intermediate=2048, layers=12, heads=12, kv_heads=4,
                vocab=32000),
    LlamaConfig("350m", hidden=1024, intermediate=2816, layers=24, heads=16, kv_heads=8,
                vocab=32000),
    LlamaConfig("1b", hidden=2048, intermediate=8192, layers=16, heads=32, kv_heads=8,
                vocab=128256),
    LlamaConfig("3b", hidden=3072, intermediate=8192, layers=28, heads=24, kv_heads=8,
                vocab=128256),
    LlamaConfig("8b", hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8,
                vocab=128256),
)}


def get_config(name: str) -> LlamaConfig:
    """The configuration called ``name`` (see :data:`CONFIGS`); ``ValueError`` if unknown."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(CONFIGS)}") from None


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale (initialized to ones)."""

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch.nn.RMSNorm does the same; a reset_parameters is what lets the meta-device
        # recipes (to_empty + reset_parameters, materialize) reach this parameter.
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding of ``x`` (batch, heads, seq, head_dim), computed on the fly so the
    model has no buffers (nothing that an init recipe would have to recompute)."""
    d = x.shape[-1]
    inv = theta ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    ang = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)[:, None] * inv
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig, **factory) -> None:
        super().__init__()
        self.cfg = cfg
        kv = cfg.kv_heads * cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden, cfg.hidden, bias=False, **factory)
        self.k_proj = nn.Linear(cfg.hidden, kv, bias=False, **factory)
        self.v_proj = nn.Linear(cfg.hidden, kv, bias=False, **factory)
        self.o_proj = nn.Linear(cfg.hidden, cfg.hidden, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        c = self.cfg
        q = self.q_proj(x).view(b, s, c.heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, c.kv_heads, c.head_dim).transpose(1, 2)
        q, k = _rope(q, c.rope_theta), _rope(k, c.rope_theta)
        rep = c.heads // c.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, s, c.hidden))


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig, **factory) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False, **factory)
        self.up_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False, **factory)
        self.down_proj = nn.Linear(cfg.intermediate, cfg.hidden, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig, **factory) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps, **factory)
        self.self_attn = Attention(cfg, **factory)
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps, **factory)
        self.mlp = MLP(cfg, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaShaped(nn.Module):
    """A Llama-3-shaped causal language model in plain torch.

    Args:
        cfg: the shape (a :class:`LlamaConfig` or a name from :data:`CONFIGS`)
        device: where to build it (``"meta"`` for a model without storage)
        dtype: the parameters' dtype (default: torch's default dtype)

    Examples:
        >>> with torch.device("meta"):
        ...     model = LlamaShaped("tiny")
        >>> fastinit.materialize(model, "cpu", seed=0)
    """

    def __init__(self, cfg: LlamaConfig | str, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        cfg = get_config(cfg) if isinstance(cfg, str) else cfg
        self.cfg = cfg
        factory = {"device": device, "dtype": dtype}
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.hidden, **factory)
        self.layers = nn.ModuleList(DecoderLayer(cfg, **factory) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.norm_eps, **factory)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False, **factory)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def hf_config(cfg: LlamaConfig):
    """The equivalent ``transformers.LlamaConfig`` (needs transformers; untied head)."""
    from transformers import LlamaConfig as HFLlamaConfig

    return HFLlamaConfig(
        vocab_size=cfg.vocab, hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads, rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.norm_eps, tie_word_embeddings=False, max_position_embeddings=8192)


def parameter_bytes(cfg: LlamaConfig, dtype: torch.dtype) -> int:
    """Bytes of all parameters of :class:`LlamaShaped` in ``dtype``."""
    return cfg.num_parameters() * torch.empty((), dtype=dtype).element_size()



def fingerprint(module: nn.Module, digits: int = 16) -> str:
    """The first ``digits`` hex digits of a sha256 over the state dict (names, dtypes,
    shapes and raw bytes, in name order): equal fingerprints mean bit-identical weights."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:digits]
