"""Stages of ``tools/gpu_check.sh`` that are easier in Python.

* ``env OUT``: the machine (GPU, driver, torch, Triton, CUDA) as JSON.
* ``small-fills [--device D]``: a small single and grouped fill of every distribution and
  dtype (what compute-sanitizer's memcheck watches), checked against the CPU backend
  (with ``--device cpu`` it only compiles the CPU backend's loops: Numba's cache).
* ``warm [--device D] [--jobs N]``: launch, from N processes at once, a small fill of every
  kernel variant the GPU tests use, so that Triton compiles them in parallel through its
  own launch path (its disk cache then serves the tests).
* ``host-overhead OUT [--device D]``: host time of one small call (64 x 64 float32
  ``normal_``), the median of 1000 calls, synchronized once at the end.
* ``tune OUT [--size N]``: the single-tensor kernel at 2**28 elements under each of
  ``TUNE_CONFIGS`` (4096 elements on 8 warps, the launchers' setting, against 32 elements
  per thread), GB/s and % of ``zero_()`` (on the CPU: the interpreter, for the dry run).
* ``offload [--device D]``: FSDP2 with ``CPUOffloadPolicy()`` (pinned, as torchtitan's
  ``cpu_offload=True`` sets it) on a one-rank mesh of ``D``: a Llama-shaped model built on
  meta, materialized with no collective, each parameter's shard in pinned CPU memory, equal
  bitwise to the single-process CPU materialize (run by hand: not one of the timed stages;
  with ``--device cpu``, unpinned, for the dry run).
* ``report OUT_DIR``: ``summary.md`` from the stages' JSON: the fills at 2**28 as GB/s and
  % of ``zero_()`` next to torch's own function and the SASS report's prediction, the
  model section, host overhead, the tuning table and the stage table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time


def _env(out: str) -> int:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(device=torch.cuda.get_device_name(0), sms=p.multi_processor_count,
                    memory_gb=round(p.total_memory / 1e9, 1),
                    capability=f"{p.major}.{p.minor}")
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,"
                              "clocks.sm,power.limit", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        info["nvidia_smi"] = f"unavailable: {exc}"
    with open(out, "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))
    return 0


def _small_fills(device: str) -> int:
    import torch

    from fastinit import backends
    from fastinit.backends import cpu
    from fastinit.layout import Segment
    from fastinit.spec import InitSpec

    specs = [InitSpec.uniform(-0.1, 0.1), InitSpec.normal(0.0, 0.02),
             InitSpec.trunc_normal(0.0, 1.0, -2.0, 2.0), InitSpec.trunc_normal(0.0, 0.02, -2, 2),
             InitSpec.trunc_normal(0.0, 1.0, -3.0, 3.0), InitSpec.trunc_normal(0.0, 1.0, 8.0, 9.0),
             InitSpec.constant(0.5)]
    bad = 0
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        n = 10000 + 3
        single = torch.full((len(specs), n), math.nan, dtype=dtype, device=device)
        grouped = torch.full((len(specs), n), math.nan, dtype=dtype, device=device)
        entries = []
        for i, spec in enumerate(specs):
            seg = [Segment(0, 0, 5 + i, 0, n, 1)]
            params = spec.kernel_params(dtype)
            backends.fill(single[i], seg, params, 1234, i)
            entries.append(backends.FillEntry(grouped[i], seg, params, 1234, i))
        backends.fill_grouped(entries)
        ref = torch.full((len(specs), n), math.nan, dtype=dtype)
        for i, spec in enumerate(specs):
            cpu.fill(ref[i], [Segment(0, 0, 5 + i, 0, n, 1)], spec.kernel_params(dtype), 1234, i)
        view = {8: torch.int64, 4: torch.int32, 2: torch.int16}[ref.element_size()]
        for name, t in (("single", single), ("grouped", grouped)):
            same = torch.equal(t.cpu().view(view), ref.view(view))
            verdict = "bitwise equal to the CPU backend" if same else "DIFFERS"
            print(f"{name:8s} {str(dtype):15s} {verdict}")
            bad += not same
    return 1 if bad else 0


def _host_overhead(out: str, device: str) -> int:
    import torch

    import fastinit

    t = torch.empty(64, 64, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    res = {}
    for name, fn in (("fastinit.normal_", lambda: fastinit.normal_(t, std=0.02)),
                     ("torch.nn.init.normal_", lambda: torch.nn.init.normal_(t, std=0.02))):
        for _ in range(50):
            fn()
        sync()
        times = []
        for _ in range(1000):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        sync()
        res[name] = {"median_us": round(statistics.median(times) * 1e6, 2),
                     "p90_us": round(sorted(times)[900] * 1e6, 2)}
    with open(out, "w") as f:
        json.dump({"device": device, "shape": [64, 64], "calls": 1000, **res}, f, indent=1)
    print(json.dumps(res, indent=1))
    return 0


#: (elements per program, warps): the launchers' setting first, then 32 elements per thread
TUNE_CONFIGS = ((4096, 8), (4096, 4), (8192, 8))


def _tune_cases():
    import torch

    from fastinit.spec import InitSpec

    specs = {"uniform": InitSpec.uniform(-0.1, 0.1), "normal": InitSpec.normal(0.0, 0.02),
             "trunc_normal": InitSpec.trunc_normal(0.0, 1.0, -2.0, 2.0),
             "trunc_normal_wide": InitSpec.trunc_normal(0.0, 0.02, -2.0, 2.0)}
    return [(name, spec, dtype) for dtype in (torch.float32, torch.bfloat16)
            for name, spec in specs.items()]


def _precompile(job: tuple) -> None:
    from fastinit.backends import triton as TB

    params, dtype, block, warps = job
    v = TB.launch_variant(params, dtype, grouped=False)
    TB.compile_variant(v._replace(constexprs={**v.constexprs, "BLOCK": block}, block=block,
                                  num_warps=warps))


def _tune(out: str, device: str, size: int) -> int:
    """Time the single-tensor kernel under each of TUNE_CONFIGS (the 8-vs-4-warps question of
    the performance model in docs/performance.md): GB/s and % of zero_() of the same tensor."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from fastinit.backends import triton as TB
    from fastinit.layout import Segment

    cases = _tune_cases()
    cuda = device.startswith("cuda")
    if cuda:  # (on the CPU, for the dry run, the kernels run under the interpreter)
        jobs = [(spec.kernel_params(dt), dt, b, w) for _, spec, dt in cases
                for b, w in TUNE_CONFIGS]
        with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_precompile, jobs))  # fills Triton's cache in parallel

    def timed(fn) -> float:
        fn()
        if not cuda:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        torch.cuda.synchronize()
        times = []
        for _ in range(5):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        return statistics.median(times)

    rows = []
    for name, spec, dt in cases:
        t = torch.empty(size, dtype=dt, device=device)
        zero = timed(t.zero_)
        params = spec.kernel_params(dt)
        for block, warps in TUNE_CONFIGS:
            sec = timed(lambda: TB.fill(t, [Segment(0, 0, 0, 0, size, 1)], params, 1, 2,
                                        block=block, num_warps=warps))
            nbytes = size * t.element_size()
            rows.append({"distribution": name, "dtype": str(dt).removeprefix("torch."),
                         "block": block, "num_warps": warps, "seconds": sec,
                         "gbps": nbytes / sec / 1e9, "pct_zero": 100 * zero / sec})
            print(f"{name:18s} {rows[-1]['dtype']:9s} block {block:5d} warps {warps}: "
                  f"{rows[-1]['gbps']:7.1f} GB/s {rows[-1]['pct_zero']:5.1f} % of zero_()")
        del t
    with open(out, "w") as f:
        json.dump({"size": size, "device": device, "rows": rows}, f, indent=1)
    return 0


