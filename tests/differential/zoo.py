"""Acceptance harness for ``fastinit.materialize``: a model built without storage and then
materialized must be what eager construction gives, with fastinit's streams in place of
torch's.

For one builder (a function returning a fresh ``nn.Module``) the harness makes

* the reference: the model built eagerly on the CPU, once for each of ``REF_SEEDS``
  (``torch.manual_seed(s)`` before each build);
* fastinit's model: the model built in a *build mode* (``MODES``: under
  ``torch.device("meta")``, or under ``fastinit.empty_init()`` once that exists) and then
  ``fastinit.materialize(model, "cpu", seed=S)``, for ``S`` in ``MAT_SEEDS`` and once more
  with ``MAT_SEEDS[0]`` under another global RNG state;

and compares them per parameter and buffer (persistent or not), each under its first
qualified name.

Random or constant. Nothing is hard-coded: an element is *fixed by construction* when it is
bitwise equal in all reference builds (three seeds), and a tensor is *random* when any of
its elements is not fixed. Constant tensors and the fixed elements of random tensors (an
embedding's padding row, a zero bias block) must be bitwise equal in fastinit's model. A
float32 draw from a continuous law repeats under three different seeds with a probability
of the order of 2^-48 per element, so a random element is not mistaken for a fixed one (the
zoo holds no law with atoms, such as ``sparse_``'s zeros, and no 16-bit model; either would
show up as a fixed-element mismatch, not pass silently).

The law of a random tensor. fastinit's values of the non-fixed elements, pooled over the
``MAT_SEEDS`` materializations, are compared with the reference's, pooled over the
``REF_SEEDS`` builds. Pooling over seeds of the *same* tensor is what makes small tensors
testable without guessing which tensors share a law: every pooled value has that tensor's
law by construction. Each tensor must pass

* a two-sample Kolmogorov-Smirnov test, p > ``KS_ALPHA`` (scipy's exact p-values for
  small samples, so it is valid at every size; a tensor whose positions have different laws is a
  stratified sample on both sides, which only makes the test conservative);
* a tail check in both directions: with ``n`` values on one side and ``m`` on the other, all
  from one continuous law, the mass outside the range of the ``m`` values is the sum of the
  two outer spacings of ``m`` uniform order statistics, ``Beta(2, m - 1)``; so the number of
  the ``n`` values outside that range is ``BetaBinomial(n, 2, m - 1)`` exactly (the expected
  fraction is ``2 / (m + 1)``), whatever the law. A count with upper-tail probability below
  ``TAIL_ALPHA`` fails (catches values beyond a uniform bound, garbage, a wider law);
* mean and standard deviation within ``Z_MAX`` combined standard errors:
  ``SE(mean) = sqrt(s_x^2/n + s_y^2/m)``; for the standard deviation the delta method on
  ``Var(s^2) = (mu_4 - sigma^4) / n`` gives ``SE(s) = sqrt((mu_4 - s^4) / (4 s^2 n))``, with
  each side's sample fourth central moment (``SE(s)^2 = s^2 / (2n)`` for a normal law,
  ``s^2 / (5n)`` for a uniform one), combined as ``sqrt(SE_x^2 + SE_y^2)``. These plug-in
  standard errors are themselves noisy for small samples (a 6-SE bound on a Student t with
  few degrees of freedom is far from the normal 2e-9), so moments are compared only when
  both pooled samples hold at least ``MIN_MOMENT_N`` values. Smaller tensors rely on the
  exact tests above, on their fixed elements and on differing between seeds
  (``seed_errors``).

Relations. Tensors that are one object in the eager model (ties) must be one object after
materialize; tensors that share storage without being one object (views of a flat buffer)
must still share it; two distinct random tensors that are bitwise equal in every reference
build (``copy.deepcopy`` clones, as ``nn.TransformerEncoder`` makes) must be equal too.
Shapes, dtypes, strides (memory format), ``requires_grad`` and parameter/buffer kinds are
compared exactly; a forward pass on a tiny input must give finite outputs. The same seed
twice gives the same bytes (under different global RNG states), another seed changes every
random tensor and no constant one, and ``materialize(seed=...)`` leaves the caller's global
RNG state as it was.

With fixed seeds every check is deterministic; the thresholds below are defined once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

import fastinit

#: Two-sample KS: a random tensor fails when p < KS_ALPHA.
KS_ALPHA = 1e-6
#: Tail check: fails when the count of values outside the other sample's range has an
#: upper-tail probability below TAIL_ALPHA under BetaBinomial(n, 2, m - 1).
TAIL_ALPHA = 1e-6
#: Means and standard deviations: at most Z_MAX combined standard errors apart.
Z_MAX = 6.0
#: Moments are compared only when both pooled samples hold at least this many values:
#: with 49 degrees of freedom, P(|t| > 6) is about 2e-7, close to the normal 2e-9.
MIN_MOMENT_N = 50
#: Torch seeds of the eager reference builds (3: fixed elements equal under all of them).
REF_SEEDS = (11, 22, 33)
#: materialize seeds: laws are compared on both, the first is repeated for determinism.
MAT_SEEDS = (1234, 98765)
#: Global torch seeds set before building for the first and the repeated materialize of
#: MAT_SEEDS[0] (the first also for the other seeds): values depend on the materialize seed only.
GLOBAL_SEEDS = (7, 8)

Builder = Callable[[], nn.Module]
Inputs = Callable[[nn.Module], Any]


# --- build modes --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BuildMode:
    """How a model is built before ``materialize``: ``enter()`` returns the context."""

    name: str
    enter: Callable[[], contextlib.AbstractContextManager]
    skip_reason: Callable[[], str | None]


def _empty_init_context() -> contextlib.AbstractContextManager:
    return fastinit.empty_init()


MODES = (
    BuildMode("meta", lambda: torch.device("meta"), lambda: None),
    BuildMode("empty_init", _empty_init_context,
              lambda: None if hasattr(fastinit, "empty_init")
              else "fastinit.empty_init (construction recording, issue 11) does not exist yet"),
)


# --- cases ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One model: how to build it and a tiny input for its forward pass.

    ``inputs(model)`` returns keyword arguments (a dict) or positional ones (a tuple).
    """

    name: str
    build: Builder
    inputs: Inputs
    notes: str = ""


