"""Signal propagation at initialization: one forward and backward pass, watched.

The principle every initialization scheme follows is to keep the variance of activations
and gradients steady across layers (Xavier for tanh, He for ReLU, sigma / sqrt(2 L) on
the branch outputs of deep residual stacks, zero-init of the last norm of each residual
block). :func:`propagate` measures whether a model's init does: it runs one forward and
one backward pass with hooks on every module and records

* per module call (execution order): the output's std and mean, the fraction of exact
  zeros and of dead units after ReLU-like activations, the gradient std at the output;
* per parameter: its std and mean and the std of its gradient;
* per stack of repeated blocks (an ``nn.ModuleList`` / ``nn.Sequential`` of four or more
  blocks of one class whose output has the shape of their input): the std of the stream
  entering the first block and leaving each block - the residual stream;

and flags what the principle rules out (:class:`fastinit.findings.Finding`): activations
or gradients that shrink or grow across depth (the rule below), NaN or inf, dead units,
zero-variance parameters whose recorded law is a random one (judged where
``fastinit.provenance`` has a record of the tensor: without one a constant by design
cannot be told from a lost init), a residual stream that grows with depth.

The depth rule (one definition: :func:`depth_trend`, constants :data:`DEPTH_FACTOR`,
:data:`DEPTH_Z`, :data:`MIN_DEPTH`). Modules are grouped into *series*: the calls of
modules of one class whose names differ only in their integer parts (``layers.3.mlp`` and
``layers.4.mlp``; the layers of an ``nn.Sequential``), parameters likewise, at least
:data:`MIN_DEPTH` of them, in execution (or registration) order. Along a series a
least-squares line is fitted to ln(std) against the position l = 0 .. n-1; the series is
flagged when the line's change from the first to the last position exceeds
ln(:data:`DEPTH_FACTOR`) = ln 4 (the std changes more than 4x, the variance more than 16x)
*and* the slope is more than :data:`DEPTH_Z` = 3 standard errors from zero. Why these
numbers:

* A correct init keeps the gain of each layer at 1 up to finite-width noise: ln(std)
  then performs a random walk. For ReLU networks at He init, the widest-spread common
  case, Var ln|x_L|^2 ~= 5 sum_l 1/n_l (Hanin & Rolnick, 2018), i.e. a step variance of
  about 5 / (4 n) in ln(std) for width n; the least-squares change over L layers of such a
  walk has a standard deviation of about sqrt(6/5 * L * 5/(4 n)) = sqrt(1.5 L / n).
  ln 4 = 1.39 is at least 3 of these standard deviations when n >= 7 L (50 layers at
  width >= 350; a 12-layer transformer at width >= 84): a healthy model of ordinary
  proportions stays under it. A series of layers narrower than that (width <
  :data:`WIDTH_PER_LAYER` = 7 times its length; width: features per sample, channels of
  an image-shaped output, the smaller fan of a weight) is shown, not judged: there the
  bound would not separate a correct init from its noise.
* The defects the principle is about cross it quickly: Xavier (or torch's default
  ``Linear`` init) under ReLU loses a factor sqrt(2) (sqrt(6)) of std per layer, so
  ln 4 is passed within 5 (2) layers; an unscaled residual stream grows like
  sqrt(1 + 2 l v / v0) (v: a branch's output variance, v0: the stream's at entry).
* A residual stream (the input of a stack of blocks, then each block's output) is a
  running sum, not a product: its variance grows linearly with depth and concentrates,
  so :func:`stream_trend` fits the variance, not ln(std), and applies the same bound to
  the fitted std ratio. Its gradient (at each block's output) is judged by
  :func:`depth_trend`. The layers inside the blocks are shown but not judged: the stream
  carries the signal, and a depth-scaled init (torchtitan's std / sqrt(2 (l + 1))) makes
  the branches shrink with depth by design.
* Parameter-gradient series are of weights (two or more dimensions): the gradient of a
  bias or a norm's scale is a sum over the batch, set by the mean of the output gradient
  across samples, which the variance argument does not govern.
* The slope test (Z = 3, the ordinary least-squares standard error from the scatter of
  the points around the line) keeps a short or ragged series - members of one name
  pattern in different roles - from being flagged on a trend its points do not support.

A series holds layers of one per-sample output shape (one parameter shape): a stage that
changes width or resolution starts another series, since the variance argument is about
repeated layers of one shape.

Dead units: a unit (a feature of the last dimension, or a channel of an image-shaped
output) of a ReLU-like activation that is exactly zero on every one of its S >= 20
samples in the batch. Depth alone makes many of them at a correct init: a deep ReLU stack
aligns its inputs (the correlation of two inputs tends to 1 with depth), so a unit sees
nearly the same pre-activation sign on the whole batch, and a 50-layer He-initialized
MLP has a third of its last layers' units dead on the batch. What alignment cannot do
with zero-mean weights is kill more than half: each unit's sign is then a fair coin, and
the fraction of units on the dead side of U units is at most 1/2 + 4 sd = 1/2 + 2/sqrt(U)
(sd = 1/(2 sqrt(U))). A dead fraction above that (:func:`dead_bound`) is flagged: a
negative bias, a one-signed weight, a collapsed previous layer.
The pass changes nothing: the model runs in eval mode except its batch norms, which
run in training mode (batch statistics, as training sees them at step 0) with their
running statistics restored afterwards; gradients are computed into fresh ``.grad``
fields and the previous ones put back; torch's global RNG state is untouched.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import math
import re
from typing import Any, Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from fastinit import provenance
from fastinit.findings import Finding

__all__ = ["propagate", "Propagation", "ModuleRow", "ParamRow", "Series", "depth_trend",
           "stream_trend", "infer_inputs", "dead_bound", "DEPTH_FACTOR", "DEPTH_Z", "MIN_DEPTH",
           "WIDTH_PER_LAYER"]

#: A series is flagged when its fitted std changes by more than this factor across depth.
DEPTH_FACTOR = 4.0
#: ... and its fitted slope of ln(std) is this many standard errors away from zero.
DEPTH_Z = 3.0
#: Series shorter than this are not judged (no trend can be told from noise).
MIN_DEPTH = 4
#: A layer series is judged only when its width is at least this many times its length.
WIDTH_PER_LAYER = 7
#: Samples per unit below which dead units are not judged (2^-20 ~ 1e-6 by chance).
DEAD_MIN_SAMPLES = 20

#: Inputs made when none are given.
TOKEN_BATCH, TOKEN_LENGTH = 2, 64
IMAGE_BATCH, IMAGE_SIZE = 8, 64
VECTOR_BATCH = 256
AUDIO_SAMPLES = 4000

_LEAKY = {"LeakyReLU", "PReLU", "RReLU"}
_INT_PART = re.compile(r"(?<![^.])\d+(?![^.])")


def _relu_like(m: nn.Module) -> bool:
    name = type(m).__name__
    return isinstance(m, (nn.ReLU, nn.ReLU6)) or (name.endswith("ReLU") and name not in _LEAKY)


def _pattern(name: str) -> str:
    """``layers.3.mlp.up`` -> ``layers.*.mlp.up``: the name without its layer indices."""
    return _INT_PART.sub("*", name)


# --- records ------------------------------------------------------------------------------


class _Row:
    """What the row records share: ``as_dict``, with the ``shape`` tuple as a list."""

    def as_dict(self) -> dict:
        """The row as plain JSON-serializable data."""
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclasses.dataclass
class ModuleRow(_Row):
    """One call of one module in the forward pass.

    Attributes:
        name: the module's qualified name (``""``: the model itself)
        kind: its class name
        call: 0 for the module's first call in the pass, 1 for the second, ...
        order: position in execution order (by the call's end)
        shape: the output's shape (of its first floating-point tensor)
        mean, std: of the output (float32 arithmetic, population std)
        grad_std: std of the loss gradient at the output (None: no gradient reached it)
        zero_fraction: fraction of exact zeros in the output (ReLU-like activations only)
        dead_fraction: fraction of units zero on every sample (ReLU-like only; None when
            a unit has fewer than 20 samples)
        nonfinite: the output has a NaN or an infinity
        grad_nonfinite: its gradient has a NaN or an infinity
        units: the number of units the dead fraction is over (ReLU-like only)
    """

    name: str
    kind: str
    call: int
    order: int
    shape: tuple
    mean: float
    std: float
    grad_std: Optional[float] = None
    zero_fraction: Optional[float] = None
    dead_fraction: Optional[float] = None
    nonfinite: bool = False
    grad_nonfinite: bool = False
    units: int = 0

    @property
    def label(self) -> str:
        """The name as shown (``(model)`` for the root, ``#2`` for a second call)."""
        base = self.name or "(model)"
        return base if self.call == 0 else f"{base}#{self.call + 1}"


@dataclasses.dataclass
class ParamRow(_Row):
    """One parameter: its values and its gradient after the backward pass."""

    name: str
    shape: tuple
    mean: float
    std: float
    grad_std: Optional[float] = None
    nonfinite: bool = False
    grad_nonfinite: bool = False


@dataclasses.dataclass
class Series:
    """Stds along depth, and the fitted trend that judges them (see :func:`depth_trend`).

    Attributes:
        kind: ``"activation"``, ``"activation-grad"``, ``"param-grad"``, ``"residual"``
            (the stream: the first block's input, then each block's output) or
            ``"residual-grad"`` (the gradient at each block's output)
        key: what the members share (a name pattern and class, or the stack's name)
        names: the members, first to last
        stds: their stds (same order)
        change: the fitted change of ln(std) from the first to the last member
        slope, se: the fitted slope of ln(std) per position and its standard error
        flagged: whether the trend crosses the depth rule
        judged: False for the layers of the branches inside a residual stack (the stream
            carries the signal there) and for series narrower than 7 times their length:
            shown, not judged
    """

    kind: str
    key: str
    names: list
    stds: list
    change: float
    slope: float
    se: float
    flagged: bool
    judged: bool = True

    @property
    def ratio(self) -> float:
        """exp(change): the fitted last-to-first std ratio."""
        return math.exp(self.change) if self.change < 700 else math.inf

    def as_dict(self) -> dict:
        """The series as plain JSON-serializable data."""
        d = dataclasses.asdict(self)
        d["ratio"] = self.ratio
        return d


@dataclasses.dataclass
class Propagation:
    """What :func:`propagate` measured.

    Attributes:
        modules: one :class:`ModuleRow` per module call, in execution order
        params: one :class:`ParamRow` per parameter, in registration order
        series: the depth series judged by the depth rule
        findings: what was flagged, most serious first
        inputs: how the inputs were made (or ``"given"``)
        loss: how the backward pass was seeded
    """

    modules: list
    params: list
    series: list
    findings: list
    inputs: str
    loss: str

    def as_dict(self) -> dict:
        """Everything as plain JSON-serializable data."""
        return {"inputs": self.inputs, "loss": self.loss,
                "findings": [f.as_dict() for f in self.findings],
                "series": [s.as_dict() for s in self.series],
                "modules": [r.as_dict() for r in self.modules],
                "params": [p.as_dict() for p in self.params]}


# --- the depth rule ------------------------------------------------------------------------


def depth_trend(stds: Sequence[float]) -> tuple[float, float, float, bool]:
    """The depth rule on one series of stds (first to last layer).

    Fits ln(std) = a + b l by least squares over l = 0 .. n-1 and returns
    ``(change, slope, se, flagged)``: ``change = b (n - 1)``, the slope ``b`` and its
    standard error, and whether ``|change| > ln(DEPTH_FACTOR)`` and
    ``|b| > DEPTH_Z * se``. Series shorter than :data:`MIN_DEPTH` are never flagged.
    A zero std counts as the smallest positive float32 (a signal that vanished entirely);
    a non-finite one makes the series unjudged (NaN/inf are flagged on their own).
    """
    n = len(stds)
    if n < 2 or any(not math.isfinite(s) for s in stds):
        return 0.0, 0.0, math.inf, False
    tiny = float(torch.finfo(torch.float32).tiny)
    y = [math.log(max(float(s), tiny)) for s in stds]
    xm = (n - 1) / 2
    sxx = sum((i - xm) ** 2 for i in range(n))
    ym = sum(y) / n
    b = sum((i - xm) * (v - ym) for i, v in enumerate(y)) / sxx
    change = b * (n - 1)
    if n < 3:
        return change, b, math.inf, False
    resid = sum((v - ym - b * (i - xm)) ** 2 for i, v in enumerate(y))
    se = math.sqrt(resid / (n - 2) / sxx)
    flagged = (n >= MIN_DEPTH and abs(change) > math.log(DEPTH_FACTOR)
               and abs(b) > DEPTH_Z * se)
    return change, b, se, flagged


def stream_trend(stds: Sequence[float]) -> tuple[float, float, float, bool]:
    """The depth rule on a residual stream (its input, then each block's output).

    A stream is a running sum: with uncorrelated branches its variance grows linearly from
    the variance at entry, Var(x_l) = Var(x_0) + l v, and concentrates (no random walk).
    So ``v`` is fitted by least squares with Var(x_0) as measured (a line through the
    entry point over l = 0 .. n-1), and ``change`` is half the log of the fitted
    last-to-entry variance ratio, ln sqrt(1 + (n-1) v / Var(x_0)) (a std ratio), judged
    by the same bound as :func:`depth_trend`: ``|change| > ln(DEPTH_FACTOR)`` and
    ``|v| > DEPTH_Z * se``. Returns ``(change, v, se, flagged)`` with ``v`` and its
    standard error in variance per block.
    """
    n = len(stds)
    if n < 3 or any(not math.isfinite(s) for s in stds) or not stds[0] > 0:
        return 0.0, 0.0, math.inf, False
    y = [float(s) ** 2 for s in stds]
    sxx = sum(i * i for i in range(1, n))
    v = sum(i * (y[i] - y[0]) for i in range(1, n)) / sxx
    last = y[0] + v * (n - 1)
    if last <= 0:
        return -math.inf, v, 0.0, n >= MIN_DEPTH
    change = 0.5 * math.log(last / y[0])
    resid = sum((y[i] - y[0] - v * i) ** 2 for i in range(1, n))
    se = math.sqrt(resid / (n - 2) / sxx)
    flagged = (n >= MIN_DEPTH and abs(change) > math.log(DEPTH_FACTOR)
               and abs(v) > DEPTH_Z * se)
    return change, v, se, flagged


def _width(shape: Sequence[int], kind: str) -> int:
    """Features per sample of an output (channels of an image-shaped one), or the smaller
    fan of a weight."""
    if kind == "param-grad":
        return min(shape[0], shape[1] * math.prod(shape[2:]))
    if len(shape) >= 4:
        return int(shape[1])
    return int(shape[-1]) if shape else 1


def _series(kind: str, key: str, names: list, stds: list,
            width: Optional[int] = None) -> Series:
    trend = stream_trend if kind == "residual" else depth_trend
    change, slope, se, flagged = trend(stds)
    judged = width is None or width >= WIDTH_PER_LAYER * len(stds)
    return Series(kind, key, list(names), [float(v) for v in stds], change, slope, se,
                  flagged and judged, judged)


# --- inputs --------------------------------------------------------------------------------


def _first_layer(model: nn.Module) -> Optional[nn.Module]:
    return next((m for m in model.modules()
                 if next(m.parameters(recurse=False), None) is not None), None)


def _model_device(model: nn.Module) -> torch.device:
    return next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))


