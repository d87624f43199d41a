"""The law check: whether each tensor's values follow the law recorded for them.

:func:`check_laws` compares each tensor's values with the law recorded for
them and its shape with the references for it, and returns :class:`fastinit.findings.Finding`
records (:func:`law_table` gives the numbers behind them):

* ``"law"``: the values of each region a law wrote (a sample of at most
  :data:`SAMPLE_MAX` elements at fixed, evenly spaced positions: positions chosen without
  looking at the values, so the sample is i.i.d. under the law) must pass a one-sample
  Kolmogorov-Smirnov test at level :data:`KS_ALPHA` (critical distance from the
  Dvoretzky-Kiefer-Wolfowitz-Massart bound ``sqrt(ln(2/alpha) / (2n))``, valid at every
  ``n``; for 16-bit dtypes the law's CDF is taken at the rounding boundaries of each value,
  so rounding is not mistaken for a departure), have mean and standard deviation within
  :data:`Z_MAX` standard errors of the law's (``SE(mean) = sigma/sqrt(n)``,
  ``SE(std) = sqrt((mu4 - sigma^4) / (4 sigma^2 n))``, plus the largest shift rounding to
  the dtype can make), lie within the law's bounds (every element, not a sample), be
  finite; a constant region must hold exactly its constant. ``KS_ALPHA`` and ``Z_MAX`` are
  those of the test suite (``fastinit.cli.laws``): about 1.6e-6 false alarms per region.
* ``"fan"``: a drawn matrix or convolution weight whose std exceeds
  :data:`FAN_FACTOR` times He's ``sqrt(2 / fan)`` with the *smaller* of its two fans -
  wider than every standard scheme (LeCun, Xavier with ReLU gain, He on either fan), so
  each such layer multiplies the variance of a signal by more than 4 per layer.
  Embeddings are exempt (their input is one-hot: a row is the output).
* ``"siblings"``: tensors with the same role in different layers (names equal once the
  layer indices are replaced by ``*``, at least 3 of them) whose std differs from their
  median by more than :data:`SIBLING_FACTOR` (an order of magnitude: deliberate depth
  schemes - GPT-2's ``1/sqrt(2L)``, torchtitan's per-layer ``1/sqrt(2(l+1))`` - spread
  the std by at most ``sqrt(L)`` around the median, below 10 for L <= 100), or that are a
  constant where the others are drawn.
* ``"scale"``: a drawn matrix or embedding whose std is more than :data:`SCALE_FACTOR`
  times the median std of the model's drawn matrices and embeddings (at least 4 of them):
  a tensor an init loop missed (it kept a default) or gave a wrong std. The documented
  exception: models that put their embedding at std 1 on purpose (T5 ties it to a head
  rescaled by ``d**-0.5``; a model of torch's default layers with an ``nn.Embedding``,
  N(0, 1), next to ``Linear`` layers at ``1/sqrt(3 fan_in)``) are flagged, with the reason.
* ``"tie"``: a tensor recorded as tied to another that no longer shares its memory.
* ``"unmatched-rule"``: a recipe rule (a glob of a mapping recipe) that matched no
  parameter; ``materialize`` and ``apply_recipe`` warn about it and record it here.

Re-exported by :mod:`fastinit.provenance`.
"""
from __future__ import annotations

import math
import re
import statistics
import weakref
from typing import Optional

import torch
from torch import nn

from fastinit import laws
from fastinit.findings import Finding
from fastinit.kernels import contract as C
from fastinit.records import Write, _effective, _fmt, _named, _Record, _record_of
from fastinit.sessions import _CLOSED, _geometry

__all__ = ["law_table", "check_laws", "SAMPLE_MAX", "KS_ALPHA", "Z_MAX", "FAN_FACTOR",
           "SIBLING_FACTOR", "SCALE_FACTOR", "MIN_MOMENT_N"]

#: Level of the Kolmogorov-Smirnov test, and standard errors allowed for a moment: the
#: test suite's (``fastinit.cli.laws``; the tests check they agree).
KS_ALPHA = 1e-6
Z_MAX = 5.0
#: Most elements of one region the law check reads (evenly spaced positions).
SAMPLE_MAX = 1 << 16
#: A drawn weight wider than this many times He's std with its smaller fan is flagged.
FAN_FACTOR = 2.0
#: Siblings (the same tensor in other layers) further than this factor from their median.
SIBLING_FACTOR = 10.0
#: A matrix or embedding wider than this many times the model's median std.
SCALE_FACTOR = 10.0
#: Moments are compared only on regions of at least this many elements (the KS test,
#: the bounds and constants are checked at every size).
MIN_MOMENT_N = 50