class Unstable(str):
    """An ``XFAIL`` reason whose failure depends on uninitialized memory (garbage left in a
    tensor): marked ``xfail(strict=False)``, since such an aspect may pass by chance."""


ASPECTS = ("structure", "constants", "laws", "clones", "forward", "same_seed",
           "other_seed", "global_rng")


def every_aspect(case: str, reason: str) -> dict[tuple[str, str], str]:
    """``XFAIL`` entries for a case on which materialize raises: every aspect fails."""
    return {(case, aspect): reason for aspect in ASPECTS}


def params(cases: Sequence[Case], xfails: Mapping[tuple[str, str], str]) -> list:
    """``pytest.param(case, mode, aspect)`` for every case, build mode and aspect, in that
    order (so one case's tests run together and it is built once, see ``outcome``).

    ``xfails[(case.name, aspect)]`` is a known failure of today's materialize in build mode
    ``meta``: a strict xfail, which fails once the cause is fixed (non-strict for an
    ``Unstable`` reason). Build modes that do not exist yet are skipped.
    """
    names = {c.name for c in cases}
    assert len(names) == len(cases), "case names must be unique"
    unknown = {k for k in xfails if k[1] not in ASPECTS or k[0] not in names}
    assert not unknown, f"xfail entries for unknown cases or aspects: {sorted(unknown)}"
    out = []
    for case in cases:
        for mode in MODES:
            skip = mode.skip_reason()
            for aspect in ASPECTS:
                marks = []
                if skip is not None:
                    marks.append(pytest.mark.skip(reason=skip))
                elif mode.name == "meta" and (case.name, aspect) in xfails:
                    reason = xfails[(case.name, aspect)]
                    marks.append(pytest.mark.xfail(strict=not isinstance(reason, Unstable),
                                                   reason=str(reason)))
                out.append(pytest.param(case, mode, aspect, marks=marks,
                                        id=f"{case.name}-{mode.name}-{aspect}"))
    return out


