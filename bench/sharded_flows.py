"""Sharded init flows on gloo CPU ranks: time and bytes written per rank for a
Llama-shaped torchtitan 0.3 model under FSDP2 (torchtitan's own ``apply_fsdp_to_decoder``),
fastinit against torch's meta + ``to_empty`` + ``init_states`` on the same mesh and
against one process; and, for the record, what torch's own flow gives (gathered values
against its single process, identical shards across ranks, values with pipeline degree).

    python bench/sharded_flows.py [--ranks 8] [--dim 512] [--layers 4] [--vocab 8192]

Prints a Markdown table. Every rank runs on the same CPU: with more ranks than cores the
per-rank times include waiting for a core (the table says how many cores there were).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(dim: int, layers: int, vocab: int):
    """torchtitan's Llama 3 (the test suite's, at this size: 8 heads, 4 KV heads)."""
    from tests.differential.client_zoo import _titan_llama3

    return _titan_llama3(False, dim=dim, heads=8, kv_heads=4, vocab=vocab, layers=layers,
                         multiple_of=256, max_seq_len=256)


def _bits(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous()
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha1(_bits(t)).hexdigest()


def _local_bytes(model) -> int:
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        local = getattr(t, "_local_tensor", t)
        total += local.numel() * local.element_size()
    return total


def _time_both(make, repeats: int, barrier=lambda: None):
    """Seconds of ``fastinit.materialize`` and of torch's flow (``to_empty``, the seed,
    torchtitan's ``init_states``) on models ``make()`` builds, interleaved; the timings and
    the last model of each."""
    import fastinit

    out = {"fastinit_s": [], "torch_s": []}
    for _ in range(repeats):
        m = make()
        barrier()
        t0 = time.perf_counter()
        fastinit.materialize(m, "cpu", seed=0, progress=False)
        out["fastinit_s"].append(time.perf_counter() - t0)
        m2 = make()
        barrier()
        t0 = time.perf_counter()
        m2.to_empty(device="cpu")
        torch.manual_seed(0)
        with torch.no_grad():
            m2.init_states()
        out["torch_s"].append(time.perf_counter() - t0)
    return out, m, m2


def _single(args) -> dict:
    """One process: fastinit.materialize and torch's to_empty + init_states."""
    import fastinit

    torch.set_num_threads(1)

    def meta():
        with torch.device("meta"):
            return build(args.dim, args.layers, args.vocab)

    out, m, m2 = _time_both(meta, args.repeats)
    out["bytes"] = _local_bytes(m)
    out["params"] = sum(p.numel() for p in m.parameters())
    out["fastinit"] = {n: _digest(p) for n, p in m.named_parameters()}
    out["torch"] = {n: _digest(p) for n, p in m2.named_parameters()}
    # torch's flow with pipeline degree 2 (torchtitan's split), one process, same seed
    from torchtitan.distributed import pipeline_parallel as pp

    stages = pp._generate_llm_fqn_per_model_part(2, args.layers, 1, 1)
    same, total = 0, 0
    fi_same = 0
    for names in stages:
        with torch.device("meta"):
            st = pp._split_module(build(args.dim, args.layers, args.vocab), names)
        st.to_empty(device="cpu")
        torch.manual_seed(0)
        with torch.no_grad():
            st.init_states()
        with torch.device("meta"):
            fs = pp._split_module(build(args.dim, args.layers, args.vocab), names)
        fastinit.materialize(fs, "cpu", seed=0, progress=False)
        fdig = {n: _digest(p) for n, p in fs.named_parameters()}
        for n, p in st.named_parameters():
            total += 1
            same += _digest(p) == out["torch"][n]
            fi_same += fdig[n] == out["fastinit"][n]
    out["pp2"] = {"params": total, "torch_same": same, "fastinit_same": fi_same}
    return out


