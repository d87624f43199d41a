"""Every way code reaches an init function gets fastinit's values, under patch(),
patch(deferred=True), empty_init + materialize and plain meta + materialize; and a
spawned worker process gets them too. What patch() leaves to torch is reported.

The sharded half of the matrix (DTensor Shard(0) / Shard(1), FSDP2, 2 and 4 ranks) is in
tests/differential/test_distributed_ranks.py (``ways_worker``)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import fastinit
from tests.common import assert_bitwise_equal
from tests.differential.ways_in import SAME_AS_ATTRIBUTE, SHAPE, STD, WAYS, Model, call

SEED = 0


def _patched(way: str, deferred: bool) -> torch.Tensor:
    torch.manual_seed(SEED)
    w = torch.full(SHAPE, float("nan"))
    with fastinit.patch(deferred=deferred):
        call(way, w)
    return w


def _reference(way: str) -> torch.Tensor:
    """What fastinit's own function gives for the way's call (same seed)."""
    torch.manual_seed(SEED)
    w = torch.full(SHAPE, float("nan"))
    if way in SAME_AS_ATTRIBUTE:
        return fastinit.trunc_normal_(w, std=STD, a=-3 * STD, b=3 * STD)
    if way in ("alias", "method"):
        return fastinit.normal_(w, 0.0, STD)
    # the helper: fastinit's uniform_, then torch's elementwise operations
    from tests.differential.ways_in import helper_trunc_normal_

    with fastinit.patch():
        return helper_trunc_normal_(w, STD)


@pytest.mark.parametrize("deferred", [False, True], ids=["patch", "deferred"])
@pytest.mark.parametrize("way", sorted(WAYS))
def test_patch_gives_fastinits_values_for_every_way_in(way, deferred):
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastinit.TorchRNGWarning)  # nothing left to torch
        got = _patched(way, deferred)
    assert_bitwise_equal(got, _reference(way))
    if way == "helper":  # built from uniform_: not torch's own values
        torch.manual_seed(SEED)
        from tests.differential.ways_in import helper_trunc_normal_

        assert not torch.equal(got, helper_trunc_normal_(torch.empty(SHAPE), STD))


def _materialized(way: str, build: str, seed: int = 3) -> torch.Tensor:
    if build == "empty_init":
        with fastinit.empty_init():
            m = Model(way)
    else:
        with torch.device("meta"):
            m = Model(way)
    fastinit.materialize(m, "cpu", seed=seed)
    return m.lm_head.weight.detach()


@pytest.mark.parametrize("build", ["empty_init", "meta"])
def test_materialize_gives_one_value_for_every_way_in(build):
    ref = _materialized("attribute", build)
    from scipy.stats import truncnorm

    law = truncnorm(-3, 3, scale=STD).std()
    # the sample std's standard error is about law / sqrt(2 n); 5 of them
    assert abs(ref.std().item() - law) < 5 * law / (2 * ref.numel()) ** 0.5
    assert ref.abs().max().item() <= 3 * STD
    for way in SAME_AS_ATTRIBUTE:
        assert_bitwise_equal(_materialized(way, build), ref)
    # the normal ways agree with each other, and with fastinit's normal_ law
    normal = _materialized("method", build)
    assert_bitwise_equal(_materialized("alias", build), normal)
    assert not torch.equal(normal, ref)


def test_empty_init_and_meta_agree_for_every_way_in():
    for way in sorted(WAYS):
        assert_bitwise_equal(_materialized(way, "empty_init"), _materialized(way, "meta"))


def test_patch_reports_draws_it_leaves_to_torch_once_per_call_site_and_strict_raises():
    with pytest.warns(fastinit.TorchRNGWarning) as caught:
        with fastinit.patch():
            for _ in range(3):
                torch.randn(4)  # one call site, three calls
            torch.empty(5).bernoulli_(0.5)
    sites = [(w.filename, w.lineno) for w in caught if w.category is fastinit.TorchRNGWarning]
    assert len(sites) == 2 and all(f == __file__ for f, _ in sites)
    assert "randn" in str(caught[0].message) and f":{sites[0][1]}" in str(caught[0].message)
    with pytest.raises(RuntimeError, match="bernoulli_ at .*test_ways_in.py"):
        with fastinit.patch(strict=True):
            torch.empty(5).bernoulli_(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastinit.TorchRNGWarning)
        with fastinit.patch(strict=True):
            torch.nn.Linear(8, 8)  # torch's layers draw through init functions only


def test_a_spawned_worker_with_bound_imports_gets_fastinits_values(tmp_path):
    """The bound import and the partial are made when the worker imports the module,
    before patch() starts in it."""
    script = tmp_path / "spawned.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parents[2])!r})
        import torch, torch.multiprocessing as mp

        def work(q):
            import fastinit
            from tests.differential.ways_in import SHAPE, call
            out = []
            for way in ("bound_import", "partial", "attribute"):
                torch.manual_seed(0)
                w = torch.empty(SHAPE)
                with fastinit.patch():
                    call(way, w)
                out.append(w)
            q.put([w.tolist() for w in out])

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            p = ctx.Process(target=work, args=(q,))
            p.start()
            got = q.get(timeout=120)
            p.join()
            torch.save([torch.tensor(g) for g in got], sys.argv[1])
    """))
    out = tmp_path / "values.pt"
    run = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    bound, partial, attribute = torch.load(out)
    expected = _reference("attribute")
    for got in (bound, partial, attribute):
        assert_bitwise_equal(got, expected)


def test_compiled_code_inside_patch_deferred_gets_eager_values():
    """fastinit's machinery is opaque to torch.compile: a compiled function that calls an
    init function gets the values eager code gets (no tracing into fastinit)."""
    def run(compiled: bool) -> torch.Tensor:
        torch.manual_seed(SEED)
        w = torch.empty(32, 16)
        with fastinit.patch(deferred=True):
            fn = (lambda t: torch.nn.init.trunc_normal_(t, std=STD) * 2)
            if compiled:
                fn = torch.compile(fn, backend="eager")
            out = fn(w)
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Dynamo's graph-break notes
        assert_bitwise_equal(run(True), run(False))
