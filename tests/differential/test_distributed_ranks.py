"""Sharding invariance on torch.distributed: DTensor, FSDP2 and tensor-parallel shards fill
themselves at their global indices, bit-identical to a single-process fill, without
communication.

Spawned gloo processes (world sizes 1, 2, 4, 8 and a 2x2 mesh; see
tests/differential/dist_helpers.py): every fastinit fill on DTensors of awkward shapes with
every placement, FSDP2 (``fully_shard``), tensor parallelism (``parallelize_module``) and
FSDP x TP on a small Llama-shaped model built on meta (torchtitan's flow) and on the CPU.
Local tensors are NaN-poisoned (with the storage around them) before the fill; the fill runs
under a guard that raises on any collective; afterwards each local tensor is compared with
torch's own shard of the single-process result and the gathered tensor with the
single-process result, bitwise. The local-to-global map itself, in one process:
tests/test_distributed.py.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch.distributed.tensor")

import fastinit  # noqa: E402


# --- spawned gloo processes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests.differential.dist_helpers import run_workers

    cache: dict[int, list[dict]] = {}

    def get(world_size: int) -> list[dict]:
        if world_size not in cache:
            cache[world_size] = run_workers(world_size, "worker",
                                            tmp_path_factory.mktemp(f"ws{world_size}"))
        return cache[world_size]

    return get


WORLD_SIZES = [1, 2, 4]


@pytest.mark.slow
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_fills_on_dtensors_equal_single_process(runs, world_size):
    """Every fastinit fill (normal_, uniform_, trunc_normal_, xavier_*, kaiming_*,
    scaled_residual_, constant_/ones_/zeros_ when present) on DTensors of shapes (7, 5),
    (3, 10, 6), (13,), (2, 3) with every placement (Replicate, Shard on each dim and
    Shard(-1), _StridedShard) of the 1-d mesh, and normal_, trunc_normal_ and
    kaiming_uniform_ with all placement pairs of the 2x2 mesh; float32 and (normal_)
    bfloat16 and float16: the local tensor equals torch's shard of the single-process result, the
    gathered tensor equals it, nothing outside the local tensor is written, no collective
    runs. Also local tensors with padded rows inside guard bands, transposed DTensors,
    fills without seed= after the same torch.manual_seed on every rank, and a clear
    ValueError for Partial."""
    for rank, s in enumerate(runs(world_size)):
        # at least normal_/uniform_/trunc_normal_ (normal_ in 3 dtypes) x 4 shapes x
        # 6 placements on the 1-d mesh, and normal_ (3 dtypes) and trunc_normal_ x 9 to 25
        # placement pairs on the 2x2 mesh
        assert s["tensor_fills"] >= (120 if world_size < 4 else 400), (rank, s)
        assert s["strided_local_fills"] > 0 and s["transposed_fills"] > 0
        assert s["partial_refused"] == 1
        assert s["unseeded_fills"] == (2 if world_size == 4 else 1)


@pytest.mark.slow
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_structured_fills_through_helpers(runs, world_size):
    """eye_ and dirac_ (index_put_global_), orthogonal_ and sparse_ (fill_full_then_shard)
    and orthogonal_ (copy_from_full_) on DTensors of every placement equal the
    single-process fastinit results."""
    for s in runs(world_size):
        assert s["structured_fills"] >= 5 * 6


@pytest.mark.slow
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_llama_model_sharded_init_equals_single_process(runs, world_size):
    """FSDP2 (fully_shard) and tensor parallelism (torchtitan's plan), and on 4 ranks
    FSDP x TP on a 2x2 mesh: a Llama-shaped model built on meta (then to_empty) or on the
    CPU, initialized with fastinit per parameter, holds torch's shards of the
    single-process init; the gathered parameters equal it bitwise; replicated parameters
    are bitwise identical on every rank; under FSDP the forward equals the single-process
    forward."""
    flows = ["fsdp", "tp"] + (["fsdp_tp"] if world_size == 4 else [])
    n_params = 23
    for s in runs(world_size):
        assert s["flows"] == flows
        assert s["model_params"] == 2 * n_params * len(flows)
        assert s["forward_checks"] == 2
        assert s["replicas_compared"] >= s["model_params"]
        if world_size > 1:
            assert s["uneven_model_params"] > 0
        if world_size == 4:
            assert any("_StridedShard" in p for p in s["model_placements"]["fsdp_tp"])
            assert any("Replicate" in p for p in s["model_placements"]["tp"])
    if world_size == 4:  # the last rank's uneven FSDP2 shards sit in padded storage
        assert runs(world_size)[3]["padded_locals"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_materialize_sharded_model_equals_single_process(runs, world_size):
    """fastinit.materialize on a model built on meta and then fully_shard-ed,
    parallelize_module-d (torchtitan's TP plan), and on 4 ranks both on a 2x2 mesh: with
    the model's own reset_parameters and with the torchtitan_llama recipe, no collective
    runs and every gathered parameter equals the single-process materialize bitwise."""
    flows = ["fsdp", "tp"] + (["fsdp_tp"] if world_size == 4 else [])
    for s in runs(world_size):
        assert s["materialize_flows"] == flows
        assert s["materialized_params"] == 2 * 23 * len(flows)


@pytest.mark.slow
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_sharded_partial_writes_and_construction_values_equal_single_process(runs, world_size):
    """An embedding padding row, a head whose init zeroes a row, fills a column, draws a row
    again and fills a narrow slice - all on sharded parameters - and (built under
    fastinit.empty_init()) parameters made only in __init__ (torch.full, zeros with a filled
    diagonal and a partly written row, torch.rand and torch.randn draws): FSDP2, TP and on
    4 ranks FSDP x TP on a 2x2 mesh, built on meta and under empty_init: materialize runs
    no collective and every gathered parameter equals the single-process materialize
    bitwise."""
    flows = ["fsdp", "tp"] + (["fsdp_tp"] if world_size == 4 else [])
    for s in runs(world_size):
        assert s["rich_builds"] == [f"{b}/{f}" for f in flows for b in ("meta", "empty_init")]
        assert s["rich_params"] == len(flows) * (23 + 27)


@pytest.mark.slow
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_apply_recipe_on_a_sharded_model_equals_single_process(runs, world_size):
    """apply_recipe ("llama", "torchtitan_llama", a mapping) on an FSDP2-sharded real model:
    no collective, every gathered parameter equal to the single-process call bitwise."""
    for s in runs(world_size):
        assert s["recipe_params"] == 3 * 23, s


@pytest.mark.slow
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_sharded_construction_programs_equal_single_process(runs, world_size):
    """Randomized construction programs (the generator of test_construction_programs.py:
    factories, layers, ties, copies, weight_norm, partial and strided writes, value reads,
    torch.rand draws, conversions) built under empty_init, every parameter sharded on dim 0
    (FSDP2) or on its last dim: materialize runs no collective, and every gathered
    parameter and every buffer equals the single-process materialize bitwise."""
    for s in runs(world_size):
        # 2 x 50 programs; about one in five uses a temporary nobody writes (refused)
        assert s["programs_checked"] >= 2 * 28, s
        assert s["programs_unshardable"] + s["programs_refused"] <= 2 * 22, s


@pytest.mark.slow
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_no_collective_guard_catches_collectives(runs, world_size):
    """The guard the fills run under is not vacuous: all_reduce, barrier, object
    broadcast, functional all_reduce, a ProcessGroup method called directly, full_tensor
    and redistribute all trip it."""
    for s in runs(world_size):
        assert s["guard_controls"] == (5 if world_size == 1 else 7)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["eye_", "dirac_", "orthogonal_", "sparse_"])
def test_public_structured_fills_on_dtensors(runs, name):
    """fastinit.eye_/dirac_/orthogonal_/sparse_ called directly on DTensors (2 ranks)."""
    if not hasattr(fastinit, name):
        pytest.skip(f"fastinit.{name} does not exist")
    outcomes = {s["public_structured"].get(name) for s in runs(2)}
    assert outcomes == {"ok"}, outcomes


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 4])
def test_every_way_in_sharded_equals_single_process(tmp_path, world_size):
    """Bound imports, partials made at import, tables, getattr, aliases, keyword tensor=,
    tensor methods and a library helper built from them: under patch() and
    patch(deferred=True) on DTensor Shard(0) / Shard(1) (uneven), and materialized under
    FSDP2 and tensor parallelism after a meta or an empty_init build, the gathered values
    equal one process's."""
    from tests.differential.dist_helpers import run_workers
    from tests.differential.ways_in import WAYS

    for s in run_workers(world_size, "ways_worker", tmp_path):
        assert s["patch"] == len(WAYS) * 4 and s["materialize"] == len(WAYS) * 4, s


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 4])
def test_torchtitan_models_under_fsdp2_equal_single_process(tmp_path, world_size):
    """torchtitan 0.3's Llama 3 (its lm_head init is a partial made at import), Llama 3
    tied and DeepSeek-V3, built on meta or under empty_init, fully_shard-ed on every block
    and the root, then materialized: every tensor equals the single process, bitwise."""
    pytest.importorskip("torchtitan")
    from tests.differential.dist_helpers import run_workers

    for s in run_workers(world_size, "titan_worker", tmp_path, timeout=600):
        assert len(s["models"]) == 6 and s["tensors"] > 60, s


