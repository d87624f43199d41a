"""Routing unmodified model code through fastinit.

Model code reaches weight initialization in three ways, and all three are covered:

* ``torch.nn.init.<fn>(...)`` looked up on the module at call time (torch's own layers,
  ``from torch.nn import init``): the module attributes are replaced for the duration;
* references bound at import time (``from torch.nn.init import xavier_uniform_`` inside
  ``torch.nn.modules.activation``, transformers' ``TORCH_INIT_FUNCTIONS`` table): those
  copies are replaced too, and the functions torch dispatches through
  ``__torch_function__`` (uniform_, normal_, constant_, kaiming_uniform_) are also caught by
  a ``TorchFunctionMode``;
* in-place tensor methods (``w.data.normal_()``, ``b.zero_()``, ``w.fill_(1)``): caught by
  the mode when ``methods=True`` (``materialize``), for the tensors a sink accepts.

The mode also keeps deferred execution exact: an operation that touches a tensor with a
pending (recorded, not yet written) fill flushes the recorder first.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from fastinit.deferred import Recorder
from fastinit.fill import fill_tensor, sink
from fastinit.spec import SUPPORTED_DTYPES, InitSpec

INIT_NAMES = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
              "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
              "kaiming_normal_", "orthogonal_", "sparse_")
#: torch's own functions, captured before anything can replace them.
ORIGINALS: dict[str, Callable] = {n: getattr(torch.nn.init, n) for n in INIT_NAMES}
_ORIGINAL_TO_NAME = {fn: n for n, fn in ORIGINALS.items()}

#: Modules known to hold references to torch.nn.init functions (the same list transformers
#: patches in its own initialization guards).
PATCHED_MODULES = (
    "torch.nn.init", "torch.nn.modules.activation", "torch.nn.modules.transformer",
    "torch.nn.modules.linear", "torch.nn.modules.loss", "torch.nn.modules.batchnorm",
    "torch.nn.modules.conv", "torch.nn.modules.normalization", "torch.nn.modules.rnn",
    "torch.nn.modules.sparse",
)

# Tensor operations that neither read nor write element values.
_METADATA = {
    "untyped_storage", "data_ptr", "storage_offset", "stride", "size", "dim", "numel",
    "element_size", "is_contiguous", "nelement", "ndimension", "is_floating_point",
    "is_complex", "get_device", "__len__", "__hash__", "__get__", "view", "view_as",
    "unsqueeze", "squeeze", "t", "transpose", "permute", "select", "narrow", "as_strided",
    "expand", "detach", "requires_grad_", "_is_view", "is_set_to", "__format__",
}
_BASIC_INDEX = (int, slice, type(None), type(Ellipsis))


def _fastinit_fn(name: str) -> Callable | None:
    import fastinit

    return getattr(fastinit, name, None)


def _is_metadata(func, args) -> bool:
    name = getattr(func, "__name__", "")
    if name in _METADATA:
        return True
    if name == "__getitem__" and len(args) == 2:  # basic indexing makes a view
        idx = args[1] if isinstance(args[1], tuple) else (args[1],)
        return all(isinstance(i, _BASIC_INDEX) for i in idx)
    return False


def _method_fill(name: str, args, kwargs) -> tuple[torch.Tensor, InitSpec] | None:
    """The fill a tensor method call asks for, or None if it is not a plain fill."""
    target = args[0]
    if name == "normal_":
        mean = args[1] if len(args) > 1 else kwargs.get("mean", 0.0)
        std = args[2] if len(args) > 2 else kwargs.get("std", 1.0)
        return target, InitSpec.normal(mean, std)
    if name == "uniform_":
        a = args[1] if len(args) > 1 else kwargs.get("from", 0.0)
        b = args[2] if len(args) > 2 else kwargs.get("to", 1.0)
        return target, InitSpec.uniform(a, b)
    if name == "zero_":
        return target, InitSpec.constant(0.0)
    if name == "fill_":
        value = args[1] if len(args) > 1 else kwargs.get("value")
        if isinstance(value, torch.Tensor):
            return None
        return target, InitSpec.constant(value)
    return None


_METHODS = {torch.Tensor.normal_: "normal_", torch.Tensor.uniform_: "uniform_",
            torch.Tensor.zero_: "zero_", torch.Tensor.fill_: "fill_"}


class InitMode(TorchFunctionMode):
    """Sends initialization calls to fastinit and keeps a recorder's pending fills exact.

    ``accepts(tensor)`` decides which tensors' tensor-method fills are taken over; with
    ``methods=False`` only ``torch.nn.init`` functions are.
    """

    def __init__(self, recorder: Recorder | None = None, methods: bool = False,
                 accepts: Callable[[torch.Tensor], bool] = lambda t: True,
                 on_write: Callable[[torch.Tensor], None] | None = None) -> None:
        super().__init__()
        self.recorder = recorder
        self.methods = methods
        self.accepts = accepts
        self.on_write = on_write

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _ORIGINAL_TO_NAME.get(func)
        if name is not None:
            replacement = _fastinit_fn(name)
            if replacement is not None:
                return replacement(*args, **kwargs)
        method = _METHODS.get(func) if self.methods else None
        if method is not None and args and isinstance(args[0], torch.Tensor):
            target = args[0]
            if target.dtype in SUPPORTED_DTYPES and self.accepts(target):
                fill = _method_fill(method, args, kwargs)
                if fill is not None:
                    t, spec = fill
                    fill_tensor(t, spec.kernel_params(t.dtype), 0, 0)
                    return t
        if _is_metadata(func, args):
            return func(*args, **kwargs)
        if self.recorder is not None and len(self.recorder):
            tensors = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
            if self.recorder.touches(tensors):
                self.recorder.flush()
        out = func(*args, **kwargs)
        if self.on_write is not None:
            fname = getattr(func, "__name__", "")
            target = args[0] if args else kwargs.get("tensor", kwargs.get("input"))
            if fname.endswith("_") and not fname.startswith("__") and isinstance(
                    target, torch.Tensor):
                self.on_write(target)
            elif isinstance(kwargs.get("out"), torch.Tensor):
                self.on_write(kwargs["out"])
        return out


@contextlib.contextmanager
def patched_init_functions() -> Iterator[None]:
    """Replace torch.nn.init functions by fastinit's wherever torch and transformers hold them."""
    saved: list[tuple[object, str, object]] = []
    try:
        for modname in PATCHED_MODULES:
            mod = sys.modules.get(modname)
            if mod is None:
                continue
            for name in INIT_NAMES:
                new = _fastinit_fn(name)
                if new is not None and getattr(mod, name, None) is ORIGINALS[name]:
                    saved.append((mod, name, ORIGINALS[name]))
                    setattr(mod, name, new)
        hf = sys.modules.get("transformers.initialization")
        table = getattr(hf, "TORCH_INIT_FUNCTIONS", None)
        if isinstance(table, dict):
            for name in INIT_NAMES:
                new = _fastinit_fn(name)
                if new is not None and table.get(name) is ORIGINALS[name]:
                    saved.append((table, name, ORIGINALS[name]))
                    table[name] = new
        yield
    finally:
        for holder, name, original in reversed(saved):
            if isinstance(holder, dict):
                holder[name] = original
            else:
                setattr(holder, name, original)