def _warm_cases():
    """(spec, dtype, m_base, grouped) of the fills the GPU tests make: every kernel variant
    they launch (distribution x clamp x alignment x dtype, single and grouped)."""
    import torch

    from fastinit.spec import InitSpec

    specs = [InitSpec.uniform(-0.3, 0.7), InitSpec.normal(0.0, 1.0),
             InitSpec.trunc_normal(0.0, 1.0, -2.0, 2.0), InitSpec.trunc_normal(0.0, 0.02, -2, 2),
             InitSpec.constant(-0.125)]
    return [(spec, dtype, m_base, grouped)
            for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64)
            for spec in specs for m_base in (0, 3) for grouped in (False, True)]


def _warm_share(args: tuple) -> int:
    """Launch one share of ``_warm_cases`` (each launch compiles its variant through
    Triton's own launch path, so the tests find it in the cache)."""
    share, jobs, device = args
    import torch

    from fastinit import backends
    from fastinit.backends import triton as TB
    from fastinit.layout import Segment

    n = 0
    for i, (spec, dtype, m_base, grouped) in enumerate(_warm_cases()):
        if i % jobs != share:
            continue
        out = torch.empty(m_base + 5000, dtype=dtype, device=device)
        seg = [Segment(m_base, 0, m_base, 0, 5000, 1)]
        params = spec.kernel_params(dtype)
        if grouped:
            TB.fill_grouped([backends.FillEntry(out, seg, params, 1, 2)])
        else:
            TB.fill(out, seg, params, 1, 2)
        n += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n


def _warm(device: str, jobs: int) -> int:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            n = sum(pool.map(_warm_share, [(i, jobs, device) for i in range(jobs)]))
    else:
        n = _warm_share((0, 1, device))
    print(f"{n} fills launched on {device} in {time.perf_counter() - t0:.1f} s ({jobs} processes)")
    return 0


