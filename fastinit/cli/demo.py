"""``fastinit demo``: a Llama-shaped model built on meta and materialized, against torch.

Prints the model's size, torch's construction time, ``materialize``'s time and throughput,
the speed-up, and a determinism fingerprint (sha256 of the weights) checked against a
second ``materialize`` with the same seed. Exit status 1 if the two differ.
"""
from __future__ import annotations

import argparse
import gc
from collections.abc import Sequence

import torch

import fastinit
from fastinit.cli.parser import (
    DTYPE_CHOICES, CommandError, device_arguments, dtype_or_auto, Formatter, model_name,
    paragraphs, setup_device)
from fastinit.cli.rendering import device_text, dtype_name, format_bytes

__all__ = ["run"]


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``fastinit demo`` with parsed ``args``."""
    from fastinit.cli.models import LlamaShaped, fingerprint, get_config, parameter_bytes
    from fastinit.cli.timing import DeviceTimer, machine_info
    from fastinit.materialize import materialize

    device = setup_device(args)
    dtype = args.dtype if args.dtype != "auto" else (
        torch.bfloat16 if device.type == "cuda" else torch.float32)
    cfg = get_config(args.model)
    nbytes = parameter_bytes(cfg, dtype)
    timer = DeviceTimer(device)
    free = timer.memory_available()
    if free is not None and 1.2 * nbytes > free:
        raise CommandError(f"--model {cfg.name}: {format_bytes(nbytes)} of {dtype_name(dtype)} "
                           f"parameters do not fit in the {format_bytes(free)} free on "
                           f"{device}; choose a smaller --model or --dtype")
    machine = machine_info(device)
    print(f"fastinit {fastinit.__version__} demo: a Llama-shaped model, built on meta and "
          "materialized in one pass")
    print(f"  device        {device_text(machine)}; torch {machine['torch']}")
    print(f"  model         {cfg.name}: hidden {cfg.hidden}, {cfg.layers} layers, {cfg.heads} "
          f"heads ({cfg.kv_heads} KV), intermediate {cfg.intermediate}, vocab {cfg.vocab}")
    print(f"  parameters    {cfg.num_parameters():,} = {format_bytes(nbytes)} of "
          f"{dtype_name(dtype)}")

    def build_materialized() -> torch.nn.Module:
        model = LlamaShaped(cfg, device="meta", dtype=dtype)
        # progress: a bar on stderr if a big model takes more than two seconds on a CPU
        return materialize(model, device, seed=args.seed, progress=True)

    # One-time costs (loading the JIT-compiled CPU kernels, compiling the GPU ones, lazy
    # imports, the allocator's first pages) are paid on a tiny model, for both sides.
    # The first is torch's own: the first random op on a meta tensor imports torch._dynamo
    # (about a second on a small CPU), which every plain meta build pays, fastinit or not.
    tiny: list = []
    warm_meta = timer.wall(lambda: tiny.append(LlamaShaped("tiny", device="meta", dtype=dtype)))
    warm_fill = timer.wall(lambda: (materialize(tiny.pop(), device, seed=args.seed, progress=False),
                                    LlamaShaped("tiny", device=device, dtype=dtype)))
    print(f"  warm-up       {warm_meta + warm_fill:.2f} s, one-time, not counted below "
          f"(torch's first meta build {warm_meta:.2f} s; kernel loading and first fills "
          f"{warm_fill:.2f} s)")

    t_torch = None
    if not args.no_baseline:
        t_torch = timer.wall(lambda: LlamaShaped(cfg, device=device, dtype=dtype))
        gc.collect()
        print(f"  torch         LlamaShaped(cfg) on {device}: {t_torch:.3f} s "
              f"({nbytes / t_torch / 1e9:.2f} GB/s)  [torch's default init at construction]")

    holder: list = []
    t_mat = timer.wall(lambda: holder.append(build_materialized()))
    fp1 = fingerprint(holder.pop())
    gc.collect()
    print(f"  fastinit      meta + materialize: {t_mat:.3f} s ({nbytes / t_mat / 1e9:.2f} GB/s)")
    if t_torch is not None:
        print(f"  speed-up      {t_torch / t_mat:.2f}x over torch's own construction")
    print(f"  fingerprint   {fp1}  (sha256 of the state dict, seed {args.seed})")

    t_again = timer.wall(lambda: holder.append(build_materialized()))
    fp2 = fingerprint(holder.pop())
    same = fp1 == fp2
    print(f"  determinism   second materialize with seed {args.seed} ({t_again:.3f} s): "
          f"fingerprint {fp2} - {'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


# --- the command's arguments -----------------------------------------------------------


def add_parser(sub) -> argparse.ArgumentParser:
    """``fastinit demo``."""
    from fastinit.cli.models import CONFIGS

    d = sub.add_parser(
        "demo", formatter_class=Formatter,
        help="build a Llama-shaped model on meta and materialize it (vs torch's own init)",
        description=paragraphs(
            "Build a Llama-shaped model on the meta device, materialize it with fastinit on "
            "the best device available, and compare with building it normally in torch "
            "(torch's default init at construction). Prints the size, the times, the "
            "throughput, the speed-up and a determinism fingerprint (sha256 of the weights), "
            "checked against a second materialize with the same seed.",
            "Models: "
            + ", ".join(f"{k} ({v.num_parameters() / 1e6:,.0f}M)" for k, v in CONFIGS.items())
            + ". The default finishes in seconds on a laptop CPU; pass --model 1b or 8b for "
            "the real thing on a GPU."))
    d.set_defaults(command="demo")
    device_arguments(d)
    d.add_argument("--model", type=model_name, default="125m",
                   help=f"model shape, of: {', '.join(CONFIGS)}")
    d.add_argument("--dtype", type=dtype_or_auto, default="auto",
                   metavar="{auto,float32,bfloat16,float16,float64}",
                   help=f"parameter dtype, of: auto, {DTYPE_CHOICES} ('auto': bfloat16 on a "
                        "GPU, float32 on a CPU)")
    d.add_argument("--seed", type=int, default=0, help="materialize seed")
    d.add_argument("--no-baseline", action="store_true",
                   help="skip building the model with torch (saves time and memory)")
    return d