@pytest.mark.parametrize("world_size,models", [
    (2, ("llama3", "dsv3")),
    pytest.param(4, ("dsv3",), marks=pytest.mark.slow),
    pytest.param(8, ("llama3",), marks=pytest.mark.slow)])
def test_torchtitan_fsdp_offload_and_pipeline_stages_equal_single_process(tmp_path,
                                                                         world_size, models):
    """torchtitan 0.3's Llama 3 and DeepSeek-V3 (MoE) built on meta and sharded by
    torchtitan's own apply_fsdp_to_decoder, with FSDP2's CPUOffloadPolicy (unpinned: the
    pinned default needs an accelerator), and as 2 pipeline stages (torchtitan's split)
    with FSDP2 inside each, on 2, 4 (DeepSeek-V3) and 8 (Llama 3) gloo ranks:
    materialize runs no collective, the shards lie on the CPU, and every gathered
    parameter and buffer equals the single-process materialize bitwise. For the record
    (2 ranks), torch's own flow on the same meshes (seeded to_empty + init_states) gives
    every rank the same local shard of drawn parameters on a CPU mesh, so its gathered
    values are not the single process's."""
    pytest.importorskip("torchtitan")
    from tests.differential.dist_helpers import run_workers

    flows = [f"{m}/{f}" for m in models for f in ("titan_fsdp", "titan_fsdp_offload",
                                                  "pp2_fsdp")]
    # (tensors checked in the three flows, parameters offloaded), per model
    per_model = {"llama3": (19 * 3, 17), "dsv3": (31 * 3, 27)}
    record = world_size == 2  # torch's own flow at 8 ranks: bench/sharded_flows.py
    for s in run_workers(world_size, "flows_worker", tmp_path, timeout=600, models=models,
                         record=record):
        assert s["flows"] == flows, s
        assert s["tensors"] == sum(per_model[m][0] for m in models), s
        assert s["offloaded"] == sum(per_model[m][1] for m in models), s
        for flow, rec in s.get("torch_flow", {}).items():  # torch's own flow, measured
            assert rec["identical_shards"] > 0 and rec["matching"] < rec["params"], (flow, rec)
        assert record == ("torch_flow" in s)