def infer_inputs(model: nn.Module, *, seed: int = 0) -> tuple[tuple, dict, str]:
    """Random inputs of the right kind for ``model``: ``(args, kwargs, description)``.

    * a Hugging Face model, by its ``main_input_name``: ``input_ids`` (token ids uniform
      over ``vocab_size``, 2 x 64, at most half of ``max_position_embeddings`` long;
      encoder-decoders get a quarter of them as ``decoder_input_ids``), ``pixel_values``
      (N(0, 1) images, 8 of the config's ``image_size`` and ``num_channels``),
      ``input_values`` (N(0, 1) waveforms, 2 x 4000 samples);
    * a module whose first layer is an ``nn.Embedding``: token ids, uniform over the
      vocabulary, 2 x 64;
    * a module whose first layer is an ``nn.Conv2d``: N(0, 1) images, 8 x 64 x 64;
    * a module whose first layer is an ``nn.Linear``: N(0, 1) vectors of its
      ``in_features``, batch 256.

    Raises:
        TypeError: for any other model, asking for ``example_inputs``.
    """
    g = torch.Generator().manual_seed(seed)
    device = _model_device(model)
    cfg = getattr(model, "config", None)
    first = _first_layer(model)
    main = getattr(model, "main_input_name", None) if cfg is not None else None
    if main == "input_ids" and getattr(cfg, "vocab_size", None):
        # position tables bound the length (half of it leaves room for offsets: RoBERTa's)
        length = min(TOKEN_LENGTH, max(1, int(getattr(cfg, "max_position_embeddings", 0)
                                               or 2 * TOKEN_LENGTH) // 2))
        ids = torch.randint(0, int(cfg.vocab_size), (TOKEN_BATCH, length), generator=g)
        kwargs = {"input_ids": ids.to(device)}
        if getattr(cfg, "is_encoder_decoder", False):
            kwargs["decoder_input_ids"] = kwargs["input_ids"][:, : max(1, length // 4)]
        return (), kwargs, f"token ids {TOKEN_BATCH}x{length} uniform over {cfg.vocab_size}"
    if main == "pixel_values":
        size = getattr(cfg, "image_size", None) or IMAGE_SIZE
        size = size if isinstance(size, int) else int(size[0])
        channels = int(getattr(cfg, "num_channels", None) or 3)
        x = torch.randn(IMAGE_BATCH, channels, size, size, generator=g)
        return (), {"pixel_values": x.to(device)}, \
            f"N(0,1) images {IMAGE_BATCH}x{channels}x{size}x{size}"
    if main == "input_values":
        x = torch.randn(TOKEN_BATCH, AUDIO_SAMPLES, generator=g)
        return (), {"input_values": x.to(device)}, \
            f"N(0,1) waveforms {TOKEN_BATCH}x{AUDIO_SAMPLES}"
    if main == "input_ids":
        raise TypeError(f"cannot infer inputs for {type(model).__name__}: its config has no "
                        "vocab_size (a multi-modal model?); pass example_inputs= (a dict of "
                        "keyword arguments)")
    if main is not None:
        raise TypeError(f"cannot infer inputs for {type(model).__name__} (its main input is "
                        f"{main!r}; inputs are inferred for input_ids, pixel_values and "
                        "input_values); pass example_inputs= (a dict of keyword arguments)")
    if isinstance(first, nn.Embedding):
        ids = torch.randint(0, first.num_embeddings, (TOKEN_BATCH, TOKEN_LENGTH), generator=g)
        return (ids.to(device),), {}, \
            f"token ids {TOKEN_BATCH}x{TOKEN_LENGTH} uniform over {first.num_embeddings}"
    if isinstance(first, nn.Conv2d):
        x = torch.randn(IMAGE_BATCH, first.in_channels, IMAGE_SIZE, IMAGE_SIZE, generator=g)
        return (x.to(device, first.weight.dtype),), {}, \
            f"N(0,1) images {IMAGE_BATCH}x{first.in_channels}x{IMAGE_SIZE}x{IMAGE_SIZE}"
    if isinstance(first, nn.Linear):
        x = torch.randn(VECTOR_BATCH, first.in_features, generator=g)
        return (x.to(device, first.weight.dtype),), {}, \
            f"N(0,1) vectors {VECTOR_BATCH}x{first.in_features}"
    what = f"its first layer is {type(first).__name__}" if first is not None else \
        "it has no parameters"
    raise TypeError(f"cannot infer inputs for {type(model).__name__} ({what}; inputs are "
                    "inferred for language models, models starting with nn.Embedding, "
                    "nn.Conv2d or nn.Linear); pass example_inputs= (a tensor, a tuple of "
                    "arguments or a dict of keyword arguments)")


def _as_call(example_inputs: Any) -> tuple[tuple, dict]:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    raise TypeError("example_inputs must be a tensor, a tuple/list of arguments or a dict of "
                    f"keyword arguments, got {type(example_inputs).__name__}")


def _first_float(out: Any, prefer: Iterable[str] = ()) -> Optional[torch.Tensor]:
    """The first floating-point tensor of a module's output (preferred keys first)."""
    if isinstance(out, torch.Tensor):
        return out if out.is_floating_point() else None
    if isinstance(out, Mapping) or hasattr(out, "keys"):
        try:
            keys = list(out.keys())
        except Exception:  # noqa: BLE001 - not a mapping after all
            keys = []
        values = (out[k] for k in (*[p for p in prefer if p in keys], *keys))
    elif isinstance(out, (tuple, list)):
        values = out
    else:
        return None
    return next((t for t in map(_first_float, values) if t is not None), None)


# --- statistics ----------------------------------------------------------------------------


#: Tensors with more elements than this get their moments from an evenly strided sample of
#: this size (the std to about 0.1 %); finiteness and exact constancy are decided on all
#: elements.
STATS_SAMPLE = 1 << 22


def _stats(t: torch.Tensor) -> tuple[float, float, bool]:
    x = t.detach()
    if x.numel() == 0:
        return math.nan, math.nan, False
    if x.numel() == 1:
        v = float(x.reshape(()).float())
        return v, 0.0, not math.isfinite(v)
    flat = x.reshape(-1)
    sample = flat[::-(-flat.numel() // STATS_SAMPLE)] if flat.numel() > STATS_SAMPLE else flat
    std, mean = torch.std_mean(sample.float(), correction=0)
    mean, std = float(mean), float(std)
    if sample is not flat:
        # NaN and inf reach the sum from anywhere in the tensor (one fast pass)
        finite = math.isfinite(float(flat.sum(dtype=torch.float64)))
        if finite and std == 0.0:  # constant on the sample: decide on every element
            std = float(flat.float().std(correction=0))
        if not finite:
            mean = std = math.nan
    # A NaN or inf element makes both moments non-finite; only then is the (slower)
    # element-wise test needed, to tell it from float32 overflow of the sum of squares.
    bad = not (math.isfinite(mean) and math.isfinite(std)) and not bool(torch.isfinite(x).all())
    return mean, std, bad


def dead_bound(units: int) -> float:
    """The dead-unit fraction above which a ReLU-like layer of ``units`` units is flagged:
    1/2 + 2/sqrt(units) (see the module documentation)."""
    return 0.5 + 2.0 / math.sqrt(units)


def _dead(t: torch.Tensor) -> tuple[float, Optional[float], int]:
    x = t.detach()
    zero = float((x == 0).float().mean()) if x.numel() else 0.0
    if x.ndim < 2:
        return zero, None, 0
    dim = 1 if x.ndim >= 4 else x.ndim - 1
    units = x.shape[dim]
    samples = x.numel() // max(units, 1)
    if samples < DEAD_MIN_SAMPLES or units == 0:
        return zero, None, units
    alive = (x != 0).movedim(dim, 0).reshape(units, -1).any(dim=1)
    return zero, float((~alive).float().mean()), units


# --- the pass ------------------------------------------------------------------------------


def _stacks(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """Containers of >= MIN_DEPTH blocks of one class (blocks: modules with submodules)."""
    out = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)):
            continue
        kids = [(f"{name}.{k}" if name else k, c) for k, c in m.named_children()]
        blocks = [(n, c) for n, c in kids if next(c.children(), None) is not None]
        if len(blocks) >= MIN_DEPTH and len({type(c) for _, c in blocks}) == 1 \
                and len(blocks) == len(kids):
            out.append((name, blocks))
    return out


@contextlib.contextmanager
def _pass_mode(model: nn.Module):
    """Eval mode except batch norms (training mode, running statistics restored)."""
    modes = {m: m.training for m in model.modules()}
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: b.detach().clone() for k, b in m.named_buffers(recurse=False)} for m in norms]
    model.eval()
    for m in norms:
        m.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for m, bufs in zip(norms, saved):
                for k, v in bufs.items():
                    getattr(m, k).copy_(v)
        for m, mode in modes.items():
            m.training = mode


def propagate(model: nn.Module, example_inputs: Any = None, *, seed: int = 0) -> Propagation:
    """One forward and backward pass through ``model`` with every module watched.

    The backward pass starts from the loss ``sum(output * r)`` with ``r`` a fixed N(0, 1)
    tensor of the output's shape (seeded by ``seed``): the gradient at the output has
    unit variance and no preferred direction, so gradient stds read as the backward gain
    from the output to each layer. The output is the model's first floating-point tensor
    (``logits`` of a Hugging Face output first).

    Args:
        model: a real (not meta) module, float parameters
        example_inputs: a tensor, a tuple of positional arguments or a dict of keyword
            arguments; None: random inputs where they can be inferred (see
            :func:`infer_inputs`)
        seed: for the random inputs and the output projection ``r``

    Returns:
        a :class:`Propagation`: rows per module call and per parameter, the depth series
        and the findings (see the module documentation for the rules)

    Raises:
        TypeError: inputs cannot be inferred (pass ``example_inputs``), or bad inputs
        ValueError: the model has meta tensors (materialize it first) or its output has
            no floating-point tensor to differentiate
        RuntimeError: the forward pass failed (the message names the inputs used)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"propagate takes an nn.Module, got {type(model).__name__}")
    meta = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if meta:
        raise ValueError(f"{type(model).__name__} has meta tensors ({meta[0]}, ... "
                         f"{len(meta)} in all): materialize it first (fastinit.materialize)")
    if example_inputs is None:
        args, kwargs, described = infer_inputs(model, seed=seed)
    else:
        args, kwargs = _as_call(example_inputs)
        described = "given"

    names = {m: n for n, m in model.named_modules()}
    rows: list[ModuleRow] = []
    calls: dict[str, int] = {}
    stacks = _stacks(model)
    block_ids = {id(m) for _, blocks in stacks for _, m in blocks}
    stream_in: dict[str, tuple] = {}  # block name -> (std, shape) of its input
    handles = []

    def grad_hook(row: ModuleRow, g: torch.Tensor) -> None:
        _, row.grad_std, row.grad_nonfinite = _stats(g)

    def forward_hook(m: nn.Module, inputs, output) -> None:
        name = names[m]
        t = _first_float(output, prefer=("logits", "last_hidden_state"))
        if t is None:
            return
        mean, std, bad = _stats(t)
        call = calls.get(name, 0)
        calls[name] = call + 1
        row = ModuleRow(name, type(m).__name__, call, len(rows), tuple(t.shape), mean, std,
                        nonfinite=bad)
        if _relu_like(m):
            row.zero_fraction, row.dead_fraction, row.units = _dead(t)
        rows.append(row)
        if t.requires_grad:
            t.register_hook(functools.partial(grad_hook, row))

    def pre_hook(m: nn.Module, inputs, kwargs=None) -> None:
        name = names[m]
        t = _first_float(tuple(inputs) + tuple((kwargs or {}).values()))
        if t is not None and name not in stream_in:
            stream_in[name] = (_stats(t)[1], tuple(t.shape))

    for m in model.modules():
        handles.append(m.register_forward_hook(forward_hook))
        if id(m) in block_ids:
            handles.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))

    params = list(model.named_parameters())
    saved_grads = [p.grad for _, p in params]
    try:
        with _pass_mode(model), torch.enable_grad():
            for _, p in params:
                p.grad = None
            try:
                out = model(*args, **kwargs)
            except Exception as exc:
                raise RuntimeError(f"the forward pass of {type(model).__name__} failed on "
                                   f"the inputs ({described}): {type(exc).__name__}: {exc}; "
                                   "pass example_inputs=") from exc
            y = _first_float(out, prefer=("logits", "last_hidden_state"))
            if y is None:
                raise ValueError(f"the output of {type(model).__name__} has no floating-point "
                                 "tensor to differentiate")
            g = torch.Generator().manual_seed(seed + 1)
            r = torch.randn(y.shape, generator=g).to(y.device, y.dtype)
            if y.requires_grad:
                try:
                    (y * r).sum().backward()
                except RuntimeError as exc:
                    raise RuntimeError(f"the backward pass of {type(model).__name__} failed "
                                       f"(its forward in eval mode is not differentiable as "
                                       f"run): {exc}") from exc
            grads = {n: p.grad for n, p in params}
    finally:
        for h in handles:
            h.remove()
        for (_, p), old in zip(params, saved_grads):
            p.grad = old

    prows = []
    for n, p in params:
        mean, std, bad = _stats(p)
        row = ParamRow(n, tuple(p.shape), mean, std, nonfinite=bad)
        if grads[n] is not None:
            _, row.grad_std, row.grad_nonfinite = _stats(grads[n])
        prows.append(row)

    series = _all_series(rows, prows, stacks, stream_in)
    findings = _findings(model, rows, prows, series, stacks)
    return Propagation(rows, prows, series, findings, described,
                       "sum(output * r), r ~ N(0, 1) of the output's shape")


def _all_series(rows, prows, stacks, stream_in) -> list[Series]:
    series: list[Series] = []
    blocks_by_name = {n for _, blocks in stacks for n, _ in blocks}
    groups: dict[tuple, list[ModuleRow]] = {}
    for r in rows:
        if not r.name or r.name in blocks_by_name:
            continue
        # one series per per-sample shape: a stage that changes width or resolution is
        # another stack of layers, not a continuation of this one
        key = (_pattern(r.name), r.kind, r.call, r.shape[1:])
        if key[0] == r.name:  # no layer index: not part of a depth series
            continue
        groups.setdefault(key, []).append(r)
    shapes_of = collections.Counter(key[:3] for key in groups)
    for (pat, kind, call, shape), members in groups.items():
        if len(members) < MIN_DEPTH:
            continue
        key = f"{pat} ({kind})" + (f" call {call + 1}" if call else "")
        if shapes_of[(pat, kind, call)] > 1:
            key += f" {'x'.join(map(str, shape))}"
        width = _width(shape and (0, *shape), "activation")
        series.append(_series("activation", key, [m.label for m in members],
                              [m.std for m in members], width))
        if all(m.grad_std is not None for m in members):
            series.append(_series("activation-grad", key, [m.label for m in members],
                                  [m.grad_std for m in members], width))
    pgroups: dict[tuple, list[ParamRow]] = {}
    for p in prows:
        pat = _pattern(p.name)
        # Weights only: a bias's or a norm's gradient is a sum over the batch of the
        # output's gradient, set by its mean across samples, not by the variance argument.
        if pat != p.name and p.grad_std is not None and len(p.shape) >= 2:
            pgroups.setdefault((pat, p.shape), []).append(p)
    pshapes = collections.Counter(pat for pat, _ in pgroups)
    for (pat, shape), members in pgroups.items():
        if len(members) >= MIN_DEPTH:
            key = pat if pshapes[pat] == 1 else f"{pat} {'x'.join(map(str, shape))}"
            series.append(_series("param-grad", key, [m.name for m in members],
                                  [m.grad_std for m in members], _width(shape, "param-grad")))
    by_name = {r.name: r for r in reversed(rows)}  # a module's first call
    streams: list[str] = []
    for stack, blocks in stacks:
        first = blocks[0][0]
        outs = [by_name.get(n) for n, _ in blocks]
        if first not in stream_in or any(o is None for o in outs):
            continue
        std0, shape0 = stream_in[first]
        if any(o.shape != shape0 for o in outs):  # not a stream: the blocks change shape
            continue
        series.append(_series("residual", stack or "(model)",
                              [f"{first} (input)"] + [n for n, _ in blocks],
                              [std0] + [o.std for o in outs]))
        if all(o.grad_std is not None for o in outs):
            series.append(_series("residual-grad", stack or "(model)", [n for n, _ in blocks],
                                  [o.grad_std for o in outs]))
        streams.append(stack)
    # Inside a residual stack the stream carries the signal: the layers of the branches
    # are shown, not judged (a depth-scaled init shrinks them with depth by design).
    for s in series:
        if s.kind not in ("residual", "residual-grad") and any(
                all(n.startswith(st + ".") for n in s.names) if st else True
                for st in streams):
            s.flagged = s.judged = False
    return series


_RECORDED_CONSTANTS = ("constant", "zeros", "ones", "eye", "dirac")


def _provenance_of(model: nn.Module) -> Optional[dict]:
    """``fastinit.provenance.provenance(model)`` where the model was recorded; None
    otherwise."""
    try:
        return provenance.provenance(model)
    except (ValueError, RuntimeError, LookupError, TypeError, AttributeError):
        return None


def _findings(model, rows, prows, series, stacks) -> list[Finding]:
    found: list[Finding] = []
    bad = [r for r in rows if r.nonfinite]
    if bad:
        found.append(Finding(bad[0].name or "(model)", "nonfinite",
                             f"output has NaN or inf (first in execution order; {len(bad)} "
                             "module outputs in all)"))
    found += [Finding(p.name, "nonfinite", "parameter has NaN or inf values")
              for p in prows if p.nonfinite]
    gbad = [r for r in rows if r.grad_nonfinite]
    if gbad and not bad:
        found.append(Finding(gbad[-1].name or "(model)", "nonfinite",
                             f"gradient has NaN or inf ({len(gbad)} module outputs)"))
    for s in series:
        if not s.flagged:
            continue
        grow = s.change > 0
        what = {"activation": "activation std", "activation-grad": "gradient std at the output",
                "param-grad": "parameter gradient std", "residual": "residual-stream std",
                "residual-grad": "residual-stream gradient std"}[s.kind]
        base = s.kind if s.kind in ("activation", "residual") else "gradient"
        check = f"{base}-{'growth' if grow else 'shrink'}"
        if s.kind == "residual":
            hint = ("a scaled-residual init (std / sqrt(2 L) on each branch's output "
                    "projection, or the last norm of each block at zero) keeps it steady"
                    if grow else "the blocks shrink the stream they should add to")
        elif s.kind == "residual-grad":
            hint = ("the gradient reaching the first blocks differs from the last's: a "
                    "scaled-residual init (or zero-init of each block's last norm) keeps "
                    "it steady")
        else:
            hint = ("an init that keeps the variance steady (He for ReLU, Xavier for "
                    "tanh, 1/sqrt(fan_in) otherwise) holds it within a factor "
                    f"{DEPTH_FACTOR:g}")
        ratio = s.ratio
        shown = f"{ratio:.3g}x" if ratio >= 1e-3 else f"{ratio:.2e}x"
        fit = (f"fitted variance {s.slope:+.3g} +- {s.se:.2g} per block"
               if s.kind == "residual" else
               f"fitted slope {s.slope:+.3f} +- {s.se:.3f} per layer in ln std")
        found.append(Finding(
            s.key, check,
            f"{what} {'grows' if grow else 'shrinks'} {shown} over {len(s.names)} layers "
            f"({s.names[0]} -> {s.names[-1]}; {fit}): {hint}",
            observed=ratio, expected=1.0))
    for r in rows:
        if r.dead_fraction is not None and r.dead_fraction > dead_bound(r.units):
            found.append(Finding(r.label, "dead-units",
                                 f"{r.dead_fraction:.1%} of its {r.units} units are zero on every "
                                 f"sample (zero-mean weights leave at most "
                                 f"{dead_bound(r.units):.1%} dead): a negative bias or a "
                                 "collapsed input?",
                                 observed=r.dead_fraction, expected=dead_bound(r.units)))
    zero_var = [p for p in prows if p.std == 0.0 and math.prod(p.shape) > 1]
    if zero_var:
        records = _provenance_of(model)
        if records is not None:
            for p in zero_var:
                writes = [w for w in records.get(p.name, ()) if not w.overwritten]
                law = writes[-1].law if writes else None
                # no record at all: nothing to hold the values against (not judged)
                if law is None or law in ("copy", "tie") or any(
                        c in law for c in _RECORDED_CONSTANTS):
                    continue
                found.append(Finding(p.name, "zero-variance",
                                     f"all {math.prod(p.shape)} values equal {p.mean:g}, but "
                                     f"its recorded law is {law}: written behind the init's "
                                     "back?",
                                     observed=0.0))
    order = {"nonfinite": 0, "zero-variance": 2, "dead-units": 3}
    found.sort(key=lambda f: order.get(f.check, 1))
    return found
