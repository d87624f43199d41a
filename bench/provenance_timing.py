"""What recording provenance costs: ``materialize`` with and without ``fastinit.provenance``.

Run: ``python bench/provenance_timing.py [--model 1b] [--dtype bfloat16] [--reps 5]``.

Provenance is recorded by every ``materialize`` (a frame walk and a tuple per write; the
names, regions and overwrites are worked out when the materialize ends). This times, in
one process and alternating, ``materialize`` as it runs (recording) and with the
recording switched off (the session replaced by a no-op, and ``empty_init``'s record of
each write's site skipped: what materialize cost before provenance existed), on

* the Llama-shaped model of ``fastinit.cli.models`` (``1b``: 1.50e9 parameters) built on
  meta, and transformers' ``LlamaForCausalLM`` of that shape built under
  ``fastinit.empty_init()`` (the replay path; its build is timed too, since the build
  records each write's site);
* 3,000 tiny parameters (1,500 ``Linear(4, 4)``): the per-tensor host cost.

Prints the median of ``--reps`` runs of each (after one warm-up of each) and the ratio.
The target: recording within 5% of the time without it.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import platform
import statistics
import time

import torch
from torch import nn

import fastinit
from fastinit import provenance, sessions
from fastinit.cli.models import LlamaShaped, get_config, hf_config

_SESSION = provenance.session
_SITE = provenance.site


@contextlib.contextmanager
def _no_session(module=None):
    yield None


def _recording(on: bool) -> None:
    # materialize and fastinit.construction call them through the module
    provenance.session = _SESSION if on else _no_session
    provenance.site = _SITE if on else (lambda fn=None: None)


_IN_HOOKS = [0.0]
_HOOKS = ("note", "note_op", "note_factory", "note_unmatched", "site", "replaying", "_attach")


def _timed_hooks() -> None:
    """Add the time spent inside the recording's functions to ``_IN_HOOKS``. Their callers
    look them up at every call: materialize and fastinit.construction on
    ``fastinit.provenance``, the recording itself (a session's ``note``, ``_attach``) on
    ``fastinit.sessions``, where they are defined; both get the timed function."""
    for name in _HOOKS:
        original = getattr(sessions, name)

        def timed(*args, _original=original, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                _IN_HOOKS[0] += time.perf_counter() - start

        setattr(sessions, name, timed)
        if hasattr(provenance, name):
            setattr(provenance, name, timed)


def _time(build, on: bool, empty: bool) -> float:
    _recording(on)
    try:
        start = time.perf_counter()
        with fastinit.empty_init() if empty else torch.device("meta"):
            model = build()
        built = time.perf_counter()
        fastinit.materialize(model, "cpu", seed=0, progress=False)
        end = time.perf_counter()
    finally:
        _recording(True)
    if on:
        assert provenance.provenance(model)  # it did record
    del model
    gc.collect()
    return (end - start) if empty else (end - built)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="1b")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tiny-reps", type=int, default=9)
    parser.add_argument("--no-hf", action="store_true")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    cfg = get_config(args.model)
    cases = [(f"LlamaShaped {args.model} {args.dtype}, meta + materialize",
              lambda: LlamaShaped(cfg, dtype=dtype), False, args.reps)]
    if not args.no_hf:
        from transformers import LlamaForCausalLM

        hf = hf_config(cfg)

        def build_hf():
            default = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                return LlamaForCausalLM(hf)
            finally:
                torch.set_default_dtype(default)

        cases.append((f"LlamaForCausalLM {args.model} {args.dtype}, empty_init build + "
                      "materialize", build_hf, True, args.reps))
    cases.append(("3,000 tiny parameters (1,500 Linear(4, 4)), meta + materialize",
                  lambda: nn.Sequential(*[nn.Linear(4, 4) for _ in range(1500)]), False,
                  args.tiny_reps))
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for label, build, empty, reps in cases:
        times = {True: [], False: []}
        for on in (True, False):  # warm-up
            _time(build, on, empty)
        for _ in range(reps):
            for on in (False, True):
                times[on].append(_time(build, on, empty))
        off, on = statistics.median(times[False]), statistics.median(times[True])
        print(f"{label}: without {off:.3f} s, with provenance {on:.3f} s, "
              f"ratio {on / off:.3f} ({(on / off - 1) * 100:+.1f}%), median of {reps}")
    # the recording's own time, measured inside its functions (independent of the noise
    # of a shared machine, which the medians above are not)
    global _SESSION, _SITE
    _timed_hooks()
    _SESSION, _SITE = provenance.session, provenance.site
    for label, build, empty, _ in cases:
        _IN_HOOKS[0] = 0.0
        total = _time(build, True, empty)
        print(f"{label}: {_IN_HOOKS[0] * 1e3:.1f} ms inside the recording of a "
              f"{total:.3f} s run ({_IN_HOOKS[0] / total * 100:.2f}%)")


if __name__ == "__main__":
    main()