# --- snapshots -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    kind: str  # "parameter", "buffer" or "non-persistent buffer"
    shape: tuple[int, ...]
    dtype: torch.dtype
    stride: tuple[int, ...]
    requires_grad: bool
    device: str


@dataclasses.dataclass
class Snapshot:
    """Every parameter and buffer of a model, copied, under its first qualified name."""

    values: dict[str, torch.Tensor]
    info: dict[str, TensorInfo]
    aliases: set[frozenset[str]]  # names of one tensor object (ties), groups of 2+
    shared: set[frozenset[str]]  # first names of distinct tensors sharing a storage
    padding: dict[str, int]  # embedding weight name -> padding_idx


def snapshot(model: nn.Module) -> Snapshot:
    """Copy every parameter and buffer of ``model`` (state dict plus non-persistent buffers)."""
    by_id: dict[int, list[str]] = {}
    tensors: dict[int, torch.Tensor] = {}
    kinds: dict[int, str] = {}
    for prefix, mod in model.named_modules(remove_duplicate=False):
        dot = prefix + "." if prefix else ""
        for attr, t in mod._parameters.items():
            if t is not None:
                by_id.setdefault(id(t), []).append(dot + attr)
                tensors[id(t)] = t
                kinds.setdefault(id(t), "parameter")
        for attr, t in mod._buffers.items():
            if t is not None:
                by_id.setdefault(id(t), []).append(dot + attr)
                tensors[id(t)] = t
                kinds.setdefault(id(t), "non-persistent buffer"
                                 if attr in mod._non_persistent_buffers_set else "buffer")
    values, info, aliases = {}, {}, set()
    storages: dict[tuple[str, int], list[str]] = {}
    for i, names in by_id.items():
        t, first = tensors[i], names[0]
        if len(set(names)) > 1:
            aliases.add(frozenset(names))
        info[first] = TensorInfo(kinds[i], tuple(t.shape), t.dtype, tuple(t.stride()),
                                 bool(t.requires_grad), t.device.type)
        values[first] = t if t.is_meta else t.detach().to("cpu", copy=True).contiguous()
        if not t.is_meta and t.numel():
            key = (t.device.type, t.untyped_storage().data_ptr())
            storages.setdefault(key, []).append(first)
    shared = {frozenset(v) for v in storages.values() if len(v) > 1}
    padding = {}
    names_of = {id(t): by_id[id(t)][0] for t in tensors.values()}
    for mod in model.modules():
        if isinstance(mod, (nn.Embedding, nn.EmbeddingBag)) and mod.padding_idx is not None:
            padding[names_of[id(mod.weight)]] = int(mod.padding_idx)
    return Snapshot(values, info, aliases, shared, padding)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns of a tensor (for bitwise comparisons; complex: as pairs)."""
    if t.is_complex():
        return _bits(torch.view_as_real(t))
    if t.dtype == torch.bool:
        return t.to(torch.uint8)
    if not t.is_floating_point():
        return t
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(view)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise bitwise equality (NaNs with the same payload are equal)."""
    eq = _bits(a) == _bits(b)
    return eq.all(-1) if a.is_complex() else eq


# --- the reference --------------------------------------------------------------------------


@dataclasses.dataclass
class Reference:
    """The eager builds and, per tensor, the mask of elements fixed by construction."""

    snaps: list[Snapshot]
    fixed: dict[str, torch.Tensor]  # name -> bool mask (True: equal in all builds)
    model: nn.Module  # the first eager build, for its forward pass

    def is_random(self, name: str) -> bool:
        return not bool(self.fixed[name].all())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings and no transformers logging below errors (tiny configs trigger many)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        hf_logging = None
    level = hf_logging.get_verbosity() if hf_logging else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hf_logging:
            hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            if hf_logging:
                hf_logging.set_verbosity(level)


def reference(build: Builder) -> Reference:
    """Build eagerly once per ``REF_SEEDS`` seed; classify every element as fixed or not."""
    snaps, first = [], None
    with _quiet():
        for s in REF_SEEDS:
            torch.manual_seed(s)
            model = build()
            snaps.append(snapshot(model))
            first = first if first is not None else model
    fixed = {}
    for name, v in snaps[0].values.items():
        mask = torch.ones(v.shape, dtype=torch.bool)
        for other in snaps[1:]:
            mask &= same_bits(v, other.values[name])
        fixed[name] = mask
    return Reference(snaps, fixed, first)


