"""Compile every fill-kernel variant the launchers use for an H100 (sm_90), without a GPU.

Run ``python tools/triton_compile_check.py [--jobs N] [--json PATH]`` with the Triton
under test installed (CI runs it with the newest Triton and, in a separate virtual
environment, with Triton 3.6, which GPU machines with torch 2.11 carry). For each variant
it prints the kernel, dtype, constants and what the PTX holds, and fails (exit status 1)
when a variant does not compile or when its PTX

* uses approximate device math (``.approx``: values that would depend on the GPU),
* stores a whole aligned block without vector stores (16 bytes for 32/64-bit outputs,
  8 for 16-bit ones, see ``fill_block``), or uses vector stores when the launcher could
  not prove alignment,
* rounds to bfloat16 other than to nearest even (``cvt.rn``).

Must not run under the Triton interpreter (``TRITON_INTERPRET`` is removed here).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.pop("TRITON_INTERPRET", None)


def _check(index: int) -> dict:
    import triton

    from fastinit.backends import triton as TB

    variant = TB.all_variants()[index]
    t0 = time.perf_counter()
    ptx = TB.compile_variant(variant).asm["ptx"]
    c = variant.constexprs
    dtype = variant.signature.get("out_ptr", "")[1:] or str(c["OUT_DTYPE"])
    rec = {"kernel": variant.kernel_name, "dtype": dtype,
           "constexprs": {k: str(v) for k, v in c.items()}, "triton": triton.__version__,
           "seconds": round(time.perf_counter() - t0, 2),
           "v4": ptx.count("st.global.v4"), "v2": ptx.count("st.global.v2"),
           "approx": ptx.count(".approx"), "cvt_bf16": ptx.count("cvt.rn.bf16"),
           "cvt_bf16_other": sum(ptx.count(f"cvt.{m}.bf16") for m in ("rz", "rm", "rp")),
           "problems": []}
    if rec["approx"]:
        rec["problems"].append("approximate math (.approx) in the PTX")
    if c["ALIGNED"]:
        # 16 bytes: v4 of 32-bit or v2 of 64-bit values; 16-bit outputs: 8 bytes or more
        vec = rec["v4"] if dtype in ("fp32", "float32") else rec["v4"] + rec["v2"]
        if vec == 0:
            rec["problems"].append("an aligned whole block without vector stores")
    elif rec["v4"] + rec["v2"]:
        rec["problems"].append("vector stores where alignment is not proven")
    if rec["cvt_bf16_other"]:
        rec["problems"].append("bfloat16 rounding other than to nearest even")
    return rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", metavar="PATH", help="write the records as JSON")
    args = parser.parse_args(argv)
    import triton

    from fastinit.backends import triton as TB

    n = len(TB.all_variants())
    print(f"triton {triton.__version__}: compiling {n} fill-kernel variants for sm_90 "
          f"({args.jobs} jobs)", flush=True)
    t0 = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            records = list(pool.map(_check, range(n)))
    else:
        records = [_check(i) for i in range(n)]
    bad = 0
    for r in records:
        consts = " ".join(f"{k}={v}" for k, v in r["constexprs"].items())
        state = "FAIL " + "; ".join(r["problems"]) if r["problems"] else "ok"
        print(f"  {r['kernel']:22s} {r['dtype']:9s} {consts:60s} v4={r['v4']} v2={r['v2']} "
              f"{state}")
        bad += bool(r["problems"])
    print(f"{n - bad} of {n} variants compile cleanly with triton {triton.__version__} "
          f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
