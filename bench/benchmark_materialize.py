"""Building a Llama-shaped model: torch's ways against meta + fastinit.materialize.

Run: ``pytest bench/benchmark_materialize.py --benchmark-only``. One group per model; its
members are the methods of ``fastinit bench``'s model section
(:data:`fastinit.cli.bench.MODEL_METHODS`): normal construction (torch's default init in
``reset_parameters``), meta + ``to_empty`` + ``reset_parameters`` (the FSDP2 recipe), meta
+ ``materialize``, and, with transformers installed, ``LlamaForCausalLM`` built normally
and materialized from meta. ``extra_info`` has the parameter count and bytes, GB/s
(parameter bytes / median time) and the peak memory above the start as a multiple of the
parameter bytes (one extra, untimed build).

Environment:

* ``FASTINIT_BENCH_MODEL``: a name from :data:`fastinit.cli.models.CONFIGS` (default
  ``tiny``; ``125m`` on a CPU, ``1b`` / ``8b`` on a GPU for real numbers);
* ``FASTINIT_BENCH_MODEL_DTYPE``: default ``float32``;
* ``FASTINIT_BENCH_DEVICE``: ``cpu`` or ``cuda`` (default: CUDA when available);
* ``FASTINIT_BENCH_ROUNDS``: timed builds per method (default 3).
"""
from __future__ import annotations

import gc
import os

import pytest

from fastinit.cli.bench import MODEL_METHODS, has_transformers
from fastinit.cli.parser import parse_dtype
from fastinit.cli.rendering import dtype_name
from fastinit.cli.timing import DeviceTimer, machine_info, resolve_device
from fastinit.cli.models import get_config, parameter_bytes

MODEL = os.environ.get("FASTINIT_BENCH_MODEL", "tiny")
DTYPE = parse_dtype(os.environ.get("FASTINIT_BENCH_MODEL_DTYPE", "float32"))
DEVICE = resolve_device(os.environ.get("FASTINIT_BENCH_DEVICE"))
ROUNDS = int(os.environ.get("FASTINIT_BENCH_ROUNDS", "3"))
TIMER = DeviceTimer(DEVICE)
HF = has_transformers()


@pytest.mark.parametrize("method", [
    pytest.param(key, marks=pytest.mark.skipif(hf and not HF, reason="needs transformers"))
    for key, _, _, hf in MODEL_METHODS])
def test_build(benchmark, method):
    key, label, build, _ = next(m for m in MODEL_METHODS if m[0] == method)
    cfg = get_config(MODEL)
    nbytes = parameter_bytes(cfg, DTYPE)
    build(get_config("tiny"), DEVICE, DTYPE)  # warm-up: JIT loading, lazy imports

    def run():
        model = build(cfg, DEVICE, DTYPE)
        TIMER.sync()
        return model

    def setup():
        gc.collect()  # free the previous round's model outside the timed region
        return (), {}

    benchmark.group = f"{MODEL} {dtype_name(DTYPE)} {DEVICE.type}"
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    gc.collect()
    with TIMER.peak_memory() as peak:
        model = build(cfg, DEVICE, DTYPE)
        del model
    benchmark.extra_info.update({
        "label": label, "params": cfg.num_parameters(), "bytes": nbytes,
        "dtype": dtype_name(DTYPE), "device": str(DEVICE),
        "device_name": machine_info(DEVICE)["device_name"],
        "peak_x_params": None if peak["bytes"] is None else peak["bytes"] / nbytes,
    })
    if benchmark.stats:  # None under --benchmark-disable (the build ran once, untimed)
        benchmark.extra_info["GB/s"] = nbytes / benchmark.stats.stats.median / 1e9
