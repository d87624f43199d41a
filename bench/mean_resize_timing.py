"""fastinit.mean_resize_embeddings_ against transformers' mean resizing, same matrix.

Run: ``python bench/mean_resize_timing.py [--rows 128000] [--added 256] [--dim 4096]``.

transformers' ``resize_token_embeddings(n, mean_resizing=True)`` initializes the new rows
with ``_init_added_embeddings_weights_with_mean``: the float32 mean and covariance of the
old rows (a centred copy and a full ``d x d`` product), a positive-definiteness check (one
Cholesky factorization) and a ``MultivariateNormal`` (another). That step is timed on an
``nn.Embedding`` of the old rows, against ``fastinit.mean_resize_embeddings_`` on the
resized matrix (the upper half of the covariance, row slices, one Cholesky). The copy of
the old rows into the new matrix, common to both, is not timed. Prints JSON lines.
"""
from __future__ import annotations

import argparse
import gc
import json
import time

import torch
from torch import nn

import fastinit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=128000)
    ap.add_argument("--added", type=int, default=256)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    from transformers import PreTrainedModel

    n, k, d = args.rows, args.added, args.dim
    g = torch.Generator().manual_seed(0)
    weight = torch.empty(n + k, d)
    fastinit.normal_(weight[:n], 0.0, 0.02, generator=g)
    weight[:n] += 0.001 * torch.randn(d, generator=g)  # a mean, as trained embeddings have
    fastinit.mean_resize_embeddings_(torch.randn(64, 8), 40)  # warm-up
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        fastinit.mean_resize_embeddings_(weight, n, seed=1)
        ours = time.perf_counter() - t0
        print(json.dumps({"what": "fastinit.mean_resize_embeddings_", "rows": n, "added": k,
                          "dim": d, "seconds": round(ours, 3)}), flush=True)
    ours_rows = weight[n:].clone()
    old = nn.Embedding.from_pretrained(weight[:n])
    new = nn.Embedding.from_pretrained(weight)  # same storage shape as a resized one
    gc.collect()
    for _ in range(args.rounds):
        torch.manual_seed(1)
        t0 = time.perf_counter()
        PreTrainedModel._init_added_embeddings_weights_with_mean(None, old, new, n, k)
        theirs = time.perf_counter() - t0
        print(json.dumps({"what": "transformers _init_added_embeddings_weights_with_mean",
                          "rows": n, "added": k, "dim": d, "seconds": round(theirs, 3)}), flush=True)
    mu = weight[:n].double().mean(0)
    print(json.dumps({"speedup": round(theirs / ours, 2), "threads": torch.get_num_threads(),
                      "torch": torch.__version__,
                      "max |mean(new) - mu| ours": float((ours_rows.double().mean(0) - mu).abs().max()),
                      "max |mean(new) - mu| theirs": float((new.weight[n:].double().mean(0) - mu).abs().max())}))


if __name__ == "__main__":
    main()
