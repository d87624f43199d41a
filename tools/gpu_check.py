"""Stages of ``tools/gpu_check.sh`` that are easier in Python.

* ``env OUT``: the machine (GPU, driver, torch, Triton, CUDA) as JSON.
* ``small-fills [--device D]``: a small single and grouped fill of every distribution and
  dtype (what compute-sanitizer's memcheck watches), checked against the CPU backend
  (with ``--device cpu`` it only compiles the CPU backend's loops: Numba's cache).
* ``host-overhead OUT [--device D]``: host time of one small call (64 x 64 float32
  ``normal_``), the median of 1000 calls, synchronized once at the end.
* ``report OUT_DIR``: ``summary.md`` from the stages' JSON: the fills at 2**28 as GB/s and
  % of ``zero_()`` next to torch's own function and the SASS report's prediction, the
  model section, host overhead and the stage table.
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
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


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
    r = sub.add_parser("report")
    r.add_argument("out_dir")
    args = parser.parse_args(argv)
    if args.cmd == "env":
        return _env(args.out)
    if args.cmd == "small-fills":
        return _small_fills(args.device)
    if args.cmd == "host-overhead":
        return _host_overhead(args.out, args.device)
    return _report(args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
