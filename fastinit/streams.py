"""Which stream: seeds, generators and stream ids.

A value is a pure function of (seed, stream, global element index, distribution, dtype).
This module decides the first two:

* a call with ``seed=s`` uses key ``s`` and stream 0;
* a call without a seed draws a fresh 63-bit key from a torch generator: ``generator``
  if given, otherwise torch's default CPU generator - for tensors on every device, so
  ``torch.manual_seed(s)`` gives the same values on the CPU and on a GPU. Drawing
  advances the generator, so consecutive calls differ and a seeded sequence of calls
  is reproducible. No device synchronization is involved;
* :func:`stream_for_name` gives each parameter of a model its own stream from its
  qualified name, so values do not depend on the order in which modules are built.
"""
from __future__ import annotations

import hashlib
import threading

import torch

from fastinit.kernels import contract as C

_local = threading.local()
_MASK64 = (1 << 64) - 1


#: How many times ``torch.manual_seed`` has been called in this process (counted by the
#: watch ``fastinit.intercept`` puts on it; ``route``'s router compares it to tell whether
#: init code reseeded torch).
SEEDINGS = [0]


def _draw_buffer() -> torch.Tensor:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = torch.empty((), dtype=torch.int64, device="cpu")
    return buf


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def normalize_seed(seed: int) -> int:
    """A user seed as an unsigned 64-bit key (negative seeds wrap, as in torch)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        try:
            seed = int(seed.__index__())  # numpy and torch integers
        except (AttributeError, TypeError):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}") from None
    if not -(1 << 63) <= seed <= _MASK64:
        raise ValueError(f"seed must be in [-2**63, 2**64), got {seed}")
    return seed & _MASK64


def draw_seed(generator: torch.Generator | None = None) -> int:
    """Draw a call key from ``generator`` (default: torch's default CPU generator)."""
    if generator is None:
        generator = torch.default_generator
    if generator.device.type == "cpu":
        return int(_draw_buffer().random_(generator=generator).item())
    # Device generators (CUDA's Philox) keep (seed, offset) on the host: advance the
    # offset as torch's own kernels do, without touching the device.
    offset = generator.get_offset()
    generator.set_offset(offset + 4)
    return _splitmix64(generator.initial_seed() ^ _splitmix64(offset)) >> 1


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, not {type(generator).__name__}")


def check_rng(seed: int | None, generator: torch.Generator | None) -> None:
    """Validate a call's ``seed`` and ``generator`` without drawing anything."""
    _check_generator(generator)
    if seed is not None:
        normalize_seed(seed)


def call_key(seed: int | None, generator: torch.Generator | None) -> int:
    """The Philox key for one fill call (validates ``seed`` and ``generator`` first)."""
    _check_generator(generator)
    return draw_seed(generator) if seed is None else normalize_seed(seed)


def stream_for_name(name: str) -> int:
    """A 56-bit stream id from a parameter's qualified name (stable across runs)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8, person=b"fastinit").digest()
    return int.from_bytes(digest, "little") & C.MAX_STREAM