# --- fastinit's side --------------------------------------------------------------------------


@dataclasses.dataclass
class Materialized:
    """materialize's results: ``snaps[i]`` for ``MAT_SEEDS[i]``, ``repeat`` for
    ``MAT_SEEDS[0]`` again under another global RNG state, or the error it raised."""

    snaps: list[Snapshot] = dataclasses.field(default_factory=list)
    repeat: Snapshot | None = None
    model: nn.Module | None = None
    rng_changed: bool = False
    error: BaseException | None = None
    seconds: float = 0.0


def materialize_all(build: Builder, mode: BuildMode) -> Materialized:
    """Build in ``mode`` and materialize with every seed of ``MAT_SEEDS`` (and a repeat)."""
    out = Materialized()
    runs = [(MAT_SEEDS[0], GLOBAL_SEEDS[0]), (MAT_SEEDS[0], GLOBAL_SEEDS[1])]
    runs += [(s, GLOBAL_SEEDS[0]) for s in MAT_SEEDS[1:]]
    start = time.perf_counter()
    try:
        with _quiet():
            for i, (seed, global_seed) in enumerate(runs):
                # the global state is set before the build: neither the build nor
                # materialize may let it decide a value
                torch.manual_seed(global_seed)
                with mode.enter():
                    model = build()
                before = torch.get_rng_state()
                fastinit.materialize(model, "cpu", seed=seed)
                if not torch.equal(before, torch.get_rng_state()):
                    out.rng_changed = True
                snap = snapshot(model)
                if i == 0:
                    out.model = model
                    out.snaps.append(snap)
                elif i == 1:
                    out.repeat = snap
                else:
                    out.snaps.append(snap)
    except Exception as e:  # noqa: BLE001 - reported by every test of the case
        out.error = e
    out.seconds = time.perf_counter() - start
    return out


@dataclasses.dataclass
class Outcome:
    case: Case
    mode: BuildMode
    ref: Reference
    ours: Materialized

    def require(self) -> Materialized:
        """fastinit's results, or a test failure naming the error materialize raised."""
        if self.ours.error is not None:
            e = self.ours.error
            pytest.fail(f"{self.case.name}: materialize raised {type(e).__name__}: {e}",
                        pytrace=False)
        return self.ours


def run(case: Case, mode: BuildMode) -> Outcome:
    return Outcome(case, mode, reference(case.build), materialize_all(case.build, mode))


# --- comparisons (each returns a list of failure messages; empty means it passed) ----------


def structure_errors(ref: Snapshot, ours: Snapshot) -> list[str]:
    """Names, kinds, shapes, dtypes, strides, requires_grad, devices, ties, shared storages
    and zero padding rows."""
    errs = []
    missing, extra = set(ref.info) - set(ours.info), set(ours.info) - set(ref.info)
    if missing or extra:
        errs.append(f"tensor names differ: only eager {sorted(missing)}, only ours {sorted(extra)}")
    for name in sorted(set(ref.info) & set(ours.info)):
        a, b = ref.info[name], ours.info[name]
        if b.device != a.device:
            errs.append(f"{name}: on the {b.device} device, eager on {a.device}")
            continue
        for field in ("kind", "shape", "dtype", "requires_grad"):
            if getattr(a, field) != getattr(b, field):
                errs.append(f"{name}: {field} {getattr(b, field)} != eager {getattr(a, field)}")
        # strides matter only along dimensions longer than one
        sa = tuple(s for s, n in zip(a.stride, a.shape) if n > 1)
        sb = tuple(s for s, n in zip(b.stride, b.shape) if n > 1)
        if a.shape == b.shape and sa != sb:
            errs.append(f"{name}: stride {b.stride} != eager {a.stride} (memory format lost)")
    if ref.aliases != ours.aliases:
        errs.append(f"ties differ: eager {sorted(map(sorted, ref.aliases))}, "
                    f"ours {sorted(map(sorted, ours.aliases))}")
    if ref.shared != ours.shared:
        errs.append(f"shared storages differ: eager {sorted(map(sorted, ref.shared))}, "
                    f"ours {sorted(map(sorted, ours.shared))}")
    for name, idx in ref.padding.items():
        r, o = ref.values[name][idx], ours.values.get(name)
        if o is None or o.is_meta:
            continue
        if bool((r == 0).all()) and not bool((o[idx] == 0).all()):
            errs.append(f"{name}: padding row {idx} is not zero "
                        f"(max |x| = {o[idx].abs().max().item():.3g})")
    return errs


