"""Sharded init of Llama-3-70B on paper: what each rank writes with fastinit, and what a
seed checkpoint costs instead.

    python tools/scale_on_paper.py            # the table of docs/distributed.md ("Scale, on paper")
    python tools/scale_on_paper.py --dtype-bytes 4 --hbm-tbps 2.8

Shapes are Llama-3-70B's (80 layers, hidden 8192, intermediate 28672, 64 query heads and
8 KV heads of 128, vocabulary 128256, untied embeddings). Per-rank bytes follow the
placements torch gives (computed with fastinit.distributed.shard_layout for every rank):
FSDP2 shards every parameter on dim 0 over the 64 ranks; FSDP x TP 8 x 8 with torchtitan's
plan shards every matrix over all 64 ranks (TP on dim 0 or 1, FSDP on dim 0) and the
RMSNorm weights over the 8 FSDP ranks only (replicated over TP). All dimensions here
divide evenly, so there is no padding. The fastinit time is the
bytes over the HBM write bandwidth (a fill of independent counter-based values is a pure
streaming write); the seed-checkpoint numbers use the storage and CPU rates given on the
command line, which are assumptions, not measurements.
"""
from __future__ import annotations

import argparse

LAYERS, HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 80, 8192, 28672, 64, 8, 128, 128256


def llama3_70b() -> dict[str, tuple[tuple[int, ...], int, str]]:
    """name -> (shape, count, kind) with kind 'matrix' or 'norm'."""
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    return {
        "tok_embeddings": ((VOCAB, HIDDEN), 1, "matrix"),
        "attention.wq": ((q, HIDDEN), LAYERS, "matrix"),
        "attention.wk": ((kv, HIDDEN), LAYERS, "matrix"),
        "attention.wv": ((kv, HIDDEN), LAYERS, "matrix"),
        "attention.wo": ((HIDDEN, q), LAYERS, "matrix"),
        "feed_forward.w1": ((FFN, HIDDEN), LAYERS, "matrix"),
        "feed_forward.w3": ((FFN, HIDDEN), LAYERS, "matrix"),
        "feed_forward.w2": ((HIDDEN, FFN), LAYERS, "matrix"),
        "attention_norm": ((HIDDEN,), LAYERS, "norm"),
        "ffn_norm": ((HIDDEN,), LAYERS, "norm"),
        "norm": ((HIDDEN,), 1, "norm"),
        "output": ((VOCAB, HIDDEN), 1, "matrix"),
    }


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def placements(name: str, kind: str, fsdp: int, tp: int):
    """The placements torch gives: fully_shard (Shard(0)) alone, or over torchtitan's TP
    plan (colwise: Shard(0), rowwise: Shard(1), norms: Replicate), where FSDP on the dim
    TP already shards becomes _StridedShard(0, split_factor=tp)."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    if tp == 1:
        return (Shard(0),)
    if kind == "norm":
        return (Shard(0), Replicate())
    if name in ("attention.wo", "feed_forward.w2"):
        return (Shard(0), Shard(1))
    return (_StridedShard(0, split_factor=tp), Shard(0))


def per_rank_elements(fsdp: int, tp: int) -> int:
    """Elements the fullest rank holds, from fastinit.distributed's index map."""
    import itertools

    from fastinit.distributed import shard_layout

    mesh = (fsdp,) if tp == 1 else (fsdp, tp)
    most = 0
    for coord in itertools.product(*(range(k) for k in mesh)):
        n = 0
        for name, (shape, count, kind) in llama3_70b().items():
            layout = shard_layout(shape, mesh, coord, placements(name, kind, fsdp, tp))
            n += count * numel(layout.local_shape)
        most = max(most, n)
    return most


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype-bytes", type=int, default=2, help="2: bf16 weights (4: fp32)")
    ap.add_argument("--hbm-tbps", type=float, default=3.35,
                    help="HBM write bandwidth, TB/s (H100 SXM spec; no measurement yet)")
    ap.add_argument("--ckpt-write-gbps", type=float, default=2.0,
                    help="one node writing the seed checkpoint to shared storage, GB/s")
    ap.add_argument("--ckpt-read-node-gbps", type=float, default=5.0,
                    help="one node reading its shards from shared storage, GB/s")
    ap.add_argument("--fs-read-gbps", type=float, default=40.0,
                    help="aggregate read bandwidth of the shared filesystem, GB/s")
    ap.add_argument("--cpu-init-gelps", type=float, default=1.0,
                    help="single-process CPU init rate, 1e9 elements/s (torch.nn.init on "
                         "a many-core host)")
    ap.add_argument("--gpus-per-node", type=int, default=8)
    args = ap.parse_args()

    b = args.dtype_bytes
    total = sum(numel(s) * c for s, c, _ in llama3_70b().values())
    model_bytes = total * b
    print(f"Llama-3-70B: {total:,} parameters, {model_bytes / 1e9:.1f} GB at {b} bytes each\n")
    print("| layout | ranks | bytes written per rank | fastinit time per rank "
          f"(at {args.hbm_tbps:g} TB/s) | communication |")
    print("|---|---|---|---|---|")
    for name, fsdp, tp in (("FSDP", 64, 1), ("FSDP x TP", 8, 8)):
        elems = per_rank_elements(fsdp, tp)
        by = elems * b
        ms = by / (args.hbm_tbps * 1e12) * 1e3
        print(f"| {name} {fsdp}" + (f" x {tp}" if tp > 1 else "") +
              f" | {fsdp * tp} | {by / 1e9:.3f} GB ({elems:,} elements) | {ms:.2f} ms | none |")

    ranks = 64
    nodes = ranks // args.gpus_per_node
    init_s = total / (args.cpu_init_gelps * 1e9)
    write_s = model_bytes / (args.ckpt_write_gbps * 1e9)
    read_bw = min(nodes * args.ckpt_read_node_gbps, args.fs_read_gbps)
    read_s = model_bytes / (read_bw * 1e9)
    print("\nSeed checkpoint instead (assumed rates, see --help):\n")
    print("| step | bytes | time |")
    print("|---|---|---|")
    print(f"| init the full model in one CPU process ({args.cpu_init_gelps:g}e9 elements/s; "
          f"needs {model_bytes / 1e9:.0f} GB of host memory) | {model_bytes / 1e9:.1f} GB | "
          f"{init_s:.0f} s |")
    print(f"| write it from one node ({args.ckpt_write_gbps:g} GB/s) | "
          f"{model_bytes / 1e9:.1f} GB | {write_s:.0f} s |")
    print(f"| every job start: {ranks} ranks read their shards ({nodes} nodes x "
          f"{args.ckpt_read_node_gbps:g} GB/s, capped at {args.fs_read_gbps:g} GB/s) | "
          f"{model_bytes / 1e9:.1f} GB | {read_s:.1f} s |")
    print(f"| copy host -> device | {model_bytes / ranks / 1e9:.2f} GB per rank | "
          "small next to the read |")


if __name__ == "__main__":
    main()