# --- the law check -------------------------------------------------------------------------


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0)) if math.isfinite(x) else (0.0 if x < 0 else 1.0)


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0


def _moments(params) -> Optional[tuple[float, float, float]]:
    """(mean, variance, 4th central moment) of a kernel law (None: constant)."""
    if params.dist == C.NORMAL:
        s = params.scale
        return params.shift, s * s, 3 * s ** 4
    if params.dist == C.UNIFORM:
        w = params.scale
        return params.shift + w / 2, w * w / 12, w ** 4 / 80
    if params.dist == C.TRUNC_NORMAL:
        mu, s = params.shift, params.scale
        alpha, beta = (params.lo - mu) / s, (params.hi - mu) / s
        z = _phi(beta) - _phi(alpha)
        # raw moments of the standard normal truncated to [alpha, beta]:
        # m_k = (k - 1) m_{k-2} + (alpha^(k-1) phi(alpha) - beta^(k-1) phi(beta)) / Z
        m = [1.0]
        for k in range(1, 5):  # at k = 1 the first term is 0 (m[k - 2] is m[0] there)
            ta = alpha ** (k - 1) * _pdf(alpha) if math.isfinite(alpha) else 0.0
            tb = beta ** (k - 1) * _pdf(beta) if math.isfinite(beta) else 0.0
            m.append((k - 1) * m[k - 2] + (ta - tb) / z)
        m1, m2, m3, m4 = m[1:]
        c2 = m2 - m1 * m1
        c4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1 ** 4
        return mu + s * m1, s * s * c2, s ** 4 * c4
    return None


def _cdf(params, x: torch.Tensor) -> torch.Tensor:
    if params.dist == C.NORMAL:
        return torch.special.ndtr((x - params.shift) / params.scale)
    if params.dist == C.UNIFORM:
        return ((x - params.shift) / params.scale).clamp(0.0, 1.0)
    mu, s = params.shift, params.scale
    pa, pb = _phi((params.lo - mu) / s), _phi((params.hi - mu) / s)
    return ((torch.special.ndtr((x - mu) / s) - pa) / (pb - pa)).clamp(0.0, 1.0)


def _law_std(params) -> Optional[float]:
    if params.dist == C.CONSTANT:
        return 0.0
    m = _moments(params)
    return math.sqrt(m[1]) if m else None


