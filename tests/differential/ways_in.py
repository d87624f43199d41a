"""The ways model code reaches an init function, each bound at import time as real code
binds it (torchtitan's partials, timm's helpers, transformers' tables), and a model whose
init uses one of them. Shared by tests/differential/test_ways_in.py and the distributed workers."""
from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn.init import trunc_normal_ as bound_trunc_normal_

STD = 0.02
SHAPE = (250, 66)  # uneven over 4 ranks along both dimensions

TABLE = {"w": nn.init.trunc_normal_}
EARLY = functools.partial(nn.init.trunc_normal_, std=STD, a=-3 * STD, b=3 * STD)


def helper_trunc_normal_(t: torch.Tensor, std: float) -> torch.Tensor:
    """A library's own truncated normal built from tensor methods (as timm's is)."""
    lo, hi = (1 + math.erf(-2 / math.sqrt(2))) / 2, (1 + math.erf(2 / math.sqrt(2))) / 2
    with torch.no_grad():
        t.uniform_(2 * lo - 1, 2 * hi - 1)
        t.erfinv_()
        t.mul_(std * math.sqrt(2.0))
        t.clamp_(min=-2 * std, max=2 * std)
    return t


#: way -> a call on a tensor. The trunc-normal ways draw what ``attribute`` draws.
WAYS = {
    "attribute": lambda w: nn.init.trunc_normal_(w, std=STD, a=-3 * STD, b=3 * STD),
    "keyword": lambda w: nn.init.trunc_normal_(tensor=w, std=STD, a=-3 * STD, b=3 * STD),
    "dict": lambda w: TABLE["w"](w, std=STD, a=-3 * STD, b=3 * STD),
    "bound_import": lambda w: bound_trunc_normal_(w, std=STD, a=-3 * STD, b=3 * STD),
    "partial": lambda w: EARLY(w),
    "getattr": lambda w: getattr(nn.init, "trunc_normal_")(w, 0.0, STD, -3 * STD, 3 * STD),
    "alias": lambda w: nn.init.normal(w, 0.0, STD),  # deprecated alias of normal_
    "method": lambda w: w.normal_(0.0, STD),
    "helper": lambda w: helper_trunc_normal_(w, STD),
}
#: the ways that draw what ``attribute`` draws
SAME_AS_ATTRIBUTE = ("attribute", "keyword", "dict", "bound_import", "partial", "getattr")


class Model(nn.Module):
    """One weight, initialized in ``__init__`` and by ``init_weights`` through ``way``."""

    def __init__(self, way: str) -> None:
        super().__init__()
        self.way = way
        self.lm_head = nn.Linear(SHAPE[1], SHAPE[0], bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)  # the deprecated alias
            WAYS[self.way](self.lm_head.weight)


def call(way: str, w: torch.Tensor) -> torch.Tensor:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        WAYS[way](w)
    return w
