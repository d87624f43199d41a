"""Helpers for the torch.distributed tests: a process launcher, a no-communication guard,
NaN poisoning with guard bands, and a small Llama-shaped model.

The launcher spawns ``world_size`` processes that join a gloo process group through a
file store in a fresh temporary directory (no port to pick, no port to collide on), run
one worker function of this module, and report a small JSON summary (what was checked,
so that a test can insist that its checks actually ran). A failing rank's traceback is
raised in the parent; the other ranks are then killed (they may be blocked in a
collective waiting for it).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.nn as nn

# --- launcher ------------------------------------------------------------------------------


def run_workers(world_size: int, worker: str, tmp_path: Path, timeout: float = 300.0,
                **kwargs) -> list[dict]:
    """Run ``worker`` (a function name in this module) on ``world_size`` gloo ranks."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    init_file = tmp_path / "pg_store"
    procs = [ctx.Process(target=_entry, args=(rank, world_size, str(init_file), worker,
                                              str(tmp_path), kwargs))
             for rank in range(world_size)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    failed_at = None
    try:
        while any(p.is_alive() for p in procs):
            if any(p.exitcode not in (None, 0) for p in procs) and failed_at is None:
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > 5:
                break  # the others are probably blocked in a collective
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(10)
    errors = []
    for rank, p in enumerate(procs):
        err = tmp_path / f"rank{rank}.err"
        if err.exists():
            errors.append(f"--- rank {rank} ---\n{err.read_text()}")
        elif p.exitcode != 0:
            errors.append(f"--- rank {rank} --- exit code {p.exitcode}"
                          + (" (killed: timeout or another rank failed)" if p.exitcode and
                             p.exitcode < 0 else ""))
    if errors:
        raise AssertionError("distributed worker failed:\n" + "\n".join(errors))
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world_size)]


def _entry(rank: int, world_size: int, init_file: str, worker: str, out_dir: str,
           kwargs: dict) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)  # several ranks share two cores
    try:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=120))
        try:
            result = globals()[worker](rank, world_size, **kwargs)
            Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
        finally:
            dist.destroy_process_group()
    except BaseException:
        Path(out_dir, f"rank{rank}.err").write_text(traceback.format_exc())
        os._exit(1)
    # Leave without the interpreter's shutdown: torch's process-group threads can still be
    # joinable when C++ statics are destroyed, which aborts the process ("terminate called
    # without an active exception") after its work is done and reported.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --- no communication ------------------------------------------------------------------------

#: Operator namespaces of torch.distributed's collectives: ``c10d`` (torch.distributed.*,
#: what ProcessGroup calls go through) and ``_c10d_functional`` (functional collectives,
#: DTensor redistribution).
_COLLECTIVE_NAMESPACES = ("c10d", "_c10d_functional", "_c10d_functional_autograd",
                          "c10d_functional")
_PY_COLLECTIVES = (
    "all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object",
    "all_to_all", "all_to_all_single", "barrier", "broadcast", "broadcast_object_list",
    "gather", "gather_object", "reduce", "reduce_scatter", "reduce_scatter_tensor",
    "scatter", "scatter_object_list", "send", "recv", "isend", "irecv", "batch_isend_irecv",
    "monitored_barrier", "new_group", "_all_gather_base", "_reduce_scatter_base",
)
_FUNCOL = ("all_reduce", "all_gather_tensor", "all_gather_into_tensor", "reduce_scatter_tensor",
           "all_to_all_single", "broadcast", "permute_tensor", "all_reduce_coalesced",
           "all_gather_tensor_autograd", "reduce_scatter_tensor_autograd")


class CollectiveCalled(RuntimeError):
    pass