class _RecordAll:
    """A sink that defers every fill with the key and stream it was given."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def write(self, tensor, params, key, stream, draw_round) -> bool:
        if tensor.device.type == "meta" or tensor.numel() == 0:
            return True
        self.recorder.add(tensor, tensor, params, key, stream, draw_round)
        return True

    def key_for(self, tensor):
        return None  # keys are drawn as without deferral


@contextlib.contextmanager
def patch(deferred: bool = False) -> Iterator[None]:
    """Route ``torch.nn.init`` through fastinit inside the block, for unmodified code.

    Every ``torch.nn.init`` function - including the calls torch's own layers make in
    their default ``reset_parameters`` - runs as the fastinit function of the same name,
    drawing its seed from the same generator, so the values are those of calling fastinit
    directly.

    Args:
        deferred: record the fills instead of running them, and write them all on exit in
            grouped launches (one per dtype on a GPU). Values are identical to
            ``deferred=False``: each call's seed is drawn when the call is made, and any
            operation that reads or writes a tensor with a pending fill runs after the fill.

    Examples:
        >>> with fastinit.patch():
        ...     model = torch.nn.Linear(1024, 1024)  # reset_parameters() runs on fastinit
        >>> with fastinit.patch(deferred=True), torch.device("cuda"):
        ...     model = build_model()  # all of its init in a few grouped launches
    """
    recorder = Recorder() if deferred else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched_init_functions())
        if recorder is not None:
            stack.enter_context(sink(_RecordAll(recorder)))
        stack.enter_context(InitMode(recorder=recorder))
        yield
    # only reached without an exception: a failed block writes nothing it deferred
    if recorder is not None:
        recorder.flush()
