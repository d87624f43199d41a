"""mean_resize_embeddings_ (fastinit.embeddings): new token embeddings from the old ones.

Against transformers' ``resize_token_embeddings(..., mean_resizing=True)`` step
(``_init_added_embeddings_weights_with_mean``): the mean exact to float32 rounding, the
spread that of ``1e-9 * covariance``; bad rows: clear errors, nothing written.
"""
from __future__ import annotations

import math

import pytest
import torch

import fastinit
from tests.common import assert_bitwise_equal
from tests.sample_checks import same_law_errors
from tests.stats_helpers import Z_MAX


SEED = 1234


def transformers_mean_resize(old: torch.Tensor, added: int, seed: int) -> torch.Tensor:
    """transformers' own step, on an nn.Embedding of the old rows; returns the new rows."""
    transformers = pytest.importorskip("transformers")
    old_emb = torch.nn.Embedding.from_pretrained(old.clone())
    new_emb = torch.nn.Embedding(old.shape[0] + added, old.shape[1], dtype=old.dtype)
    torch.manual_seed(seed)
    # the method uses nothing of the model it is bound to
    transformers.PreTrainedModel._init_added_embeddings_weights_with_mean(
        None, old_emb, new_emb, old.shape[0], added)
    return new_emb.weight.detach()[-added:]


def correlated_rows(n: int, d: int, seed: int) -> torch.Tensor:
    """Embedding-like rows with a non-trivial mean and covariance. As in trained
    embeddings the mean is small next to the spread, so that float32's resolution at the
    mean stays far below the 1e-9-scaled spread of the new rows (which sampling tests)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    mean = 0.01 * torch.randn(d, generator=g, dtype=torch.float64)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix * 0.05 + mean).float()


def test_mean_resize_matches_transformers_when_covariance_is_positive_definite():
    n, d, added = 4000, 24, 6000
    old = correlated_rows(n, d, 0)
    w = torch.cat([old, torch.full((added, d), float("nan"))])
    fastinit.mean_resize_embeddings_(w, n, seed=SEED)
    assert torch.equal(w[:n], old)  # old rows untouched
    new = w[n:].double()
    theirs = transformers_mean_resize(old, added, 0).double()
    assert theirs.std(0).min() > 0  # transformers sampled (its covariance was PD) ...
    assert new.std(0).min() > 0     # ... and so did we
    o = old.double()
    mu = o.mean(0)
    cov = (o - mu).T @ (o - mu) / n * fastinit.init.MEAN_RESIZE_EPSILON
    # mean: within Z_MAX standard errors of the old rows' mean (SE from eps * cov)
    se = (torch.diagonal(cov) / added).sqrt()
    z = (new.mean(0) - mu) / se
    assert z.abs().max() <= Z_MAX, z
    # spread: the variance along fixed directions is v' (eps cov) v, within Z_MAX SE
    g = torch.Generator().manual_seed(1)
    dirs = torch.randn(8, d, generator=g, dtype=torch.float64)
    dirs = torch.cat([dirs, torch.linalg.eigh(cov).eigenvectors[:, [0, -1]].T])
    for v in dirs:
        proj = (new - mu) @ v
        target = float(v @ cov @ v)
        se_var = target * math.sqrt(2.0 / (added - 1))  # normal law
        assert abs(float(proj.var()) - target) <= Z_MAX * se_var
        # and the same law as transformers' samples
        assert not same_law_errors((new - mu) @ v, (theirs - mu) @ v, "projection")


def test_mean_resize_falls_back_to_the_mean_like_transformers():
    n, d, added = 16, 40, 5  # fewer rows than columns: the covariance is singular
    old = correlated_rows(n, d, 2)
    w = torch.cat([old, torch.full((added, d), float("nan"))])
    fastinit.mean_resize_embeddings_(w, n, seed=SEED)
    exact = old.double().mean(0)
    assert_bitwise_equal(w[n:], exact.float().expand(added, d).contiguous())
    theirs = transformers_mean_resize(old, added, 0)
    assert (theirs == theirs[0]).all()  # transformers took the same branch
    # transformers' float32 mean differs from the correctly rounded one only by its
    # summation error: at most n * u * mean |x| per column (u = 2^-24)
    bound = n * 2.0 ** -24 * old.double().abs().mean(0)
    assert ((theirs[0].double() - w[n].double()).abs() <= bound).all()


def test_mean_resize_reproducible_dtypes_and_no_op():
    old = correlated_rows(300, 8, 3)
    a = torch.cat([old, torch.empty(20, 8)])
    b = a.clone()
    fastinit.mean_resize_embeddings_(a, 300, seed=9)
    fastinit.mean_resize_embeddings_(b, 300, seed=9)
    assert_bitwise_equal(a, b)
    g, h = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    c, e = a.clone(), a.clone()
    fastinit.mean_resize_embeddings_(c, 300, generator=g)
    fastinit.mean_resize_embeddings_(e, 300, generator=h)
    assert_bitwise_equal(c, e)
    assert not torch.equal(c, a)
    bf = torch.cat([old, torch.empty(20, 8)]).to(torch.bfloat16)
    fastinit.mean_resize_embeddings_(bf, 300, seed=9)
    assert torch.isfinite(bf.float()).all()
    before = a.clone()
    fastinit.mean_resize_embeddings_(a, a.shape[0], seed=1)  # no new rows: no-op
    assert_bitwise_equal(a, before)


def test_mean_resize_deferred_reads_the_final_old_rows():
    """Under patch(deferred=True) the old rows' own fill is still pending when the call is
    made: the new rows must come from the values eager execution would have read."""
    def build():
        w = torch.empty(200, 8)
        fastinit.normal_(w, 0.5, 2.0, seed=1)
        return fastinit.mean_resize_embeddings_(w, 150, seed=2)

    eager = build()
    with fastinit.patch(deferred=True):
        deferred = build()
    assert_bitwise_equal(deferred, eager)


@pytest.mark.parametrize("rows,exc,match", [
    (0, ValueError, r"in \[1, 10\]"), (11, ValueError, r"in \[1, 10\]"),
    (-1, ValueError, r"in \[1, 10\]"), (2.0, TypeError, "int"), (True, TypeError, "int"),
])
def test_mean_resize_bad_rows_write_nothing(rows, exc, match):
    w = torch.full((10, 4), float("nan"))
    state = torch.get_rng_state()
    with pytest.raises(exc, match=match):
        fastinit.mean_resize_embeddings_(w, rows)
    assert torch.isnan(w).all()
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(ValueError, match="2-D"):
        fastinit.mean_resize_embeddings_(torch.empty(10), 5)