def constant_errors(ref: Reference, ours: Sequence[Snapshot]) -> list[str]:
    """Constant tensors, and the fixed elements of random ones, bitwise equal to eager in
    every materialization (the first mismatch of each tensor is shown)."""
    errs = []
    for name, fixed in ref.fixed.items():
        r = ref.snaps[0].values[name]
        for snap in ours:
            o = snap.values.get(name)
            if o is None or o.is_meta or o.shape != r.shape or o.dtype != r.dtype:
                break  # reported by structure_errors
            bad = fixed & ~same_bits(r, o)
            if bad.any():
                where = tuple(bad.nonzero()[0].tolist())
                what = "constant tensor" if bool(fixed.all()) else "random tensor's fixed elements"
                errs.append(f"{name} ({what}, {tuple(r.shape)}): {int(bad.sum())} of "
                            f"{int(fixed.sum())} elements differ from eager; first at "
                            f"{list(where)}: {o[where].item()!r} vs eager {r[where].item()!r}")
                break
    return errs


def _as_f64(ts: Sequence[torch.Tensor]) -> np.ndarray:
    return torch.cat([t.reshape(-1).to(torch.float64) for t in ts]).numpy()


def law_errors(name: str, x: np.ndarray, y: np.ndarray) -> list[str]:
    """Does ``x`` (fastinit's values) come from the law of ``y`` (the reference's)?"""
    n, m = x.size, y.size
    if not np.isfinite(x).all():
        return [f"{name}: {int((~np.isfinite(x)).sum())} of {n} values are not finite"]
    errs = []
    res = scipy.stats.ks_2samp(x, y)
    if not res.pvalue > KS_ALPHA:
        errs.append(f"{name}: two-sample KS D = {res.statistic:.4f}, p = {res.pvalue:.2e} "
                    f"< {KS_ALPHA:g} (n = {n}, m = {m})")
    for a, b, what in ((x, y, "ours beyond eager's range"), (y, x, "eager beyond ours' range")):
        if b.size < 2:
            continue
        k = int((a < b.min()).sum() + (a > b.max()).sum())
        p = float(scipy.stats.betabinom(a.size, 2, b.size - 1).sf(k - 1))
        if not p > TAIL_ALPHA:
            errs.append(f"{name}: {k} of {a.size} values {what} [{b.min():.4g}, {b.max():.4g}]; "
                        f"expected {2 * a.size / (b.size + 1):.2f}, P(>= {k}) = {p:.2e}")
    if min(n, m) >= MIN_MOMENT_N:
        mx, my = x.mean(), y.mean()
        sx, sy = x.std(ddof=1), y.std(ddof=1)
        se_mean = math.sqrt(sx**2 / n + sy**2 / m)
        if abs(mx - my) > Z_MAX * se_mean:
            errs.append(f"{name}: mean {mx:.5g} vs eager {my:.5g}: "
                        f"{abs(mx - my) / se_mean if se_mean else math.inf:.1f} SE")

        def se_std(v: np.ndarray, s: float) -> float:
            if s == 0:
                return 0.0
            mu4 = float(((v - v.mean()) ** 4).mean())
            return math.sqrt(max(mu4 - s**4, 0.0) / (4 * s * s * v.size))

        se = math.sqrt(se_std(x, sx) ** 2 + se_std(y, sy) ** 2)
        if abs(sx - sy) > Z_MAX * se:
            errs.append(f"{name}: std {sx:.5g} vs eager {sy:.5g}: "
                        f"{abs(sx - sy) / se if se else math.inf:.1f} SE")
    return errs