class _Axis:
    """A stand-in for spmd_types' mesh axis (its name and size)."""

    def __init__(self, name: str, ranks: int) -> None:
        self.name, self.ranks = name, ranks

    def size(self) -> int:
        return self.ranks

    def __str__(self) -> str:
        return self.name


@pytest.mark.parametrize("kind, ranks, refused", [("V", 2, True), ("V", 1, False),
                                                  ("R", 2, False), ("P", 2, False)])
def test_a_draw_into_a_part_of_unknown_place_is_refused(kind, ranks, refused):
    import enum

    kinds = enum.Enum("LocalType", "R I V P")  # the names spmd_types' local types carry
    t = torch.zeros(4, 3)
    t._local_type = {_Axis("ep", ranks): kinds[kind]}
    if refused:
        with pytest.raises(NotImplementedError, match="varying over mesh axis ep"):
            fastinit.normal_(t)
        assert torch.equal(t, torch.zeros(4, 3))  # nothing written
    else:
        fastinit.normal_(t)
        assert bool((t != 0).all())
    fastinit.zeros_(t)  # a constant is the same on every rank: always fine
    assert torch.equal(t, torch.zeros(4, 3))


def test_torchtitan_spmd_types_shards_are_refused_not_drawn_alike(tmp_path):
    """Under torchtitan's default spmd_backend="spmd_types", DeepSeek-V3's routed experts
    are plain local tensors [E / ep, ...] typed varying over the EP mesh, with no record of
    which experts a rank holds: a draw there would give every rank the same experts (as
    torch's own flow does). materialize refuses it with NotImplementedError naming the
    backend and the way out, and leaves the model on meta; the replicated and partial
    (spmd_types R / P) tensors are not flagged."""
    pytest.importorskip("torchtitan")
    from tests.differential.dist_helpers import run_workers

    for s in run_workers(2, "titan_spmd_types_worker", tmp_path, timeout=300):
        assert [n.rsplit(".", 1)[1] for n in s["varying"]] == ["w1_EFD", "w2_EDF",
                                                               "w3_EFD"], s["varying"]
        assert s["error"] is not None and "spmd_types" in s["error"], s
        assert "partial_dtensor" in s["error"] and "(2, 32, 64)" in s["error"], s["error"]
        assert s["still_meta"]