def _rank(rank: int, world: int, store: str, args, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torchtitan.distributed.fsdp import apply_fsdp_to_decoder

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=600))
    mesh = init_device_mesh("cpu", (world,))

    def sharded():
        with torch.device("meta"):
            m = build(args.dim, args.layers, args.vocab)
        apply_fsdp_to_decoder(m, mesh, param_dtype=torch.float32, reduce_dtype=torch.float32,
                              pp_enabled=False)
        return m

    res, m, m2 = _time_both(sharded, args.repeats, dist.barrier)
    res["bytes"] = _local_bytes(m)
    res["fastinit"] = {n: _digest(p.full_tensor()) for n, p in m.named_parameters()}
    res["torch"] = {n: _digest(p.full_tensor()) for n, p in m2.named_parameters()}
    res["torch_local"] = {n: _digest(p._local_tensor) for n, p in m2.named_parameters()}
    Path(out_dir, f"{rank}.json").write_text(json.dumps(res))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch.multiprocessing as mp

    single = _single(args)
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        procs = [mp.get_context("spawn").Process(target=_rank, args=(r, args.ranks, store,
                                                                     args, tmp))
                 for r in range(args.ranks)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            sys.exit("a rank failed")
        ranks = [json.loads(Path(tmp, f"{r}.json").read_text()) for r in range(args.ranks)]
    med = statistics.median
    n = len(single["fastinit"])
    fi_ok = sum(ranks[0]["fastinit"][k] == single["fastinit"][k] for k in single["fastinit"])
    th_ok = sum(ranks[0]["torch"][k] == single["torch"][k] for k in single["torch"])
    drawn = [k for k in single["torch"] if "norm" not in k]
    ident = sum(len({r["torch_local"][k] for r in ranks}) == 1 for k in drawn)
    fi_rank = med([med(r["fastinit_s"]) for r in ranks])
    th_rank = med([med(r["torch_s"]) for r in ranks])
    mb = 1e6
    print(f"torchtitan Llama 3, dim {args.dim}, {args.layers} layers, vocab {args.vocab}: "
          f"{single['params'] / 1e6:.1f} M parameters, float32; torch {torch.__version__}; "
          f"{args.ranks} gloo ranks on {os.cpu_count()} cores; medians of {args.repeats}\n")
    print("| flow | time per rank (s) | MB written per rank | gathered == one process |")
    print("|---|---:|---:|---|")
    print(f"| fastinit, one process | {med(single['fastinit_s']):.3f} | "
          f"{single['bytes'] / mb:.1f} | - |")
    print(f"| fastinit, FSDP2 x{args.ranks} (torchtitan's apply_fsdp_to_decoder) | "
          f"{fi_rank:.3f} | {med([r['bytes'] for r in ranks]) / mb:.1f} | "
          f"{fi_ok}/{n} parameters bitwise |")
    print(f"| torch meta + to_empty + init_states, one process | {med(single['torch_s']):.3f} "
          f"| {single['bytes'] / mb:.1f} | - |")
    print(f"| torch meta + to_empty + init_states, FSDP2 x{args.ranks} | {th_rank:.3f} | "
          f"{med([r['bytes'] for r in ranks]) / mb:.1f} | {th_ok}/{n} parameters bitwise; "
          f"{ident}/{len(drawn)} drawn parameters with the same local shard on every rank |")
    differ = [k for k in drawn if len({r["torch_local"][k] for r in ranks}) > 1]
    print(f"\nDrawn parameters whose torch shards differ across ranks: {', '.join(differ)}")
    pp2 = single["pp2"]
    print(f"\nPipeline degree 2 (torchtitan's split, each stage initialized on its own, one "
          f"process): fastinit {pp2['fastinit_same']}/{pp2['params']} parameters equal to "
          f"the unsplit model bitwise; torch's flow (same torch.manual_seed) "
          f"{pp2['torch_same']}/{pp2['params']}.")


if __name__ == "__main__":
    main()