def random_errors(ref: Reference, ours: Sequence[Snapshot]) -> list[str]:
    """Every random tensor's non-fixed elements: fastinit's law is the reference's."""
    errs = []
    for name, fixed in ref.fixed.items():
        if not ref.is_random(name):
            continue
        mine = [s.values.get(name) for s in ours]
        if any(t is None or t.is_meta or t.shape != fixed.shape for t in mine):
            continue  # reported by structure_errors
        free = ~fixed
        x = _as_f64([t[free] for t in mine])
        y = _as_f64([s.values[name][free] for s in ref.snaps])
        errs += law_errors(name, x, y)
    return errs


def clone_errors(ref: Reference, ours: Snapshot) -> list[str]:
    """Distinct random tensors equal in every eager build must be equal after materialize."""
    groups: dict[tuple, list[str]] = {}
    for name, v in ref.snaps[0].values.items():
        if ref.is_random(name):
            key = (tuple(v.shape), v.dtype, hash(_bits(v).numpy().tobytes()))
            groups.setdefault(key, []).append(name)
    errs = []
    for names in groups.values():
        head = names[0]
        names = [head] + [n for n in names[1:]
                          if all(bool(same_bits(s.values[head], s.values[n]).all())
                                 for s in ref.snaps)]
        if len(names) < 2:
            continue
        first = ours.values.get(names[0])
        for other in names[1:]:
            o = ours.values.get(other)
            if first is None or o is None or first.is_meta or o.is_meta:
                continue
            if not bool(same_bits(first, o).all()):
                errs.append(f"{other} equals {names[0]} in every eager build (a copy made at "
                            "construction) but differs after materialize")
    return errs


def _floats(out: Any) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(out, torch.Tensor):
        if out.is_floating_point():
            yield "", out
    elif isinstance(out, Mapping):
        for k, v in out.items():
            for p, t in _floats(v):
                yield f".{k}{p}", t
    elif isinstance(out, (tuple, list)):
        for i, v in enumerate(out):
            for p, t in _floats(v):
                yield f"[{i}]{p}", t


def forward(model: nn.Module, inputs: Any) -> Any:
    with torch.no_grad(), _quiet():
        model.eval()
        return model(**inputs) if isinstance(inputs, dict) else model(*inputs)


def forward_errors(case: Case, model: nn.Module, eager: nn.Module) -> list[str]:
    """A forward pass on the case's tiny input gives finite outputs (eager's must too)."""
    torch.manual_seed(0)
    inputs = case.inputs(eager)
    ref = dict(_floats(forward(eager, inputs)))
    assert ref, f"{case.name}: the eager forward pass returns no floating-point tensor"
    bad_ref = [k for k, t in ref.items() if not torch.isfinite(t).all()]
    assert not bad_ref, f"{case.name}: eager outputs {bad_ref} are not finite (a bad test input)"
    torch.manual_seed(0)
    out = dict(_floats(forward(model, case.inputs(model))))
    errs = [f"output{k}: {int((~torch.isfinite(t)).sum())} of {t.numel()} values not finite"
            for k, t in out.items() if not torch.isfinite(t).all()]
    if set(out) != set(ref):
        errs.append(f"outputs differ from eager's: {sorted(out)} vs {sorted(ref)}")
    return errs


def seed_errors(ref: Reference, a: Snapshot, b: Snapshot) -> list[str]:
    """Another materialize seed changes every random tensor and no constant one."""
    errs = []
    for name, fixed in ref.fixed.items():
        x, y = a.values.get(name), b.values.get(name)
        if x is None or y is None or x.is_meta or y.is_meta:
            continue
        eq = same_bits(x, y)
        if ref.is_random(name) and bool(eq[~fixed].all()):
            errs.append(f"{name}: random in eager construction, identical under two seeds")
        elif not ref.is_random(name) and not bool(eq.all()):
            errs.append(f"{name}: constant in eager construction, changes with the seed")
    return errs


def bytes_errors(a: Snapshot, b: Snapshot) -> list[str]:
    """Every tensor bitwise equal (same seed, different global RNG states)."""
    errs = []
    for name, x in a.values.items():
        y = b.values.get(name)
        if y is None or x.is_meta or y.is_meta or x.shape != y.shape:
            errs.append(f"{name}: missing or of another shape in the repeat")
            continue
        eq = same_bits(x, y)
        if not bool(eq.all()):
            errs.append(f"{name}: {int((~eq).sum())} of {x.numel()} elements differ")
    return errs


