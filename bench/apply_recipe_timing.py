"""apply_recipe on a real model against materialize's fill, on the same model and device.

Run: ``python bench/apply_recipe_timing.py [--model 1b] [--recipe llama] [--rounds 3]``.

Builds the Llama-shaped model of ``fastinit.cli.models`` (``1b``: 1.50e9 parameters,
float32: 6.0 GB) on meta and materializes it on the CPU, timing the whole call and its
fill (the grouped write of every recorded fill, ``NameRouter.flush``); then re-initializes
the now-real model with ``apply_recipe`` and times it whole (planning, recording and the
grouped fill). ``materialize(..., recipe=...)`` is timed too. The target: apply_recipe
within 10% of materialize's fill time. Prints one JSON line per measurement and a summary.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time

import torch
from torch import nn

import fastinit
from fastinit import route
from fastinit.cli.models import LlamaShaped, get_config

_flushes: list[float] = []
_flush = route.NameRouter.flush


def _timed_flush(self) -> None:
    t0 = time.perf_counter()
    _flush(self)
    _flushes.append(time.perf_counter() - t0)


route.NameRouter.flush = _timed_flush


def _meta(cfg, dtype):
    with torch.device("meta"):
        return LlamaShaped(cfg, dtype=dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="1b")
    ap.add_argument("--recipe", default="llama")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cfg, dtype = get_config(args.model), getattr(torch, args.dtype)
    fastinit.materialize(_meta(get_config("tiny"), dtype), "cpu", seed=0, progress=False)  # JIT warm-up
    rows = []

    def record(what, seconds, fill):
        rows.append({"what": what, "seconds": round(seconds, 3), "fill_seconds": round(fill, 3)})
        print(json.dumps(rows[-1]), flush=True)

    def materialized(what: str, recipe) -> nn.Module:
        """Materialize a fresh meta model ``args.rounds`` times (the previous one freed
        first); returns the last."""
        model = None
        for _ in range(args.rounds):
            model = None
            gc.collect()
            meta = _meta(cfg, dtype)
            _flushes.clear()
            t0 = time.perf_counter()
            fastinit.materialize(meta, "cpu", seed=0, recipe=recipe, progress=False)
            record(what, time.perf_counter() - t0, _flushes[-1])
            model = meta
        return model

    model = materialized("materialize", None)
    for _ in range(args.rounds):
        _flushes.clear()
        t0 = time.perf_counter()
        fastinit.apply_recipe(model, args.recipe, seed=1, progress=False)
        record(f"apply_recipe {args.recipe}", time.perf_counter() - t0, _flushes[-1])
    model = None
    materialized(f"materialize recipe={args.recipe}", args.recipe)

    def med(what, key):
        return statistics.median(r[key] for r in rows if r["what"] == what)

    fill = med("materialize", "fill_seconds")
    apply = med(f"apply_recipe {args.recipe}", "seconds")
    print(json.dumps({
        "model": args.model, "params": cfg.num_parameters(), "dtype": args.dtype,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "materialize_s": med("materialize", "seconds"), "materialize_fill_s": fill,
        "apply_recipe_s": apply, "apply_recipe_fill_s": med(f"apply_recipe {args.recipe}", "fill_seconds"),
        "materialize_with_recipe_s": med(f"materialize recipe={args.recipe}", "seconds"),
        "apply_over_materialize_fill": round(apply / fill, 3),
        "within_10_percent": apply <= 1.10 * fill}))


if __name__ == "__main__":
    main()