@pytest.mark.parametrize("model", ["dsv3", pytest.param("llama3", marks=pytest.mark.slow)])
def test_torchtitan_parallelize_ep_and_tp_equal_single_process(tmp_path, model):
    """torchtitan 0.3's own config-driven parallelism (Module.parallelize, ParallelDims with
    spmd_backend="partial_dtensor", its device_type set to "cpu"), on 2 gloo ranks:
    DeepSeek-V3 with expert parallelism (routed experts Shard(0) over the EP mesh) and Llama
    3 with tensor parallelism (fused wqkv, wo, FFN, head): every gathered parameter and
    buffer equals the single-process materialize bitwise. fastinit's fills call no
    collective; under TP torchtitan's own init_states broadcasts the RoPE buffer it
    re-distributes (distribute_tensor to Replicate), which the guard reports."""
    pytest.importorskip("torchtitan")
    from tests.differential.dist_helpers import run_workers

    for s in run_workers(2, "titan_parallelize_worker", tmp_path, timeout=300, model=model):
        calls = s.pop("collectives")
        assert calls == ([] if model == "dsv3" else
                         ["torch.distributed.distributed_c10d.broadcast"]), calls
        assert all(same for _, same in s.values()), {n: v for n, v in s.items() if not v[1]}
        sharded = [n for n, (placements, _) in s.items() if "Shard" in placements]
        if model == "dsv3":
            assert sorted(n.rsplit(".", 1)[1] for n in sharded) == ["w1_EFD", "w2_EDF",
                                                                    "w3_EFD"], sharded
        else:
            assert len(sharded) == 12, sharded  # wqkv, wo, w1, w2, w3 x 2 layers, embedding, head