def check(outcome: Outcome, aspect: str) -> list[str]:
    """The failure messages of one aspect of a case (``ASPECTS``)."""
    ref = outcome.ref
    ours = outcome.require()
    if aspect == "structure":
        return structure_errors(ref.snaps[0], ours.snaps[0])
    if aspect == "constants":
        return constant_errors(ref, ours.snaps)
    if aspect == "laws":
        return random_errors(ref, ours.snaps)
    if aspect == "clones":
        return clone_errors(ref, ours.snaps[0])
    if aspect == "forward":
        return forward_errors(outcome.case, ours.model, ref.model)
    if aspect == "same_seed":
        return bytes_errors(ours.snaps[0], ours.repeat)
    if aspect == "other_seed":
        return seed_errors(ref, ours.snaps[0], ours.snaps[1])
    if aspect == "global_rng":
        return (["materialize(seed=...) changed the caller's global torch RNG state"]
                if ours.rng_changed else [])
    raise ValueError(f"unknown aspect {aspect!r}")


def assert_aspect(outcome: Outcome, aspect: str) -> None:
    errs = check(outcome, aspect)
    if errs:
        shown = "\n  ".join(errs[:12])
        more = f"\n  ... and {len(errs) - 12} more" if len(errs) > 12 else ""
        pytest.fail(f"{outcome.case.name} [{outcome.mode.name}] {aspect}: {len(errs)} "
                    f"failure(s):\n  {shown}{more}", pytrace=False)


#: Torch seeds of the eager builds that stand in for fastinit's side in ``eager_errors``.
STANDIN_SEEDS = (101, 202)


def value_errors(ref: Reference, ours: Sequence[Snapshot]) -> list[str]:
    """Every comparison of values and relations of two builds (``ours[0]``, ``ours[1]``:
    two seeds) with the reference: structure, constants, laws, clones, seeds."""
    return (structure_errors(ref.snaps[0], ours[0]) + constant_errors(ref, ours)
            + random_errors(ref, ours) + clone_errors(ref, ours[0])
            + seed_errors(ref, ours[0], ours[1]))


def standin_snapshots(build: Builder, seeds: Sequence[int] = STANDIN_SEEDS) -> list[Snapshot]:
    """Eager builds under other torch seeds: a correct stand-in for fastinit's side."""
    snaps = []
    with _quiet():
        for seed in seeds:
            torch.manual_seed(seed)
            snaps.append(snapshot(build()))
    return snaps


def edit(snaps: Sequence[Snapshot], name: str, fn) -> list[Snapshot]:
    """Copies of ``snaps`` with ``values[name]`` replaced by ``fn(value, index, first)``
    (``first``: the value in ``snaps[0]``): wrong stand-ins for testing the comparisons."""
    out = []
    first = snaps[0].values[name]
    for i, s in enumerate(snaps):
        values = dict(s.values)
        values[name] = fn(values[name].clone(), i, first.clone())
        out.append(Snapshot(values, s.info, s.aliases, s.shared, s.padding))
    return out


def eager_errors(case: Case, ref: Reference | None = None) -> list[str]:
    """The comparisons with eager construction itself in fastinit's place (builds under
    ``STANDIN_SEEDS``): anything reported here is a flaw of the harness or of the case,
    not of materialize. ``ref``: the case's reference, if already built."""
    ref = reference(case.build) if ref is None else ref
    return value_errors(ref, standin_snapshots(case.build))


_LAST: list = [None, None]  # (case name, mode name), Outcome: one case at a time


def outcome(case: Case, mode: BuildMode) -> Outcome:
    """The case's outcome, built once for all its aspects (``params`` keeps them together;
    only the latest case is kept, so memory stays that of one tiny model)."""
    key = (case.name, mode.name)
    if _LAST[0] != key:
        _LAST[0], _LAST[1] = None, None
        _LAST[1] = run(case, mode)
        _LAST[0] = key
    return _LAST[1]
