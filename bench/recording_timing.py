"""What recording construction costs: ``fastinit.empty_init()`` against a plain meta build.

Run: ``python bench/recording_timing.py [--model 1b] [--builds 31] [--rounds 2]``.

Builds the Llama-shaped model of ``fastinit.cli.models`` and transformers'
``LlamaForCausalLM`` of the same shape (``1b``: 1.50e9 parameters) under
``torch.device("meta")`` and under ``fastinit.empty_init()``, alternating, and prints the
median build time of each (``--builds`` builds per round, the first two of every kind not
counted). A transformers model built on meta skips its own weight init (it sees a meta
device), while eager construction and ``empty_init`` run it (recorded): the time spent in
``PreTrainedModel.init_weights`` is reported separately, so the recording's own cost shows
next to the work that eager construction does and a meta build leaves out. The target:
recording costs at most 10% over a plain meta build.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import fastinit
from fastinit.cli.models import LlamaShaped, get_config, hf_config

_in_hf_init = [0.0]


def _timed_hf_init() -> None:
    """Count the time spent in transformers' ``init_weights`` (outermost calls only)."""
    import transformers.modeling_utils as mu

    original = mu.PreTrainedModel.init_weights
    depth = [0]

    def init_weights(self, *args, **kwargs):
        depth[0] += 1
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                _in_hf_init[0] += time.perf_counter() - start

    mu.PreTrainedModel.init_weights = init_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="1b")
    parser.add_argument("--builds", type=int, default=31)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cfg = get_config(args.model)
    kinds = {"LlamaShaped": lambda: LlamaShaped(cfg)}
    try:
        from transformers import LlamaForCausalLM

        _timed_hf_init()
        hcfg = hf_config(cfg)
        kinds["LlamaForCausalLM"] = lambda: LlamaForCausalLM(hcfg)
    except ImportError:
        print("transformers not installed: its rows are left out")
    contexts = {"meta": lambda: torch.device("meta"), "empty_init": fastinit.empty_init}
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"model {args.model}, {args.builds} builds per round")
    for r in range(args.rounds):
        for kind, build in kinds.items():
            times: dict[str, list[float]] = {c: [] for c in contexts}
            inits: dict[str, list[float]] = {c: [] for c in contexts}
            for i in range(args.builds + 2):
                for ctx_name, ctx in contexts.items():
                    _in_hf_init[0] = 0.0
                    start = time.perf_counter()
                    with ctx():
                        model = build()
                    elapsed = time.perf_counter() - start
                    del model
                    if i >= 2:
                        times[ctx_name].append(elapsed)
                        inits[ctx_name].append(_in_hf_init[0])
            meta = statistics.median(times["meta"]) * 1e3
            rec = statistics.median(times["empty_init"]) * 1e3
            init = statistics.median(inits["empty_init"]) * 1e3
            line = (f"round {r + 1} {kind:17s} meta {meta:6.2f} ms  empty_init {rec:6.2f} ms "
                    f"({100 * (rec / meta - 1):+.0f}%)")
            if kind != "LlamaShaped":
                line += (f"; of which transformers' own init {init:.2f} ms, the rest "
                         f"{rec - init:.2f} ms ({100 * ((rec - init) / meta - 1):+.0f}%)")
            print(line)


if __name__ == "__main__":
    main()