@contextlib.contextmanager
def no_collectives(calls: list | None = None):
    """Raise :class:`CollectiveCalled` on any collective while the block runs.

    Two nets: a ``TorchDispatchMode`` that sees every operator of the collective
    namespaces (whatever Python function issued it: torch.distributed, functional
    collectives, DTensor redistribution, FSDP), and patches of the Python-level
    functions of ``torch.distributed`` and ``torch.distributed._functional_collectives``
    (object collectives, groups). Calls are also appended to ``calls``.
    """
    import torch.distributed as dist
    import torch.distributed._functional_collectives as funcol
    import torch.distributed.distributed_c10d as c10d
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = [] if calls is None else calls

    def refuse(name):
        calls.append(name)
        raise CollectiveCalled(f"collective {name} called during init")

    class Guard(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace in _COLLECTIVE_NAMESPACES:
                refuse(str(func))
            return func(*args, **(kwargs or {}))

    saved = []
    for mod, names in ((dist, _PY_COLLECTIVES), (c10d, _PY_COLLECTIVES), (funcol, _FUNCOL)):
        for name in names:
            if hasattr(mod, name):
                saved.append((mod, name, getattr(mod, name)))
                setattr(mod, name, lambda *a, _n=f"{mod.__name__}.{name}", **k: refuse(_n))
    try:
        with Guard():
            yield calls
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


# --- NaN poisoning with guard bands ---------------------------------------------------------


def storage_view(t: torch.Tensor) -> torch.Tensor:
    """A flat tensor over the whole storage behind ``t``."""
    st = t.untyped_storage()
    n = st.nbytes() // t.element_size()
    return torch.empty(0, dtype=t.dtype, device=t.device).set_(st, 0, (n,), (1,))


def poison(t: torch.Tensor):
    """Set the whole storage behind ``t`` (``t`` and whatever surrounds it) to NaN; return a
    checker that asserts ``t`` was written completely and nothing else was written."""
    flat = storage_view(t)
    flat.fill_(math.nan)
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    if t.numel():
        mask.as_strided(t.shape, t.stride(), t.storage_offset()).fill_(True)

    def check(what: str = "") -> None:
        assert not flat[mask].isnan().any(), f"{what}: unwritten elements in the local tensor"
        assert flat[~mask].isnan().all(), f"{what}: a write outside the local tensor"

    return check


# --- single-process references ------------------------------------------------------------------


def fastinit_fns() -> list[tuple[str, dict, bool]]:
    """(name, kwargs, needs >= 2 dims) of the fastinit fills that are a function of the
    global element index (those present in this fastinit)."""
    import fastinit

    fns = [("normal_", dict(mean=0.1, std=0.5), False),
           ("uniform_", dict(a=-0.3, b=0.7), False),
           ("trunc_normal_", dict(mean=0.05, std=0.7, a=-1.0, b=1.5), False),
           ("xavier_uniform_", dict(gain=1.3), True),
           ("xavier_normal_", dict(gain=0.7), True),
           ("kaiming_uniform_", dict(a=math.sqrt(5)), True),
           ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu"), True),
           ("scaled_residual_", dict(std=0.02, layer_id=2, truncated=True), False),
           ("variance_scaling_", dict(scale=2.0, mode="fan_avg"), True),
           ("lecun_normal_", {}, True),
           ("lecun_uniform_", {}, True),
           ("constant_", dict(val=0.25), False),
           ("ones_", {}, False),
           ("zeros_", {}, False)]
    return [f for f in fns if hasattr(fastinit, f[0])]


#: fastinit functions that take no seed (deterministic fills).
UNSEEDED = ("constant_", "ones_", "zeros_", "eye_", "dirac_")


def call_fill(name: str, t: torch.Tensor, seed: int, kwargs: dict) -> torch.Tensor:
    import fastinit

    if name in UNSEEDED:
        return getattr(fastinit, name)(t, **kwargs)
    return getattr(fastinit, name)(t, **kwargs, seed=seed)


# --- a small Llama-shaped model (torchtitan's names) -------------------------------------------

VOCAB, DIM, N_HEADS, N_KV, HIDDEN, N_LAYERS = 37, 12, 3, 1, 22, 2
HEAD = DIM // N_HEADS


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.wq = nn.Linear(DIM, N_HEADS * HEAD, bias=False)
        self.wk = nn.Linear(DIM, N_KV * HEAD, bias=False)
        self.wv = nn.Linear(DIM, N_KV * HEAD, bias=True)  # a bias, as in Qwen
        self.wo = nn.Linear(N_HEADS * HEAD, DIM, bias=False)

    def forward(self, x):
        b, s, _ = x.shape
        q = self.wq(x).view(b, s, N_HEADS, HEAD).transpose(1, 2)
        k = self.wk(x).view(b, s, N_KV, HEAD).transpose(1, 2)
        v = self.wv(x).view(b, s, N_KV, HEAD).transpose(1, 2)
        k = k.repeat_interleave(N_HEADS // N_KV, dim=1)
        v = v.repeat_interleave(N_HEADS // N_KV, dim=1)
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(o.transpose(1, 2).reshape(b, s, -1))


class FeedForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Linear(DIM, HIDDEN, bias=False)
        self.w2 = nn.Linear(HIDDEN, DIM, bias=False)
        self.w3 = nn.Linear(DIM, HIDDEN, bias=False)

    def forward(self, x):
        return self.w2(torch.nn.functional.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention_norm = nn.RMSNorm(DIM)
        self.attention = Attention()
        self.ffn_norm = nn.RMSNorm(DIM)
        self.feed_forward = FeedForward()

    def forward(self, x):
        x = x + self.attention(self.attention_norm(x))
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList(Block() for _ in range(N_LAYERS))
        self.norm = nn.RMSNorm(DIM)
        self.output = nn.Linear(DIM, VOCAB, bias=False)

    def forward(self, tokens):
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.output(self.norm(h))


class RowInit(nn.Linear):
    """A head whose init writes parts of its weight after the whole: a row of zeros, a
    column of a constant, a row drawn again - on a sharded weight each lands on the ranks
    that hold it."""

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            self.weight[0].zero_()
            self.weight[:, 1].fill_(0.5)
            nn.init.normal_(self.weight[2], std=3.0)
            self.weight.narrow(0, 5, 2).fill_(-1.0)


class RichLlama(Llama):
    """The Llama with what torch's sharded flows lose: an embedding padding row, partial
    writes on a sharded head, and (``constants=True``) values made only in ``__init__``,
    constants and draws from torch's generator."""

    def __init__(self, constants: bool = False):
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, DIM, padding_idx=5)
        self.output = RowInit(DIM, VOCAB, bias=False)
        if constants:
            self.scale = nn.Parameter(torch.full((DIM,), 2.6592))
            mix = torch.zeros(DIM, DIM)
            mix.diagonal().fill_(1.0)
            mix[0, 3:7] = 0.25
            self.mix = nn.Parameter(mix)
            # init code drawing from torch's generator (Mamba's dt_bias): replayed
            # parameter by parameter on the ranks (the unsharded buffer after them), the
            # draws must not depend on that
            self.register_buffer("noise", torch.rand(DIM))
            self.dt_bias = nn.Parameter(torch.rand(DIM) * 0.5 - 0.25)
            self.proj = nn.Parameter(torch.randn(DIM, DIM) * 0.02)


def init_weights(model: nn.Module, base_seed: int) -> None:
    """torchtitan-style init with fastinit; parameter ``i`` of the sorted names gets seed
    ``base_seed + i`` (explicit per-parameter seeds, until fastinit.materialize exists)."""
    import fastinit

    names = sorted(n for n, _ in model.named_parameters())
    for name, p in model.named_parameters():
        seed = base_seed + names.index(name)
        if "norm" in name:
            fastinit.uniform_(p, 0.5, 1.5, seed=seed)  # not ones: an unwritten value shows
        elif name.startswith("tok_embeddings"):
            fastinit.normal_(p, std=1.0, seed=seed)
        elif name.startswith("output"):
            std = DIM ** -0.5
            fastinit.trunc_normal_(p, std=std, a=-3 * std, b=3 * std, seed=seed)
        elif name.endswith("bias"):
            fastinit.uniform_(p, -0.1, 0.1, seed=seed)
        else:
            layer = int(name.split(".")[1])
            depth_std = 0.02 / math.sqrt(2 * (layer + 1))
            std = 0.02 if any(k in name for k in ("wq", "wk", "wv", "w1")) else depth_std
            fastinit.trunc_normal_(p, std=std, seed=seed)


def tp_plan_block():
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                                   SequenceParallel)

    return {
        "attention_norm": SequenceParallel(),
        "attention.wq": ColwiseParallel(),
        "attention.wk": ColwiseParallel(),
        "attention.wv": ColwiseParallel(),
        "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
        "ffn_norm": SequenceParallel(),
        "feed_forward.w1": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
        "feed_forward.w3": ColwiseParallel(),
    }


def apply_tp(model: nn.Module, tp_mesh) -> None:
    """torchtitan's tensor-parallel plan."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                                   SequenceParallel, parallelize_module)

    parallelize_module(model, tp_mesh, {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        "output": ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate()),
    })
    for block in model.layers:
        parallelize_module(block, tp_mesh, tp_plan_block())


def apply_fsdp(model: nn.Module, dp_mesh) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in model.layers:
        fully_shard(block, mesh=dp_mesh)
    fully_shard(model, mesh=dp_mesh)


# --- checks run on every rank ------------------------------------------------------------------


def shard_model(model: nn.Module, meshes: dict) -> None:
    """Tensor parallelism on ``meshes["tp"]`` and FSDP2 on ``meshes["dp"]``, where given."""
    if "tp" in meshes:
        apply_tp(model, meshes["tp"])
    if "dp" in meshes:
        apply_fsdp(model, meshes["dp"])


def assert_gathered_equal(model: nn.Module, ref: nn.Module, what: str) -> int:
    """Every parameter of ``model`` (DTensors gathered; TP leaves unplanned ones plain)
    bitwise equal to ``ref``'s of the same name; returns how many were compared."""
    expected = dict(ref.named_parameters())
    n = 0
    for name, p in model.named_parameters():
        whole = p.full_tensor() if hasattr(p, "full_tensor") else p
        assert_bitwise(whole, expected[name], f"{what} {name}")
        n += 1
    return n


def assert_bitwise(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    from tests.common import assert_bitwise_equal

    try:
        assert_bitwise_equal(a, b)
    except AssertionError as e:
        raise AssertionError(f"{what}: {e}") from None


def placement_sets(mesh_ndim: int, ndim: int) -> list[tuple]:
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    last = ndim - 1
    if mesh_ndim == 1:
        sets = [Replicate(), Shard(0), Shard(last), Shard(-1), _StridedShard(0, split_factor=2),
                _StridedShard(last, split_factor=3)]
        if ndim == 3:
            sets.append(Shard(1))
        return [(p,) for p in sets]
    assert mesh_ndim == 2
    base = [Replicate(), Shard(0), Shard(last), _StridedShard(0, split_factor=2),
            _StridedShard(last, split_factor=2)]
    base = list({repr(p): p for p in base}.values())  # 1-d tensors: Shard(0) == Shard(last)
    sets = [(a, b) for a in base for b in base]
    if ndim == 3:
        sets += [(Shard(1), Shard(1)), (Shard(1), Shard(2)), (_StridedShard(1, split_factor=2),
                                                              Shard(1))]
    return sets


SHAPES = [(7, 5), (3, 10, 6), (13,), (2, 3)]


def _torch_round_trips(x, mesh, placements, src) -> bool:
    """Whether torch's gather inverts torch's split for these placements. In torch 2.13 it
    does not for two _StridedShard placements on the same tensor dimension (even for even
    sizes): full_tensor() then disagrees with distribute_tensor(), whatever the values."""
    strided = [p.dim for p in placements if type(p).__name__ == "_StridedShard"]
    if len(strided) == len(set(strided)):
        return True
    from torch.distributed.tensor import distribute_tensor

    return torch.equal(distribute_tensor(x, mesh, placements, src_data_rank=src).full_tensor(),
                       x)


def check_tensors(mesh, summary: dict) -> None:
    """Every fastinit fill on DTensors of awkward shapes, every placement of ``mesh``."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, Partial, Shard, distribute_tensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    import fastinit

    fns = fastinit_fns()
    if mesh.ndim > 1:  # the placement pairs; every fill is checked on the 1-d meshes
        fns = [f for f in fns if f[0] in ("normal_", "trunc_normal_", "kaiming_uniform_")]
    seed = 11
    for shape in SHAPES:
        for placements in placement_sets(mesh.ndim, len(shape)):
            for name, kw, needs2 in fns:
                if needs2 and len(shape) < 2:
                    continue
                dtypes = [torch.float32] + ([torch.bfloat16, torch.float16]
                                            if name == "normal_" else [])
                for dtype in dtypes:
                    seed += 1
                    what = f"{name} {dtype} {shape} {placements} on {tuple(mesh.shape)}"
                    expected = call_fill(name, torch.empty(shape, dtype=dtype), seed, kw)
                    # torch's scatter path asserts on uneven _StridedShard: split locally
                    src = None if any(type(p).__name__ == "_StridedShard"
                                      for p in placements) else 0
                    oracle = distribute_tensor(expected, mesh, placements,
                                               src_data_rank=src)._local_tensor
                    dt = distribute_tensor(torch.zeros(shape, dtype=dtype), mesh, placements,
                                           src_data_rank=src)
                    check = poison(dt._local_tensor)
                    with no_collectives() as calls:
                        out = call_fill(name, dt, seed, kw)
                    assert out is dt and not calls
                    check(what)
                    assert_bitwise(dt._local_tensor, oracle, what + " (local)")
                    round_trips = _torch_round_trips(expected, mesh, placements, src)
                    if round_trips:
                        assert_bitwise(dt.full_tensor(), expected, what + " (gathered)")
                    else:  # torch's own split and gather disagree: the local check stands
                        summary["torch_round_trip_broken"] = sorted(set(
                            summary.get("torch_round_trip_broken", []) + [repr(placements)]))
                    summary["tensor_fills"] = summary.get("tensor_fills", 0) + 1
                    if name != "normal_" or dtype != torch.float32:
                        continue
                    # the same shard in a guard-banded buffer with padded rows
                    lshape, _ = compute_local_shape_and_global_offset(shape, mesh, placements)
                    lshape = tuple(lshape)
                    rows = math.prod(lshape[:-1])
                    buf = torch.empty(3 + rows * (lshape[-1] + 2) + 3, dtype=dtype)
                    local = buf[3:3 + rows * (lshape[-1] + 2)].view(rows, lshape[-1] + 2)
                    local = local[:, :lshape[-1]].view(lshape) if len(lshape) > 1 else \
                        local[:, :lshape[-1]].reshape(lshape)
                    dt2 = DTensor.from_local(local, mesh, placements, shape=torch.Size(shape),
                                             stride=torch.empty(shape).stride())
                    check = poison(dt2._local_tensor)
                    with no_collectives() as calls:
                        fastinit.normal_(dt2, **kw, seed=seed)
                    assert not calls
                    check(what + " (padded rows)")
                    assert_bitwise(dt2._local_tensor, oracle, what + " (padded rows)")
                    summary["strided_local_fills"] = summary.get("strided_local_fills", 0) + 1
                    if len(shape) == 2 and round_trips:
                        # a transposed DTensor: the local tensor is a transposed view
                        dt3 = distribute_tensor(torch.zeros(shape), mesh, placements,
                                                src_data_rank=src).t()
                        check = poison(dt3._local_tensor)
                        with no_collectives() as calls:
                            fastinit.normal_(dt3, **kw, seed=seed)
                        assert not calls
                        check(what + " (transposed)")
                        exp_t = fastinit.normal_(torch.empty(shape[::-1]), **kw, seed=seed)
                        assert_bitwise(dt3.full_tensor(), exp_t, what + " (transposed)")
                        summary["transposed_fills"] = summary.get("transposed_fills", 0) + 1
    # without seed=: every rank draws the same key from its (equally seeded) generator
    placements = [Shard(0)] + [Shard(1)] * (mesh.ndim - 1)
    torch.manual_seed(123)
    expected = fastinit.trunc_normal_(torch.empty(7, 5))
    dt = distribute_tensor(torch.zeros(7, 5), mesh, placements)
    check = poison(dt._local_tensor)
    torch.manual_seed(123)
    with no_collectives() as calls:
        fastinit.trunc_normal_(dt)
    assert not calls
    check("unseeded")
    assert_bitwise(dt.full_tensor(), expected, "unseeded trunc_normal_")
    summary["unseeded_fills"] = summary.get("unseeded_fills", 0) + 1
    # a partial DTensor cannot be filled: a clear error, nothing written
    dt = DTensor.from_local(torch.zeros(4, 3), mesh, [Partial()] * mesh.ndim,
                            shape=torch.Size((4, 3)), stride=(3, 1))
    check = poison(dt._local_tensor)
    try:
        fastinit.normal_(dt, seed=1)
    except ValueError as e:
        assert "Partial" in str(e) or "partial" in str(e), e
    else:
        raise AssertionError("filling a Partial DTensor did not raise")
    assert dt._local_tensor.isnan().all()
    state = torch.get_rng_state()  # a refused call draws no key
    for fn in (fastinit.normal_, fastinit.xavier_uniform_, fastinit.orthogonal_):
        try:
            fn(dt)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{fn.__name__} on a Partial DTensor did not raise")
    assert torch.equal(torch.get_rng_state(), state), "a refused fill advanced the generator"
    summary["partial_refused"] = 1
    check_structured(mesh, summary)
    dist.barrier()


def _dirac_indices(shape, groups):
    """The positions of the ones of ``dirac_`` (as fastinit.init.dirac_ computes them)."""
    out_per_group = shape[0] // groups
    min_dim = min(out_per_group, shape[1])
    d = torch.arange(min_dim)
    out_idx = (torch.arange(groups)[:, None] * out_per_group + d).reshape(-1)
    in_idx = d.repeat(groups)
    centre = tuple(torch.full_like(out_idx, s // 2) for s in shape[2:])
    return (out_idx, in_idx) + centre


def check_structured(mesh, summary: dict) -> None:
    """Fills that are not a function of the global index, through fastinit.distributed's
    helpers: eye_ and dirac_ by index_put_global_ (no full-size temporary), orthogonal_
    and sparse_ by fill_full_then_shard. Also records what the public functions do on
    DTensors today (summary["public_structured"])."""
    from torch.distributed.tensor import distribute_tensor

    import fastinit
    from fastinit.distributed import copy_from_full_, fill_full_then_shard, index_put_global_

    def via_helpers(name, dt, seed):
        if name == "eye_":
            fastinit.zeros_(dt)
            d = torch.arange(min(dt.shape))
            index_put_global_(dt, (d, d), 1.0)
        elif name == "dirac_":
            fastinit.zeros_(dt)
            index_put_global_(dt, _dirac_indices(tuple(dt.shape), 2), 1.0)
        elif name == "orthogonal_":
            fill_full_then_shard(dt, lambda full: fastinit.orthogonal_(full, 0.8, seed=seed))
        elif name == "orthogonal_ (copy_from_full_)":
            copy_from_full_(dt, fastinit.orthogonal_(torch.empty(dt.shape), 0.8, seed=seed))
        else:
            fill_full_then_shard(dt, lambda full: fastinit.sparse_(full, 0.3, 0.5, seed=seed))

    def public(name, t, seed):
        kw = {"eye_": {}, "dirac_": dict(groups=2), "orthogonal_": dict(gain=0.8),
              "sparse_": dict(sparsity=0.3, std=0.5)}[name]
        return call_fill(name, t, seed, kw)

    public_outcomes = summary.setdefault("public_structured", {})
    for name, shape in (("eye_", (7, 5)), ("dirac_", (4, 6, 3)), ("orthogonal_", (7, 5)),
                        ("orthogonal_ (copy_from_full_)", (7, 5)), ("sparse_", (7, 5))):
        public_name = name.split()[0]
        if not hasattr(fastinit, public_name):
            continue
        seed = 77
        expected = public(public_name, torch.empty(shape), seed)
        for placements in placement_sets(mesh.ndim, len(shape)):
            src = None if any(type(p).__name__ == "_StridedShard" for p in placements) else 0
            if not _torch_round_trips(expected, mesh, placements, src):
                continue
            what = f"{name} {placements}"
            oracle = distribute_tensor(expected, mesh, placements, src_data_rank=src)
            dt = distribute_tensor(torch.zeros(shape), mesh, placements, src_data_rank=src)
            check = poison(dt._local_tensor)
            with no_collectives() as calls:
                via_helpers(name, dt, seed)
            assert not calls
            check(what)
            assert_bitwise(dt._local_tensor, oracle._local_tensor, what + " (local)")
            assert_bitwise(dt.full_tensor(), expected, what + " (gathered)")
            summary["structured_fills"] = summary.get("structured_fills", 0) + 1
            if name != public_name:
                continue
            # the public function, as it is today
            dt = distribute_tensor(torch.zeros(shape), mesh, placements, src_data_rank=src)
            poison(dt._local_tensor)
            try:
                with no_collectives():
                    public(name, dt, seed)
                ok = torch.equal(bits(dt._local_tensor), bits(oracle._local_tensor))
                outcome = "ok" if ok else "wrong values"
            except Exception as e:  # noqa: BLE001 - recorded, judged by the test
                outcome = f"{type(e).__name__}: {str(e)[:120]}"
            if outcome != "ok" or name not in public_outcomes:
                public_outcomes[name] = outcome


def bits(t: torch.Tensor) -> torch.Tensor:
    from tests.common import bits as _bits

    return _bits(t)


def check_guard(mesh, summary: dict) -> None:
    """The no-collective guard catches collectives of every kind (positive controls)."""
    import torch.distributed as dist
    import torch.distributed._functional_collectives as funcol
    from torch.distributed.tensor import Shard, distribute_tensor

    dt = distribute_tensor(torch.ones(8, 3), mesh, [Shard(0)] + [Shard(1)] * (mesh.ndim - 1))
    attempts = {
        "all_reduce": lambda: dist.all_reduce(torch.ones(2)),
        "barrier": lambda: dist.barrier(),
        "broadcast_object_list": lambda: dist.broadcast_object_list([1]),
        "functional all_reduce": lambda: funcol.all_reduce(torch.ones(2), "sum", mesh),
        "ProcessGroup.allreduce": lambda: dist.distributed_c10d._get_default_group()
        .allreduce([torch.ones(2)]).wait(),
    }
    if mesh.size() > 1:  # on one rank DTensor needs no collective
        attempts["full_tensor"] = lambda: dt.full_tensor()
        attempts["redistribute"] = lambda: dt.redistribute(
            mesh, [Shard(1)] * mesh.ndim).to_local()
    for what, fn in attempts.items():
        with contextlib.suppress(CollectiveCalled), no_collectives() as calls:
            fn()
        assert calls, f"the guard missed {what}"
        summary["guard_controls"] = summary.get("guard_controls", 0) + 1
    dist.barrier()


def _replicas_agree(model, mesh, names) -> int:
    """Ranks that hold the same part of a parameter hold the same bits (gathered once,
    after the init, to compare across ranks)."""
    import torch.distributed as dist
    from torch.distributed.tensor import Replicate

    mine = {}
    coord = mesh.get_coordinate()
    for n, p in model.named_parameters():
        key = tuple(c for c, pl in zip(p.device_mesh.get_coordinate(), p.placements)
                    if not isinstance(pl, Replicate))
        mine[n] = (key, bytes(p._local_tensor.contiguous().view(torch.uint8).numpy()))
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    compared = 0
    for n in names:
        groups: dict = {}
        for theirs in everyone:
            key, data = theirs[n]
            groups.setdefault(key, set()).add(data)
        assert all(len(v) == 1 for v in groups.values()), f"{n}: replicas differ ({coord})"
        compared += sum(1 for v in groups.values())
    return compared


def check_model(flow: str, meshes: dict, summary: dict) -> None:
    """torchtitan's flow: build on meta, shard (TP and/or FSDP2), allocate, init_weights
    with fastinit; and the same on a model built on the CPU (FSDP2's padded shards)."""
    from torch.distributed.tensor import DTensor

    base = 1000
    ref = Llama()
    init_weights(ref, base)
    expected = {n: p.detach().clone() for n, p in ref.named_parameters()}

    def shard(model):
        shard_model(model, meshes)

    oracle = Llama()
    oracle.load_state_dict(ref.state_dict())
    shard(oracle)  # torch's own sharding of the single-process weights
    oracle_params = dict(oracle.named_parameters())

    for build in ("meta", "cpu"):
        if build == "meta":
            with torch.device("meta"):
                model = Llama()
            shard(model)
            model.to_empty(device="cpu")
        else:
            torch.manual_seed(0)
            model = Llama()
            shard(model)
        params = dict(model.named_parameters())
        assert all(isinstance(p, DTensor) for p in params.values()), flow
        checks = {n: poison(p._local_tensor) for n, p in params.items()}
        with no_collectives() as calls:
            init_weights(model, base)
        assert not calls
        for n, p in params.items():
            what = f"{flow}/{build} {n} {p.placements}"
            checks[n](what)
            q = oracle_params[n]
            assert p.placements == q.placements, what
            assert_bitwise(p._local_tensor, q._local_tensor, what + " (local vs torch's shard)")
            assert_bitwise(p.full_tensor(), expected[n], what + " (gathered)")
            summary["model_params"] = summary.get("model_params", 0) + 1
            seen = summary.setdefault("model_placements", {}).setdefault(flow, [])
            if repr(p.placements) not in seen:
                seen.append(repr(p.placements))
            if any(hasattr(pl, "dim") and p.shape[pl.dim] % k
                   for k, pl in zip(p.device_mesh.shape, p.placements)):
                summary["uneven_model_params"] = summary.get("uneven_model_params", 0) + 1
            if p._local_tensor.untyped_storage().nbytes() > p._local_tensor.nbytes:
                # FSDP2's local tensor is the unpadded view of its padded shard: the
                # padding (NaN-poisoned) was not written (checked above)
                summary["padded_locals"] = summary.get("padded_locals", 0) + 1
        summary["replicas_compared"] = summary.get("replicas_compared", 0) + _replicas_agree(
            model, next(iter(meshes.values())), sorted(params))
        if flow == "fsdp":
            # FSDP's own all-gather sees the values: the forward equals the reference's
            tokens = torch.arange(10).remainder(VOCAB).view(2, 5)
            with torch.no_grad():
                out, ref_out = model(tokens), ref(tokens)
            assert_bitwise(out, ref_out, f"{flow}/{build} forward")
            summary["forward_checks"] = summary.get("forward_checks", 0) + 1
    summary.setdefault("flows", []).append(flow)


def check_materialize(flow: str, meshes: dict, summary: dict) -> None:
    """The FSDP2 / torchtitan flow with fastinit.materialize: build on meta, shard, then
    materialize (the model's own reset_parameters, or the torchtitan_llama recipe) with no
    collective; every gathered parameter equals the single-process materialize bitwise."""
    from fastinit.materialize import materialize

    for recipe in (None, "torchtitan_llama"):
        with torch.device("meta"):
            ref = Llama()
        materialize(ref, "cpu", seed=77, recipe=recipe)
        with torch.device("meta"):
            model = Llama()
        shard_model(model, meshes)
        with no_collectives() as calls:
            materialize(model, "cpu", seed=77, recipe=recipe)
        assert not calls, calls
        assert not any(p._local_tensor.is_meta for p in model.parameters())
        summary["materialized_params"] = summary.get("materialized_params", 0) + (
            assert_gathered_equal(model, ref, f"materialize {flow} {recipe}"))
    summary.setdefault("materialize_flows", []).append(flow)


def check_materialize_rich(flow: str, meshes: dict, summary: dict) -> None:
    """Padding rows, partial writes of sharded parameters and construction-only values:
    built on meta (the model's init re-run) and under fastinit.empty_init() (construction
    replayed), sharded, materialized with no collective: every gathered parameter equals
    the single-process materialize bitwise - what torch's own meta -> shard -> to_empty ->
    reset_parameters flow does not give (the partial writes land on temporaries)."""
    import fastinit

    for build in ("meta", "empty_init"):
        def make():
            if build == "meta":
                with torch.device("meta"):
                    return RichLlama()
            with fastinit.empty_init():
                return RichLlama(constants=True)

        ref = make()
        fastinit.materialize(ref, "cpu", seed=5)
        model = make()
        shard_model(model, meshes)
        with no_collectives() as calls:
            fastinit.materialize(model, "cpu", seed=5)
        assert not calls, calls
        assert (ref.tok_embeddings.weight[5] == 0).all()
        head = ref.output.weight
        assert head[0, 0] == 0 and (head[0, 2:] == 0).all() and (head[[0, 1, 3, 4], 1] == 0.5).all()
        summary["rich_params"] = summary.get("rich_params", 0) + (
            assert_gathered_equal(model, ref, f"rich {build} {flow}"))
        summary.setdefault("rich_builds", []).append(f"{build}/{flow}")


def worker(rank: int, world_size: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh

    summary: dict = {}
    timings = summary.setdefault("seconds", {})

    def timed(what, fn, *args):
        t0 = time.perf_counter()
        fn(*args, summary)
        timings[what] = round(time.perf_counter() - t0, 2)

    mesh = init_device_mesh("cpu", (world_size,))
    timed("guard", check_guard, mesh)
    timed("tensors", check_tensors, mesh)
    timed("fsdp", check_model, "fsdp", {"dp": mesh})
    timed("tp", check_model, "tp", {"tp": mesh})
    timed("materialize fsdp", check_materialize, "fsdp", {"dp": mesh})
    timed("materialize tp", check_materialize, "tp", {"tp": mesh})
    timed("rich fsdp", check_materialize_rich, "fsdp", {"dp": mesh})
    timed("apply_recipe fsdp", check_apply_recipe, mesh)
    timed("programs fsdp", check_programs, mesh)
    timed("programs last dim", lambda m, s: check_programs(m, s, shard="last"), mesh)
    timed("rich tp", check_materialize_rich, "tp", {"tp": mesh})
    if world_size == 4:
        mesh2 = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
        timed("tensors 2x2", check_tensors, mesh2)
        timed("fsdp_tp", check_model, "fsdp_tp", {"dp": mesh2["dp"], "tp": mesh2["tp"]})
        timed("materialize fsdp_tp", check_materialize, "fsdp_tp",
              {"dp": mesh2["dp"], "tp": mesh2["tp"]})
        timed("rich fsdp_tp", check_materialize_rich, "fsdp_tp",
              {"dp": mesh2["dp"], "tp": mesh2["tp"]})
    return summary


def check_apply_recipe(mesh, summary: dict) -> None:
    """apply_recipe on a real model sharded with FSDP2 (built on the CPU from the same torch
    seed): built-in recipes and a mapping, no collective, every gathered parameter equal to
    the single-process apply_recipe bitwise (those a mapping does not match keep their
    construction values)."""
    import fastinit
    from torch.distributed.fsdp import fully_shard

    for recipe in ("llama", "torchtitan_llama", {"*.weight": fastinit.recipes.normal(std=0.05)}):
        torch.manual_seed(0)
        ref = RichLlama()
        fastinit.apply_recipe(ref, recipe, seed=4)
        torch.manual_seed(0)
        model = RichLlama()
        fully_shard(model, mesh=mesh)
        with no_collectives() as calls:
            fastinit.apply_recipe(model, recipe, seed=4)
        assert not calls, calls
        assert all(hasattr(p, "full_tensor") for p in model.parameters())  # all sharded
        summary["recipe_params"] = summary.get("recipe_params", 0) + (
            assert_gathered_equal(model, ref, f"apply_recipe {recipe}"))


def _shard_last_dim(model: nn.Module, mesh) -> None:
    """Every parameter of two or more dimensions sharded on its last dimension, the rest
    replicated (as tensor parallelism shards linear layers' inputs)."""
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    done: dict[int, nn.Parameter] = {}  # tied parameters stay tied
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if id(p) not in done:
                placement = Shard(p.dim() - 1) if p.dim() >= 2 else Replicate()
                done[id(p)] = nn.Parameter(distribute_tensor(p.detach(), mesh, [placement]),
                                           requires_grad=p.requires_grad)
            module.register_parameter(name, done[id(p)])


def check_programs(mesh, summary: dict, count: int = 50, start: int = 0,
                   shard: str = "fsdp") -> None:
    """Randomized construction programs (tests/differential/test_construction_programs.py's generator)
    built under fastinit.empty_init(), every parameter sharded on dim 0 (``shard="fsdp"``:
    FSDP2's fully_shard on the root) or on its last dim (``"last"``, 1-d ones
    replicated), materialized with no collective: each gathered parameter
    equals the single-process materialize bitwise, and every buffer too. A program the
    single process refuses (a value read of random draws) must be refused alike."""
    import random

    import fastinit
    from torch.distributed.fsdp import fully_shard
    from tests.differential.test_construction_programs import ProgramWriter, module_class

    checked = refused = unshardable = 0
    for index in range(start, start + count):
        cls = module_class(ProgramWriter(random.Random(20_000 + index), torch_random=True).write())
        try:
            cls()
        except (RuntimeError, NotImplementedError):
            continue  # eager code fails too (a view of a channels_last tensor...)
        try:
            with fastinit.empty_init():
                ref = cls()
            fastinit.materialize(ref, "cpu", seed=9)
        except ValueError as e:
            # a value read of random draws, or a temporary nobody writes
            assert "random draws" in str(e) or (
                "computed from memory made by" in str(e) and "# unwritten" in cls.source), (
                index, cls.source, e)
            refused += 1
            continue
        with fastinit.empty_init():
            model = cls()
        try:
            if shard == "fsdp":
                fully_shard(model, mesh=mesh)
            else:
                _shard_last_dim(model, mesh)
        except NotImplementedError:  # FSDP2 refuses non-contiguous (channels_last) params
            unshardable += 1
            continue
        with no_collectives() as calls:
            try:
                fastinit.materialize(model, "cpu", seed=9)
            except NotImplementedError as e:  # legacy real tensors beside meta DTensors
                assert "entirely on meta" in str(e), (index, cls.source, e)
                unshardable += 1
                continue
        assert not calls, calls
        assert_gathered_equal(model, ref, f"program {index}\n{cls.source}\n")
        expected = dict(ref.named_buffers())
        for n, b in model.named_buffers():
            assert_bitwise(b, expected[n], f"program {index} buffer {n}\n{cls.source}")
        checked += 1
    summary["programs_checked"] = summary.get("programs_checked", 0) + checked
    summary["programs_refused"] = summary.get("programs_refused", 0) + refused
    summary["programs_unshardable"] = summary.get("programs_unshardable", 0) + unshardable


def programs_worker(rank: int, world_size: int, count: int = 40, start: int = 0,
                    shard: str = "fsdp") -> dict:
    from torch.distributed.device_mesh import init_device_mesh

    summary: dict = {}
    check_programs(init_device_mesh("cpu", (world_size,)), summary, count, start, shard)
    return summary


# --- every way in, sharded -------------------------------------------------------------------


def ways_worker(rank: int, world_size: int) -> dict:
    """Each way code reaches an init function (tests/differential/ways_in.py), on DTensors Shard(0) and
    Shard(1) of an uneven shape under patch() and patch(deferred=True), and in a model
    fully_shard-ed or tensor-parallel (colwise) after a meta build or an empty_init build
    and then materialized: the
    gathered values equal the single-process values bitwise, with no collective during
    init. Every rank computes the single-process values itself."""
    import warnings

    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor import empty as dt_empty

    import fastinit
    from tests.differential.ways_in import SHAPE, WAYS, Model, call

    mesh = init_device_mesh("cpu", (world_size,))
    summary: dict = {"patch": 0, "materialize": 0}
    for way in sorted(WAYS):
        for deferred in (False, True):
            torch.manual_seed(0)
            ref = torch.empty(SHAPE)
            with fastinit.patch(deferred=deferred):
                call(way, ref)
            for dim in (0, 1):
                dt = dt_empty(SHAPE, device_mesh=mesh, placements=[Shard(dim)])
                torch.manual_seed(0)
                with warnings.catch_warnings():
                    warnings.simplefilter("error", fastinit.TorchRNGWarning)
                    with no_collectives() as calls, fastinit.patch(deferred=deferred):
                        call(way, dt)
                assert not calls, (way, calls)
                assert_bitwise(dt.full_tensor(), ref, f"patch {way} Shard({dim}) {deferred}")
                summary["patch"] += 1
        for build in ("meta", "empty_init"):
            def make():
                if build == "meta":
                    with torch.device("meta"):
                        return Model(way)
                with fastinit.empty_init():
                    return Model(way)

            single = fastinit.materialize(make(), "cpu", seed=0).lm_head.weight.detach()
            for flow in ("fsdp", "tp"):
                model = make()
                if flow == "fsdp":
                    fully_shard(model, mesh=mesh)
                else:
                    from torch.distributed.tensor.parallel import (ColwiseParallel,
                                                                   parallelize_module)
                    parallelize_module(model, mesh, {"lm_head": ColwiseParallel()})
                with no_collectives() as calls:
                    fastinit.materialize(model, "cpu", seed=0)
                assert not calls, (way, calls)
                assert_bitwise(model.lm_head.weight.full_tensor(), single,
                               f"materialize {build} {flow} {way}")
                summary["materialize"] += 1
    return summary


def titan_worker(rank: int, world_size: int) -> dict:
    """torchtitan's Llama 3, Llama 3 with tied embeddings and DeepSeek-V3 (tiny configs of
    tests/differential/client_zoo.py), built on meta (torchtitan's flow: then its own init_states) and
    under empty_init, fully_shard-ed on every block and the root, materialized: every
    parameter (gathered) and buffer equals the single-process materialize bitwise, with no
    collective during init."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    import fastinit
    from tests.differential.client_zoo import TORCHTITAN

    mesh = init_device_mesh("cpu", (world_size,))
    summary: dict = {"models": [], "tensors": 0}
    for case in TORCHTITAN:
        for build in ("meta", "empty_init"):
            def make():
                if build == "meta":
                    with torch.device("meta"):
                        return case.build()
                with fastinit.empty_init():
                    return case.build()

            ref = fastinit.materialize(make(), "cpu", seed=0)
            model = make()
            for block in model.layers.values():
                fully_shard(block, mesh=mesh)
            fully_shard(model, mesh=mesh)
            with no_collectives() as calls:
                fastinit.materialize(model, "cpu", seed=0)
            assert not calls, (case.name, calls)
            what = f"{case.name} {build} FSDP2 x{world_size}"
            summary["tensors"] += assert_gathered_equal(model, ref, what)
            expected = dict(ref.named_buffers())
            for n, b in model.named_buffers():
                assert_bitwise(b, expected[n], f"{what} buffer {n}")
                summary["tensors"] += 1
            summary["models"].append(f"{case.name}/{build}")
    return summary


# --- the flows of issue reports: torchtitan's own FSDP, CPU offload, pipeline stages --------


def _titan_fsdp(model: nn.Module, mesh, offload: bool) -> None:
    """torchtitan's own FSDP2 wrapping (``apply_fsdp_to_decoder``: each block, the
    embedding, the norm and head, the root); with ``offload``, the same units with
    ``CPUOffloadPolicy(pin_memory=False)``: torchtitan's ``cpu_offload=True`` passes
    ``CPUOffloadPolicy()``, whose pinned memory needs an accelerator (FSDP2 pins each
    shard in ``to_empty``: "Cannot access accelerator device when none is available")."""
    if not offload:
        from torchtitan.distributed.fsdp import apply_fsdp_to_decoder

        apply_fsdp_to_decoder(model, mesh, param_dtype=torch.float32,
                              reduce_dtype=torch.float32, pp_enabled=False)
        return
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    policy = CPUOffloadPolicy(pin_memory=False)
    for unit in [model.tok_embeddings, *model.layers.values(), [model.norm, model.lm_head]]:
        fully_shard(unit, mesh=mesh, offload_policy=policy)
    fully_shard(model, mesh=mesh, offload_policy=policy)


def flows_worker(rank: int, world_size: int, models=("llama3", "dsv3"),
                 record: bool = True) -> dict:
    """torchtitan 0.3's Llama 3 and DeepSeek-V3 built on meta, sharded by torchtitan's own
    ``apply_fsdp_to_decoder``, with CPU offload (FSDP2's ``CPUOffloadPolicy``, unpinned:
    see :func:`_titan_fsdp`), and
    pipeline stages (torchtitan's split into 2 stages) with FSDP2 inside each stage:
    ``materialize`` runs no collective, every local shard lies on the CPU, and every
    gathered parameter and every buffer equals the single-process materialize bitwise.
    Every rank computes the single-process model itself. For the record, the same flows
    with torch's own init (:func:`_torch_flow`)."""
    from torch.distributed.device_mesh import init_device_mesh

    import fastinit
    from tests.differential.client_zoo import _titan_dsv3, _titan_llama3

    mesh = init_device_mesh("cpu", (world_size,))
    summary: dict = {"flows": [], "tensors": 0, "offloaded": 0}
    builds = {"llama3": lambda: _titan_llama3(False), "dsv3": _titan_dsv3}
    for model_name in models:
        build = builds[model_name]
        with torch.device("meta"):
            ref = build()
        fastinit.materialize(ref, "cpu", seed=0)
        expected = dict(ref.named_parameters())
        expected.update(ref.named_buffers())
        for flow in ("titan_fsdp", "titan_fsdp_offload", "pp2_fsdp"):
            parts = _sharded_parts(build, flow, mesh)
            for part in parts:
                with no_collectives() as calls:
                    fastinit.materialize(part, "cpu", seed=0)
                assert not calls, (model_name, flow, calls)
                for n, p in part.named_parameters():
                    what = f"{model_name} {flow} x{world_size} {n}"
                    local = p._local_tensor
                    assert local.device.type == "cpu", what
                    if flow.endswith("offload"):
                        summary["offloaded"] += 1
                    assert_bitwise(p.full_tensor(), expected[n], what)
                    summary["tensors"] += 1
                for n, b in part.named_buffers():
                    assert_bitwise(b, expected[n], f"{model_name} {flow} buffer {n}")
                    summary["tensors"] += 1
            summary["flows"].append(f"{model_name}/{flow}")
            if record:
                summary.setdefault("torch_flow", {})[f"{model_name}/{flow}"] = _torch_flow(
                    build, flow, mesh)
    return summary


def _sharded_parts(build, flow: str, mesh) -> list:
    """The meta model parts of a sharded flow: ``"pp2_fsdp"`` (two pipeline stages by
    torchtitan's own split, FSDP2 inside each), else the whole model under torchtitan's
    FSDP2 (``"titan_fsdp_offload"``: with CPU offload)."""
    from torch.distributed.fsdp import fully_shard
    from torchtitan.distributed import pipeline_parallel as pp

    if flow != "pp2_fsdp":
        with torch.device("meta"):
            model = build()
        _titan_fsdp(model, mesh, offload=flow.endswith("offload"))
        return [model]
    parts = []
    for names in pp._generate_llm_fqn_per_model_part(2, 2, 1, 1):
        with torch.device("meta"):
            stage = pp._split_module(build(), names)
        for block in stage.layers.values():
            fully_shard(block, mesh=mesh)
        fully_shard(stage, mesh=mesh)
        parts.append(stage)
    return parts


def _torch_flow(build, flow: str, mesh) -> dict:
    """For the record, torch's own flow on the same sharding: meta build, shard,
    ``to_empty``, ``torch.manual_seed(0)`` on every rank, torchtitan's ``init_states``.
    Returns how many parameters there are, how many gather to the single-process values
    of torch's flow (``matching``), how many are drawn (``random``: not a constant) and of
    those how many have the same local shard on every rank (``identical_shards``: each
    rank drew the same values for different parts of the tensor)."""
    import hashlib

    import torch.distributed as dist

    torch.manual_seed(0)
    ref = build()
    with torch.no_grad():
        torch.manual_seed(0)
        ref.init_states()
    expected = dict(ref.named_parameters())
    parts = _sharded_parts(build, flow, mesh)
    out = {"matching": 0, "identical_shards": 0, "params": 0, "random": 0}
    for part in parts:
        part.to_empty(device="cpu")
        torch.manual_seed(0)
        with torch.no_grad():
            part.init_states()
        mine = {n: hashlib.sha1(bits(p._local_tensor.contiguous()).numpy().tobytes()).hexdigest()
                for n, p in part.named_parameters()}
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        for n, p in part.named_parameters():
            out["params"] += 1
            out["matching"] += int(torch.equal(bits(p.full_tensor()), bits(expected[n])))
            if expected[n].unique().numel() > 1:  # drawn (not a constant such as ones)
                out["random"] += 1
                out["identical_shards"] += int(dist.get_world_size() > 1 and
                                               len({e[n] for e in everyone}) == 1)
    return out



def _titan_parallelized(world_size: int, model: str, backend: str):
    """(the single-process materialized model, the same model built on meta and
    parallelized by torchtitan's ``Module.parallelize``): see
    :func:`titan_parallelize_worker`."""
    import fastinit
    from torchtitan.distributed import parallel_dims as pd
    from tests.differential import client_zoo

    pd.device_type = "cpu"
    if model == "dsv3":
        from torchtitan.models import deepseek_v3 as M
        from torchtitan.models.deepseek_v3.sharding import set_deepseek_v3_sharding_config

        cls, build = M.DeepSeekV3Model.Config, client_zoo._titan_dsv3

        def configure(cfg):
            set_deepseek_v3_sharding_config(cfg, enable_sp=False, enable_ep=True)
        degrees = dict(dp_shard=world_size, tp=1, ep=world_size)
    else:
        from torchtitan.models import llama3 as M
        from torchtitan.models.llama3.sharding import set_llama3_sharding_config

        cls, build = M.Llama3Model.Config, lambda: client_zoo._titan_llama3(False)

        def configure(cfg):
            set_llama3_sharding_config(cfg, enable_sp=False)
        degrees = dict(dp_shard=1, tp=world_size, ep=1)
    dims = pd.ParallelDims(dp_replicate=1, cp=1, pp=1, world_size=world_size,
                           spmd_backend=backend, **degrees)
    dims.build_mesh()
    with torch.device("meta"):
        ref = build()
    fastinit.materialize(ref, "cpu", seed=0)
    plain_build = cls.build

    def sharded_build(cfg, *a, **k):
        configure(cfg)
        return plain_build(cfg, *a, **k)

    cls.build = sharded_build
    try:
        with torch.device("meta"):
            net = build()
    finally:
        cls.build = plain_build
    net.parallelize(dims)
    return ref, net


def titan_parallelize_worker(rank: int, world_size: int, model: str = "dsv3",
                             backend: str = "partial_dtensor") -> dict:
    """torchtitan 0.3's own config-driven parallelism (``Module.parallelize`` with
    ``ParallelDims``): DeepSeek-V3 with expert parallelism (``ep = world_size``), Llama 3
    with tensor parallelism (``tp = world_size``), sharding configs set by torchtitan's
    ``set_*_sharding_config``, on a CPU mesh (torchtitan's ``device_type`` is "cuda" when
    no accelerator is found: set to "cpu" here), built on meta, materialized with no
    collective from fastinit. Returns the collectives the init code called and, per
    parameter and buffer, its placements and whether it gathers to the single-process
    materialize bitwise. ``backend``: torchtitan's ``spmd_backend``; its default,
    ``"spmd_types"``, keeps plain local tensors (``None`` placements) that say nothing of
    where they lie in the global tensor."""
    import fastinit

    ref, net = _titan_parallelized(world_size, model, backend)
    calls: list = []
    try:
        with no_collectives(calls):
            fastinit.materialize(net, "cpu", seed=0)
    except CollectiveCalled:
        # the init code itself communicates (torchtitan's init_states re-distributes each
        # buffer it recomputes: distribute_tensor, a broadcast for Replicate); materialize
        # left the model as it was: run it again without the guard, and report the call
        fastinit.materialize(net, "cpu", seed=0)
    expected = dict(ref.named_parameters())
    expected.update(ref.named_buffers())
    out = {"collectives": calls}
    for n, p in list(net.named_parameters()) + list(net.named_buffers()):
        whole = p.full_tensor() if hasattr(p, "full_tensor") else p
        same = tuple(whole.shape) == tuple(expected[n].shape) and torch.equal(
            bits(whole), bits(expected[n]))
        out[n] = [repr(getattr(p, "placements", None)), same]
    return out



def titan_spmd_types_worker(rank: int, world_size: int, model: str = "dsv3") -> dict:
    """torchtitan's default ``spmd_backend="spmd_types"``: a sharded parameter is a plain
    local tensor that says nothing of where it lies in the whole tensor (routed experts
    ``[E / ep, ...]`` typed varying). materialize must refuse the draw into it, naming the
    backend, and leave the model as it was (every tensor still on meta); the varying
    tensors are listed from the annotation, for the test to compare with torchtitan's
    sharding config."""
    import fastinit
    from fastinit.distributed import unplaced_shard_axes

    _, net = _titan_parallelized(world_size, model, "spmd_types")
    named = list(net.named_parameters()) + list(net.named_buffers())
    out = {"varying": sorted(n for n, t in named if unplaced_shard_axes(t)), "error": None}
    try:
        fastinit.materialize(net, "cpu", seed=0)
    except NotImplementedError as e:
        out["error"] = str(e)
    out["still_meta"] = all(t.is_meta for _, t in
                            list(net.named_parameters()) + list(net.named_buffers()))
    return out