_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _rounding_cells(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """[low, high] of the real numbers that round to each value of ``x`` (a 16-bit
    dtype's values as float64): half-way to the neighbouring values."""
    v = x.to(dtype)
    bits = v.view(_INT[dtype])
    up = torch.where(v >= 0, bits + 1, bits - 1)
    down = torch.where(v > 0, bits - 1, bits + 1)
    zero = v == 0
    tiny = torch.tensor(1, dtype=_INT[dtype]).view(dtype).to(torch.float64)
    hi = torch.where(zero, tiny, up.view(dtype).to(torch.float64))
    lo = torch.where(zero, -tiny, down.view(dtype).to(torch.float64))
    return (x + lo) / 2, (x + hi) / 2


def _values(t: torch.Tensor) -> torch.Tensor:
    """``t``'s elements in memory order (a dense tensor), 1-D."""
    t = t.detach()
    if type(t).__name__ == "DTensor":
        t = t.to_local()
    if t.is_contiguous():
        return t.reshape(-1)
    return t.as_strided((t.numel(),), (1,), t.storage_offset() - _lowest(t))


def _lowest(t: torch.Tensor) -> int:
    return sum((n - 1) * s for n, s in zip(t.shape, t.stride()) if s < 0)


def _sample(flat: torch.Tensor, segments) -> tuple[torch.Tensor, int]:
    total = sum(hi - lo for lo, hi in segments)
    step = max(1, -(-total // SAMPLE_MAX))
    parts = [flat[lo:hi:step] for lo, hi in segments]
    x = torch.cat(parts) if len(parts) > 1 else parts[0]
    return x.to(device="cpu", dtype=torch.float64), total


def _check_region(name: str, t: torch.Tensor, w: Write, params, dtype, segments) -> list[Finding]:
    """The law check of one region of ``t`` (see the module documentation): its findings."""
    flat = _values(t)
    x, total = _sample(flat, segments)
    n = x.numel()
    if n == 0:
        return []
    where = f" ({w.caller} at {w.location})" if w.location else (
        f" ({w.caller})" if w.caller else "")
    law = w.describe()
    out = []
    if not math.isfinite(float(x.sum())):  # NaN or inf anywhere makes the sum so
        return [Finding(name, "law", f"holds NaN or inf where {law}{where} wrote finite "
                        "values: written after the init, or garbage")]
    if params.dist == C.CONSTANT:
        wrong = int((x != params.shift).sum())
        if wrong:
            out.append(Finding(name, "law", f"{wrong} of {n} sampled elements "
                               f"differ from the constant {_fmt(params.shift)} that "
                               f"{law}{where} wrote", observed=float(x.std()) if
                               n > 1 else None, expected=0.0))
        return out
    if params.clamp:  # every element within the law's bounds, not only the sample
        bounds = [torch.aminmax(flat[a:b]) for a, b in segments]
        lo = min(float(b.min) for b in bounds)
        hi = max(float(b.max) for b in bounds)
        if lo < params.lo or hi > params.hi:
            out.append(Finding(name, "law", f"values in [{lo:.6g}, {hi:.6g}] outside the "
                               f"bounds [{params.lo:.6g}, {params.hi:.6g}] of {law}{where}"))
    mean, var, mu4 = _moments(params)
    sigma = math.sqrt(var)
    if dtype in _INT:
        low, high = _rounding_cells(x, dtype)
        half = (high - low) / 2
        bias = float(half.abs().max())  # rounding moves a value by at most half a cell
        rms = float(half.pow(2).mean().sqrt())
    else:
        low = high = x
        bias = rms = 0.0
    s, m = (float(v) for v in torch.std_mean(x, correction=0)) if n > 1 else (0.0, float(x[0]))
    if n >= MIN_MOMENT_N and sigma > 0:
        se_m = sigma / math.sqrt(n)
        se_s = math.sqrt(max(mu4 - var * var, 0.0) / (4 * var * n))
        if abs(m - mean) > Z_MAX * se_m + bias:
            out.append(Finding(name, "law", f"mean {m:.4g} is {abs(m - mean) / se_m:.1f} "
                               f"standard errors from {mean:.4g}, the mean of {law}{where} "
                               f"(> {Z_MAX:g}): the values were changed after it",
                               observed=m, expected=mean))
        if abs(s - sigma) > Z_MAX * se_s + rms:
            out.append(Finding(name, "law", f"std {s:.4g} is {abs(s - sigma) / se_s:.1f} "
                               f"standard errors from {sigma:.4g}, the std of {law}{where} "
                               f"(> {Z_MAX:g}): the values were changed after it",
                               observed=s, expected=sigma))
    if low is x:
        xs = lows = highs = torch.sort(x).values
    else:
        xs, order = torch.sort(x)
        lows, highs = low[order], high[order]
    fn_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    fn_lo = fn_hi - 1.0 / n
    cdf_hi = _cdf(params, highs)
    cdf_lo = cdf_hi if lows is highs else _cdf(params, lows)
    if params.clamp:  # the clamped values carry the mass beyond the bounds
        cdf_hi = torch.where(xs >= params.hi, torch.ones_like(cdf_hi), cdf_hi)
        cdf_lo = torch.where(xs <= params.lo, torch.zeros_like(cdf_lo), cdf_lo)
    d = max(float((fn_hi - cdf_hi).max()), float((cdf_lo - fn_lo).max()), 0.0)
    crit = math.sqrt(math.log(2 / KS_ALPHA) / (2 * n))
    if d > crit:
        out.append(Finding(name, "law", f"the values do not follow {law}{where}: "
                           f"Kolmogorov-Smirnov distance {d:.3g} > {crit:.3g} (level "
                           f"{KS_ALPHA:g}, {n} of {total} elements)", observed=d,
                           expected=crit))
    return out


def _kind(model: nn.Module, name: str, shape: tuple) -> str:
    owner_name, _, _ = name.rpartition(".")
    try:
        owner = model.get_submodule(owner_name) if owner_name else model
    except AttributeError:
        owner = None
    if owner is not None and (isinstance(owner, nn.Embedding)
                              or "Embedding" in type(owner).__name__) and len(shape) == 2:
        return "embedding"
    return {0: "scalar", 1: "vector", 2: "matrix"}.get(len(shape), "conv")


def _shape_refs(kind: str, fan_in, fan_out) -> dict:
    if fan_in is None or not fan_in or not fan_out:
        return {}
    refs = {"lecun": laws.variance_scaling_std(fan_in, fan_out, 1.0, "fan_in"),
            "xavier": laws.xavier_std(fan_in, fan_out),
            "he": laws.kaiming_std(fan_in, fan_out, laws.calculate_gain("relu"))}
    if kind == "embedding":
        refs["unit"] = 1.0
    return refs


_ANALYSED: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _analyse(model: nn.Module):
    """(law table, findings) of ``model``; kept until a tensor changes (its memory, or
    autograd's version counter, which every in-place write moves)."""
    record = _record_of(model)
    named = _named(model)
    key = (record.generation, _CLOSED[0], tuple(
        (id(t), t._version, t.data_ptr() if t.device.type != "meta" else 0) for _, t in named))
    cached = _ANALYSED.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small reductions: threads only add their hand-offs
    try:
        result = _analyse_now(model, record, dict(named))
    finally:
        torch.set_num_threads(threads)
    _ANALYSED[model] = (key, result)
    return result


def _analyse_now(model: nn.Module, record: "_Record", tensors: dict):
    rows, findings = [], []
    for name, tensor in record.tensors.items():
        t = tensors.get(name)
        if t is None or name in record.ties:
            continue
        _, segments, known = _effective(tensor)
        owners = sorted({k for _, _, k in segments})
        shape = tuple(t.shape)
        fan_in, fan_out = laws.shape_fans(shape)
        kind = _kind(model, name, shape)
        row = {"name": name, "shape": list(shape), "dtype": str(t.dtype).replace("torch.", ""),
               "kind": kind, "law": None, "writes": len(tensor.entries),
               "observed_mean": None, "observed_std": None, "expected_std_law": None,
               "expected_std_shape": _shape_refs(kind, fan_in, fan_out),
               "fan_in": fan_in, "fan_out": fan_out, "caller": None, "location": None,
               "checked": False}
        if owners:
            # the law of the tensor: the one owning most of its elements
            sizes = {}
            for lo, hi, k in segments:
                sizes[k] = sizes.get(k, 0) + hi - lo
            main = tensor.entries[max(sizes, key=sizes.get)]
            row.update(law=main.write.law, caller=main.write.caller,
                       location=main.write.location)
            if main.kernel is not None and known:
                row["expected_std_law"] = _law_std(main.kernel[0])
        if t.dtype.is_floating_point and t.numel() and t.device.type != "meta":
            v = t.detach().to_local() if type(t).__name__ == "DTensor" else t.detach()
            v = v.reshape(-1)
            step = max(1, -(-v.numel() // SAMPLE_MAX))
            v = v[::step].to(device="cpu", dtype=torch.float64)
            row["observed_mean"] = float(v.mean())
            row["observed_std"] = float(v.std(unbiased=False)) if v.numel() > 1 else 0.0
        if known and t.dtype.is_floating_point and t.device.type != "meta" and (
                shape == tensor.shape and t.dtype == tensor.dtype):
            checkable = [k for k in owners if tensor.entries[k].kernel is not None]
            for k in checkable:
                segs = [(lo, hi) for lo, hi, j in segments if j == k]
                findings += _check_region(name, t, tensor.entries[k].write,
                                          *tensor.entries[k].kernel, segs)
            row["checked"] = bool(owners) and len(checkable) == len(owners)
        elif known and shape != tensor.shape:
            findings.append(Finding(name, "law", f"shape {shape} is not the shape "
                                    f"{tensor.shape} its recorded writes were made to: the "
                                    "tensor was replaced after its init"))
        rows.append(row)
    findings += _shape_findings(rows)
    for alias, source in record.ties.items():
        a, b = tensors.get(alias), tensors.get(source)
        if a is not None and b is not None and a is not b and (
                _geometry(a) is None or _geometry(a) != _geometry(b)):
            findings.append(Finding(alias, "tie", f"recorded as tied to {source}, but it no "
                                    "longer shares its memory: the tie was broken after the "
                                    "init"))
    for glob, recipe in dict.fromkeys(record.unmatched):
        findings.append(Finding(glob, "unmatched-rule", f"rule {glob!r} of recipe {recipe!r} "
                                "matched no parameter: the init it names was not applied"))
    return rows, findings


def _drawn(row: dict) -> bool:
    return (row["law"] not in (None, "constant", "copy") and row["observed_std"] is not None
            and row["observed_std"] > 0)


_INDEX = re.compile(r"(?<![^.])\d+(?=\.)")  # a layer index: a whole dotted component


def _shape_findings(rows: list[dict]) -> list[Finding]:
    out = []
    for row in rows:  # fan: wider than every standard scheme
        refs = row["expected_std_shape"]
        if row["kind"] in ("matrix", "conv") and _drawn(row) and refs:
            widest = laws.kaiming_std(row["fan_in"], row["fan_out"], laws.calculate_gain("relu"),
                                      "fan_in" if row["fan_in"] <= row["fan_out"] else "fan_out")
            if row["observed_std"] > FAN_FACTOR * widest:
                out.append(Finding(
                    row["name"], "fan", f"std {row['observed_std']:.4g} is "
                    f"{row['observed_std'] / widest:.1f}x He's sqrt(2/fan) with its smaller "
                    f"fan ({min(row['fan_in'], row['fan_out'])}), wider than any standard "
                    f"scheme (> {FAN_FACTOR:g}x): every pass through it multiplies the "
                    "signal's variance", observed=row["observed_std"],
                    expected=refs.get("he")))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        key = _INDEX.sub("*", row["name"])
        if key != row["name"] and row["observed_std"] is not None:
            groups.setdefault(key, []).append(row)
    for key, members in groups.items():
        drawn = [r for r in members if _drawn(r)]
        if len(members) < 3 or not drawn:
            continue
        median = statistics.median(r["observed_std"] for r in drawn)
        for r in members:
            std = r["observed_std"]
            if r["law"] == "constant" and len(drawn) > len(members) / 2:
                out.append(Finding(r["name"], "siblings", f"a constant where most of its "
                                   f"siblings ({key}) are drawn (median std {median:.4g})",
                                   observed=std, expected=median))
            elif _drawn(r) and (std > SIBLING_FACTOR * median or std * SIBLING_FACTOR < median):
                out.append(Finding(r["name"], "siblings", f"std {std:.4g} is "
                                   f"{max(std / median, median / std):.1f}x from the median "
                                   f"{median:.4g} of its siblings {key} "
                                   f"(> {SIBLING_FACTOR:g}x)", observed=std, expected=median))
    wide = [r for r in rows if r["kind"] in ("matrix", "embedding") and _drawn(r)]
    if len(wide) >= 4:
        median = statistics.median(r["observed_std"] for r in wide)
        for r in wide:
            if r["observed_std"] > SCALE_FACTOR * median:
                what = (" (an embedding at N(0, 1) is torch's nn.Embedding default: the "
                        "model's init did not reach it, or set it so)"
                        if r["kind"] == "embedding" else "")
                out.append(Finding(r["name"], "scale", f"std {r['observed_std']:.4g} is "
                                   f"{r['observed_std'] / median:.0f}x the median std "
                                   f"{median:.4g} of the model's matrices "
                                   f"(> {SCALE_FACTOR:g}x){what}; its law: {r['law']} from "
                                   f"{r['caller']}", observed=r["observed_std"],
                                   expected=median))
    return out


def law_table(model: nn.Module) -> list[dict]:
    """Per parameter and buffer of ``model`` (tied names once, under their source): its
    name, shape, dtype, kind (``"matrix"``, ``"conv"``, ``"embedding"``, ``"vector"``,
    ``"scalar"``), the law of its last effective write (the one owning most of its
    elements; None if nothing was recorded), the init code behind it (``caller``,
    ``location``), the observed mean and std, the std of the recorded law
    (``expected_std_law``), the references for its shape (``expected_std_shape``:
    ``lecun`` 1/sqrt(fan_in), ``xavier`` sqrt(2/(fan_in+fan_out)), ``he`` sqrt(2/fan_in);
    ``unit`` 1 for embeddings), ``fan_in`` / ``fan_out`` (torch's convention), and whether
    its values were checked against the law (``checked``).

    Raises:
        TypeError, ValueError: as :func:`provenance`.
    """
    return [dict(r) for r in _analyse(model)[0]]


def check_laws(model: nn.Module) -> list[Finding]:
    """Check ``model``'s values against their recorded laws and its shapes against the
    references (every check and its threshold: :mod:`fastinit.lawcheck`).

    Returns:
        the findings (empty when nothing is flagged): checks ``"law"``, ``"fan"``,
        ``"siblings"``, ``"scale"``, ``"tie"``, ``"unmatched-rule"``.

    Raises:
        TypeError, ValueError: as :func:`provenance`.

    Examples:
        >>> fastinit.materialize(model, "cpu", seed=0)
        >>> for f in fastinit.provenance.check_laws(model):
        ...     print(f.name, f.check, f.message)
    """
    return list(_analyse(model)[1])
