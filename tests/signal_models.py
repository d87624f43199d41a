"""Small models with known signal propagation at init, for the propagation and report tests.

* :func:`relu_mlp`: a deep ReLU MLP (``nn.Sequential`` of Linear, ReLU), weights by
  Xavier (the std halves in variance per layer: vanishing) or He (steady);
* :class:`GPT`: a pre-norm transformer (GPT-2 layout), N(0, 0.02) everywhere, with or
  without std / sqrt(2 L) on the two branch output projections of each block;
* :class:`ResNet`: a stem and one stage of BasicBlocks with BatchNorm (torchvision's
  names: ``bn2`` is each block's last norm), to be initialized by ``recipes.resnet`` with
  or without ``zero_init_residual``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def relu_mlp(init: str, depth: int = 50, width: int = 512) -> nn.Sequential:
    """``depth`` Linear + ReLU layers of ``width``, weights ``"xavier"`` or ``"he"``
    (normal), biases zero."""
    layers = []
    for _ in range(depth):
        lin = nn.Linear(width, width)
        if init == "xavier":
            nn.init.xavier_normal_(lin.weight)
        elif init == "he":
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        else:
            raise ValueError(init)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers)


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, -1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    """A pre-norm transformer: token embedding, ``layers`` blocks, final norm, head."""

    def __init__(self, vocab: int = 1000, d: int = 64, layers: int = 16, heads: int = 4,
                 scaled: bool = True, emb_std: float = 0.02) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        with torch.no_grad():
            for n, p in self.named_parameters():
                if n.endswith("bias"):
                    nn.init.zeros_(p)
                elif ".ln_" in n or n.startswith("ln_"):
                    nn.init.ones_(p)
                elif n == "wte.weight":
                    nn.init.normal_(p, 0.0, emb_std)
                elif scaled and n.endswith(("c_proj.weight", "mlp_proj.weight")):
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))
                else:
                    nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class ResNet(nn.Module):
    """Stem (conv, BN, ReLU), one stage of ``blocks`` BasicBlocks, pooled linear head."""

    def __init__(self, channels: int = 8, blocks: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(*[BasicBlock(channels) for _ in range(blocks)])
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))
