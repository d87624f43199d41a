"""fastinit vs torch.nn.init on the CPU: host overhead and throughput, in one run.

Run::

    python -m pytest bench/benchmark_init.py --benchmark-only \
        --benchmark-group-by=group --benchmark-json=bench/init.json
    python bench/benchmark_init.py bench/init.json [more runs ...]  # table for RESULTS.md

* ``small``: every function on a 64x64 float32 tensor (dirac_: 64x64x1): the cost of one
  call is mostly host overhead (argument handling, key draw, dispatch), the fill itself
  being a few microseconds.
* ``large``: the common fills on a 4096x4096 float32 tensor (16.8 M elements, 64 MiB):
  throughput of the CPU backend against torch's CPU kernels, both on all of torch's
  threads.

Both implementations fill the same preallocated tensor; fastinit draws its key from the
global generator (no ``seed=``), as a drop-in call would.
"""
from __future__ import annotations

import json
import math
import statistics
import sys

import pytest
import torch

try:
    import fastinit
except ImportError:  # pragma: no cover - when run as a script from elsewhere
    fastinit = None

SMALL = (64, 64)
LARGE = (4096, 4096)

#: name, args, shape override for the small case (None: SMALL)
SMALL_CASES = [
    ("uniform_", (), None),
    ("normal_", (), None),
    ("trunc_normal_", (), None),
    ("constant_", (0.5,), None),
    ("zeros_", (), None),
    ("ones_", (), None),
    ("eye_", (), None),
    ("dirac_", (), (64, 64, 1)),
    ("xavier_uniform_", (), None),
    ("xavier_normal_", (), None),
    ("kaiming_uniform_", (), None),
    ("kaiming_normal_", (), None),
    ("orthogonal_", (), None),
    ("sparse_", (0.1,), None),
    ("scaled_residual_", (0.02, 12), None),
]
LARGE_CASES = [("uniform_", ()), ("normal_", ()), ("trunc_normal_", ()),
               ("kaiming_uniform_", ()), ("xavier_normal_", ()), ("zeros_", ())]


def _torch_fn(name):
    if name == "scaled_residual_":  # GPT-2 / Megatron: normal_ with std / sqrt(2 L)
        return lambda t, std, n: torch.nn.init.normal_(t, 0.0, std / math.sqrt(2.0 * n))
    return getattr(torch.nn.init, name)


def _impl(lib, name):
    return _torch_fn(name) if lib == "torch" else getattr(fastinit, name)


@pytest.mark.parametrize("lib", ["torch", "fastinit"])
@pytest.mark.parametrize("name,args,shape", SMALL_CASES, ids=[c[0] for c in SMALL_CASES])
def test_small(benchmark, lib, name, args, shape):
    t = torch.empty(shape or SMALL)
    fn = _impl(lib, name)
    fn(t, *args)  # warm-up (first-call compilation, caches)
    benchmark.group = f"small {name}"
    benchmark.extra_info.update(lib=lib, fn=name, kind="small", numel=t.numel())
    benchmark(fn, t, *args)


@pytest.mark.parametrize("lib", ["torch", "fastinit"])
@pytest.mark.parametrize("name,args", LARGE_CASES, ids=[c[0] for c in LARGE_CASES])
def test_large(benchmark, lib, name, args):
    t = torch.empty(LARGE)
    fn = _impl(lib, name)
    fn(t, *args)
    benchmark.group = f"large {name}"
    benchmark.extra_info.update(lib=lib, fn=name, kind="large", numel=t.numel())
    benchmark.pedantic(fn, args=(t, *args), rounds=7, iterations=1, warmup_rounds=1)


def summarize(*paths: str) -> str:
    """A markdown table from one or more ``--benchmark-json`` files.

    Each cell is the median over the files of each run's median (several runs resist
    the noise of a shared machine); the ratio is fastinit / torch of those medians.
    """
    runs: dict[tuple[str, str], dict[str, list[float]]] = {}
    numel: dict[tuple[str, str], int] = {}
    machine: dict = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        machine = data.get("machine_info", machine)
        for b in data["benchmarks"]:
            info = b["extra_info"]
            key = (info["kind"], info["fn"])
            runs.setdefault(key, {}).setdefault(info["lib"], []).append(b["stats"]["median"])
            numel[key] = info["numel"]
    out = ["| case | function | torch median | fastinit median | fastinit / torch |"
           " fastinit throughput |",
           "|---|---|---:|---:|---:|---:|"]
    for (kind, fn), r in sorted(runs.items(), key=lambda kv: (kv[0][0] != "small", kv[0])):
        if "torch" not in r or "fastinit" not in r:
            continue
        t, f = statistics.median(r["torch"]), statistics.median(r["fastinit"])
        unit, scale = ("µs", 1e6) if kind == "small" else ("ms", 1e3)
        thr = f"{numel[(kind, fn)] / f / 1e9:.2f} G/s" if kind == "large" else ""
        case = "64x64" if kind == "small" else "4096x4096"
        out.append(f"| {case} | {fn} | {t * scale:.1f} {unit} | {f * scale:.1f} {unit} | "
                   f"{f / t:.2f} | {thr} |")
    cpu = machine.get("cpu", {})
    out.append("")
    out.append(f"Machine: {cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} CPUs, "
               f"torch {torch.__version__}, {torch.get_num_threads()} torch threads; "
               f"median of {len(paths)} run(s).")
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(*sys.argv[1:]))