def _load(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


_SASS_DIST = {"uniform_": "uniform", "normal_": "normal", "trunc_normal_": "trunc_normal",
              "kaiming_uniform_": "uniform", "xavier_normal_": "normal"}


def _report(out_dir: str) -> int:
    env = _load(os.path.join(out_dir, "env.json")) or {}
    stages = _load(os.path.join(out_dir, "stages.json")) or []
    bench = _load(os.path.join(out_dir, "bench_fills.json")) or {}
    models = _load(os.path.join(out_dir, "bench_model.json")) or {}
    sass = _load(os.path.join(out_dir, "sass.json")) or []
    host = _load(os.path.join(out_dir, "host_overhead.json")) or {}
    tune = _load(os.path.join(out_dir, "tune.json")) or {}
    predicted = {(r["distribution"], r["dtype"]): r for r in sass if r["kernel"] == "single"}
    key = "predicted_pct_h200" if "H200" in str(env.get("device", "")) else "predicted_pct_h100"
    lines = ["# fastinit GPU check", "",
             f"Device: {env.get('device', '?')} ({env.get('nvidia_smi', '')}); torch "
             f"{env.get('torch')}, Triton {env.get('triton')}, CUDA {env.get('cuda')}.", "",
             "| stage | status | seconds | note |", "|---|---|---:|---|"]
    for s in stages:
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s.get('note', '')} |")
    rows = bench.get("functions", []) if isinstance(bench, dict) else []
    if rows:
        lines += ["", "## Fills", "",
                  "| function | dtype | elements | fastinit GB/s | % of zero_() | torch GB/s | "
                  "speed-up | predicted % (SASS) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            dist = _SASS_DIST.get(r.get("function"))
            dt = r.get("dtype")
            pred = predicted.get((dist, dt))
            cell = lambda k, f: "" if r.get(k) is None else format(r[k], f)  # noqa: E731
            lines.append(f"| {r.get('function')} | {dt} | {r.get('numel')} | "
                         f"{cell('fastinit_gbps', '.1f')} | {cell('pct_roofline', '.1f')} | "
                         f"{cell('torch_gbps', '.1f')} | {cell('speedup', '.2f')} | "
                         f"{'' if pred is None else format(pred[key], '.0f')} |")
    mrows = models.get("models", []) if isinstance(models, dict) else []
    if mrows:
        lines += ["", "## Model", "", "```", json.dumps(mrows, indent=1)[:6000], "```"]
    if host:
        lines += ["", "## Host overhead (64 x 64 float32, median of 1000 calls)", "",
                  "```", json.dumps(host, indent=1), "```"]
    if tune.get("rows"):
        lines += ["", f"## Elements per program and warps ({tune['size']} elements)", "",
                  "| distribution | dtype | block | warps | GB/s | % of zero_() |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in tune["rows"]:
            lines.append(f"| {r['distribution']} | {r['dtype']} | {r['block']} | "
                         f"{r['num_warps']} | {r['gbps']:.1f} | {r['pct_zero']:.1f} |")
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _offload(device: str) -> int:
    import tempfile

    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    import fastinit
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.differential.dist_helpers import Llama, no_collectives

    store = os.path.join(tempfile.mkdtemp(), "store")
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                            init_method=f"file://{store}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh(device.split(":")[0], (1,))
        with torch.device("meta"):
            ref = Llama()
        fastinit.materialize(ref, "cpu", seed=0)
        with torch.device("meta"):
            model = Llama()
        policy = CPUOffloadPolicy(pin_memory=device.startswith("cuda"))
        for block in model.layers:
            fully_shard(block, mesh=mesh, offload_policy=policy)
        fully_shard(model, mesh=mesh, offload_policy=policy)
        with no_collectives() as calls:
            fastinit.materialize(model, device, seed=0)
        expected = dict(ref.named_parameters())
        bad = len(calls)
        for name, p in model.named_parameters():
            local = p._local_tensor
            same = torch.equal(local.view(torch.int32), expected[name].view(torch.int32))
            pinned = local.is_pinned() if device.startswith("cuda") else None
            print(f"{name:40s} {local.device} pinned={pinned} "
                  f"{'bitwise equal' if same else 'DIFFERS'}")
            bad += (not same) or local.device.type != "cpu" or pinned is False
        print("collectives during the fill:", calls or "none")
        return 1 if bad else 0
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env")
    e.add_argument("out")
    s = sub.add_parser("small-fills")
    s.add_argument("--device", default="cuda")
    h = sub.add_parser("host-overhead")
    h.add_argument("out")
    h.add_argument("--device", default="cuda")
    w = sub.add_parser("warm")
    w.add_argument("--device", default="cuda")
    w.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    t = sub.add_parser("tune")
    t.add_argument("out")
    t.add_argument("--device", default="cuda")
    t.add_argument("--size", type=int, default=1 << 28)
    o = sub.add_parser("offload")
    o.add_argument("--device", default="cuda")
    r = sub.add_parser("report")
    r.add_argument("out_dir")
    args = parser.parse_args(argv)
    if args.cmd == "env":
        return _env(args.out)
    if args.cmd == "small-fills":
        return _small_fills(args.device)
    if args.cmd == "host-overhead":
        return _host_overhead(args.out, args.device)
    if args.cmd == "warm":
        return _warm(args.device, args.jobs)
    if args.cmd == "offload":
        return _offload(args.device)
    if args.cmd == "tune":
        return _tune(args.out, args.device, args.size)
    return _report(args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
