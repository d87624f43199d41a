"""``fastinit check``: fastinit's distributions against their exact laws, with pictures.

For every case (uniform, normal and a battery of truncated normals) and every output
dtype (float32, bfloat16, float16, float64), ``n`` values are drawn with a fixed seed (on
the CPU by default; ``device="cuda"`` checks the GPU kernels) and compared with the exact
law:

* **Kolmogorov-Smirnov**: the distance D between the empirical CDF and the exact one, and
  its p-value; the check fails when p < ``KS_ALPHA`` = 1e-6, i.e. when D exceeds
  ``D_crit = kstwo.isf(1e-6, n)`` (2.69e-3 for n = 10^6).
* **Moments**: the sample mean and variance within ``Z_MAX`` = 5 standard errors of the
  exact ones (SE(mean) = sigma / sqrt(n), SE(variance) = sqrt((mu4 - sigma^4) / n), mu4 the
  exact 4th central moment).
* **Bounds**: every value inside the documented range ([a, b) for uniform, [a, b] for the
  truncated normal, finite for the normal).

float32 and float64 values are compared with the continuous law. bfloat16 and float16
values are compared with the exact law of the *rounded* values: the value s_k of the dtype
gets the probability mass between the midpoints around it, and the mass that rounds outside
the support is clamped onto the end points. For those dtypes the check also requires every
value to be a value of the support, and the count on each end point to be within 5 binomial
standard errors of its exact mass (this catches values piling up on a bound). Their KS
p-value is that of the continuous statistic, which is conservative for a discrete law.

The reference laws and the thresholds are :mod:`fastinit.cli.laws`, shared with the test
suite (``tests/test_statistics.py``); since every draw uses a fixed seed, the report is
reproducible bit for bit. scipy's distributions are used only to draw the reference curves
of the figures.

Needs scipy and matplotlib (``pip install 'torch-fastinit[test]'`` or ``'[bench]'``).
"""
from __future__ import annotations

import argparse
import html
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

import fastinit
from fastinit.cli.laws import (
    KS_ALPHA,
    Z_MAX,
    DiscreteLaw,
    Law,
    ks_critical,
    normal_law,
    rounded_law,
    trunc_normal_law,
    uniform_law,
)
from fastinit.cli.parser import (
    DISTRIBUTION_NAME, argtype, check_output_paths, CommandError, csv_list, Formatter,
    paragraphs, positive_float, positive_int, setup_device, dtype_arg)
from fastinit.cli.rendering import dtype_name, write_text

__all__ = ["run", "DEFAULT_SAMPLES", "Case", "CASES", "DISTRIBUTIONS", "DTYPES", "CheckResult",
           "require_dependencies", "reference_law", "sample", "check_case", "select_cases",
           "run_checks", "write_report", "summary_table"]

DEFAULT_SAMPLES = 10**6

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                  "float16": torch.float16, "float64": torch.float64}


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``fastinit check`` with parsed ``args``: 0 all checks pass, 1 some fail."""
    check_output_paths({}, folders={"--out": args.out})
    if args.samples < 1000:
        raise CommandError("--samples: at least 1000 values per check")
    try:
        require_dependencies()
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    device = setup_device(args)
    dtypes = [dtype_name(d) for d in args.dtypes] if args.dtypes else list(DTYPES)
    results = run_checks(args.out, dtypes=dtypes, cases=select_cases(args.dists),
                         samples=args.samples, figures=not args.no_figures,
                         perturb_std=args.perturb_std, device=device, quiet=args.quiet)
    if device.type == "cuda":
        where = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        from fastinit.cli.timing import cpu_name

        where = f"{device} ({cpu_name()})"
    md, page = write_report(results, args.out, machine=f"Values drawn on {where}.",
                            perturb_std=args.perturb_std)
    print(summary_table(results))
    print(f"\nreport: {md} (and {os.path.basename(page)}); figures in {args.out}")
    return 0 if all(r.passed for r in results) else 1


def require_dependencies() -> None:
    """Raise ``RuntimeError`` with install instructions if scipy or matplotlib is missing."""
    missing = []
    for mod in ("scipy", "matplotlib"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise RuntimeError(
            f"fastinit check needs {' and '.join(missing)}: pip install "
            f"'{DISTRIBUTION_NAME}[test]' (or pip install scipy matplotlib)")


# --- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One distribution to check: ``params`` are (a, b) for uniform, (mean, std) for
    normal and (mean, std, a, b) for trunc_normal."""

    id: str
    dist: str
    params: tuple[float, ...]
    seed: int


#: The cases. The truncated battery covers the torch default, narrow, very narrow, far
#: tails on both sides, a mean outside [a, b], a small std with wide bounds (effectively
#: untruncated) and every polynomial region of the inverse CDF.
CASES: list[Case] = [
    Case("U(0,1)", "uniform", (0.0, 1.0), 1001),
    Case("U(-0.05,0.05)", "uniform", (-0.05, 0.05), 1002),
    Case("U(-5,-2)", "uniform", (-5.0, -2.0), 1003),
    Case("N(0,1)", "normal", (0.0, 1.0), 2001),
    Case("N(0,0.02)", "normal", (0.0, 0.02), 2002),
    Case("N(-3,2.5)", "normal", (-3.0, 2.5), 2003),
    Case("TN pm2s [-2,2]", "trunc_normal", (0.0, 1.0, -2.0, 2.0), 3001),
    Case("TN [2s,3s]", "trunc_normal", (0.0, 1.0, 2.0, 3.0), 3002),
    Case("TN [-0.01s,0.01s]", "trunc_normal", (0.0, 1.0, -0.01, 0.01), 3003),
    Case("TN [4s,5s]", "trunc_normal", (0.0, 1.0, 4.0, 5.0), 3004),
    Case("TN mean 3 outside [-1,1]", "trunc_normal", (3.0, 1.0, -1.0, 1.0), 3005),
    Case("TN [-3s,-2.5s]", "trunc_normal", (0.0, 1.0, -3.0, -2.5), 3006),
    Case("TN std 0.02 [-2,2]", "trunc_normal", (0.0, 0.02, -2.0, 2.0), 3007),
    Case("TN [-1s,3s]", "trunc_normal", (0.0, 1.0, -1.0, 3.0), 3008),
    Case("TN [-6s,6s]", "trunc_normal", (0.0, 1.0, -6.0, 6.0), 3009),
    Case("TN [8s,9s]", "trunc_normal", (0.0, 1.0, 8.0, 9.0), 3010),
    Case("TN [3s,4s]", "trunc_normal", (0.0, 1.0, 3.0, 4.0), 3014),
    Case("TN [5s,6s]", "trunc_normal", (0.0, 1.0, 5.0, 6.0), 3015),
    Case("TN mean 0.5 std 3 [-1,4]", "trunc_normal", (0.5, 3.0, -1.0, 4.0), 3013),
]

DISTRIBUTIONS = ("uniform", "normal", "trunc_normal")


# --- reference laws ---------------------------------------------------------------------------


def reference_law(case: Case) -> Law:
    """The exact continuous law of ``case``."""
    if case.dist == "uniform":
        return uniform_law(*case.params)
    if case.dist == "normal":
        return normal_law(*case.params)
    return trunc_normal_law(*case.params)


def _scipy_dist(case: Case):
    """scipy's frozen distribution (for the pdf and quantiles drawn in the figures only)."""
    import scipy.stats as st

    if case.dist == "uniform":
        a, b = case.params
        return st.uniform(loc=a, scale=b - a)
    if case.dist == "normal":
        mean, std = case.params
        return st.norm(loc=mean, scale=std)
    mean, std, a, b = case.params
    return st.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)


# --- sampling ----------------------------------------------------------------------------------


def sample(case: Case, dtype: torch.dtype, n: int, perturb_std: float = 1.0,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` values of ``case`` in ``dtype`` drawn by fastinit on ``device`` (seed
    ``case.seed``), returned on the CPU.

    ``perturb_std`` != 1 deliberately draws from a wrong law (the spread multiplied by it,
    about the same centre; the reference stays the nominal law): it exists to show that
    the report catches a wrong distribution.
    """
    t = torch.empty(n, dtype=dtype, device=device)
    f = float(perturb_std)
    if case.dist == "uniform":
        a, b = case.params
        c, h = (a + b) / 2, (b - a) / 2
        fastinit.uniform_(t, c - f * h, c + f * h, seed=case.seed)
    elif case.dist == "normal":
        mean, std = case.params
        fastinit.normal_(t, mean, std * f, seed=case.seed)
    else:
        mean, std, a, b = case.params
        fastinit.trunc_normal_(t, mean, std * f, a, b, seed=case.seed)
    return t.cpu()


# --- the checks ---------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """The outcome of one case x dtype."""

    case: Case
    dtype: str
    n: int
    law: str
    ks_d: float
    ks_p: float
    d_crit: float
    mean: float
    mean_exact: float
    mean_z: float
    var: float
    var_exact: float
    var_z: float
    bounds: str  # what was checked, for the report
    failures: list[str] = field(default_factory=list)
    figure: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def _z(value: float, exact: float, se: float) -> float:
    if se > 0:
        return (value - exact) / se
    return 0.0 if value == exact else math.copysign(math.inf, value - exact)


def _moments(x: np.ndarray, mean: float, var: float, mu4: float) -> tuple[float, float, float,
                                                                          float]:
    n = x.size
    m = float(x.mean(dtype=np.float64))
    v = float(((x - m) ** 2).mean())
    return (m, _z(m, mean, math.sqrt(var / n)), v,
            _z(v, var, math.sqrt(max(mu4 - var * var, 0.0) / n)))


def check_case(case: Case, dtype: torch.dtype, n: int = DEFAULT_SAMPLES, *,
               perturb_std: float = 1.0,
               device: torch.device | str = "cpu") -> tuple[CheckResult, dict]:
    """Draw ``case`` in ``dtype`` and run every check.

    Returns the result and the data its figure needs (samples and reference).
    """
    import scipy.stats as st

    law = reference_law(case)
    x = sample(case, dtype, n, perturb_std, device).to(torch.float64).numpy()
    d_crit = ks_critical(n)
    failures: list[str] = []
    lo, hi = law.support
    upper_open = case.dist == "uniform"
    half = dtype in (torch.float16, torch.bfloat16)
    name = f"{case.id} {dtype_name(dtype)}"

    if not np.isfinite(x).all():
        failures.append(f"{name}: {int((~np.isfinite(x)).sum())} values are not finite")
        x = x[np.isfinite(x)]
    inside = (x >= lo) & ((x < hi) if upper_open else (x <= hi))
    bounds = f"all in [{lo:g}, {hi:g}{')' if upper_open else ']'}" if math.isfinite(lo) \
        else "all finite"
    if not inside.all():
        failures.append(f"{name}: {int((~inside).sum())} values outside "
                        f"[{lo:g}, {hi:g}{')' if upper_open else ']'}: min {x.min()!r}, "
                        f"max {x.max()!r}")

    extra: dict = {"x": x, "law": law}
    if half:
        dl = rounded_law(law, dtype, upper_open)
        extra["discrete"] = dl
        s = dl.support
        idx = np.clip(np.searchsorted(s, x), 0, s.size - 1)
        off = s[idx] != x
        if off.any():
            failures.append(f"{name}: {int(off.sum())} values are not values of the support "
                            f"[{s[0]!r}, {s[-1]!r}], e.g. {x[off][:3].tolist()}")
        counts = np.bincount(idx[~off], minlength=s.size)
        diff = np.abs(np.cumsum(counts) / x.size - dl.cdf)
        d = float(diff.max())
        p = float(st.kstwo.sf(d, x.size))
        mean_exact, var_exact, mu4 = dl.moments()
        bounds += "; end-point counts within 5 SE"
        for label, k in (("lower", 0), ("upper", s.size - 1)):
            pk = float(dl.pmf[k])
            se = math.sqrt(x.size * pk * (1 - pk))
            z = _z(float(counts[k]), x.size * pk, se)
            if abs(z) > Z_MAX:
                failures.append(f"{name}: {counts[k]} values on the {label} end point {s[k]!r}, "
                                f"the exact mass {pk:.3e} expects {x.size * pk:.1f} +- "
                                f"{se:.2f} ({z:+.1f} SE)")
    else:
        res = st.kstest(x, law.cdf)
        d, p = float(res.statistic), float(res.pvalue)
        mean_exact, var_exact, mu4 = law.mean, law.var, law.mu4
    if d > d_crit:
        failures.append(f"{name}: KS D = {d:.3e} > D_crit = {d_crit:.3e} (p = {p:.2e} < "
                        f"{KS_ALPHA:g})")
    m, mz, v, vz = _moments(x, mean_exact, var_exact, mu4)
    if abs(mz) > Z_MAX:
        failures.append(f"{name}: mean {m:.6g} vs exact {mean_exact:.6g} ({mz:+.1f} SE)")
    if abs(vz) > Z_MAX:
        failures.append(f"{name}: variance {v:.6g} vs exact {var_exact:.6g} ({vz:+.1f} SE)")
    result = CheckResult(case, dtype_name(dtype), x.size, law.name, d, p,
                         d_crit, m, mean_exact, mz, v, var_exact, vz, bounds, failures)
    return result, extra


# --- figures ----------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # Agg without pyplot: no global state, works headless
    return fig


def _display_range(case: Case, law: Law) -> tuple[float, float]:
    if case.dist == "normal":
        mean, std = case.params
        return mean - 4.5 * std, mean + 4.5 * std
    return law.support


def plot_case(result: CheckResult, extra: dict, path: str) -> str:
    """Histogram against the reference density, and a QQ plot, as one PNG."""
    case, x, law = result.case, extra["x"], extra["law"]
    dist = _scipy_dist(case)
    lo, hi = _display_range(case, law)
    from matplotlib.ticker import MaxNLocator

    fig = _figure(9.0, 3.6)
    ax_h, ax_q = fig.subplots(1, 2)
    dl: DiscreteLaw | None = extra.get("discrete")
    if dl is not None:
        # Bins made of whole rounding cells (edges at midpoints between values of the
        # dtype): equal-width bins would alias against the lattice and show a false comb.
        s = dl.support[(dl.support >= lo) & (dl.support <= hi)]
        if s.size == 0:
            s = dl.support
        # The lattice is denser near 0, so pick the cell edges nearest to 80 equal widths.
        mids = np.concatenate(([s[0] - (s[1] - s[0]) / 2 if s.size > 1 else s[0] - 0.5],
                               (s[:-1] + s[1:]) / 2,
                               [s[-1] + (s[-1] - s[-2]) / 2 if s.size > 1 else s[-1] + 0.5]))
        targets = np.linspace(mids[0], mids[-1], 81)
        edges = mids[np.unique(np.clip(np.searchsorted(mids, targets), 0, mids.size - 1))]
        edges = np.unique(np.concatenate(([mids[0]], edges, [mids[-1]])))
        expected, _ = np.histogram(dl.support, bins=edges, weights=dl.pmf)
        ax_h.stairs(expected / np.diff(edges), edges, color="C3", lw=1.5,
                    label="exact law of the rounded values")
    else:
        edges = np.linspace(lo, hi, 81)
    counts, _ = np.histogram(x, bins=edges)
    ax_h.stairs(counts / (x.size * np.diff(edges)), edges, fill=True, alpha=0.45, color="C0",
                label=f"fastinit ({result.dtype}, n={x.size:,})")
    grid = np.linspace(lo, hi, 600)
    ax_h.plot(grid, dist.pdf(grid), color="black", lw=1, ls="--" if dl is not None else "-",
              label=f"pdf of {law.name}")
    ax_h.set_title("histogram (density)", fontsize=9)
    for ax in (ax_h, ax_q):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.tick_params(labelsize=7)
    ax_h.legend(fontsize=7, loc="best")

    probs = (np.arange(400) + 0.5) / 400
    sq = np.quantile(x, probs)
    if dl is not None:
        rq = dl.support[np.minimum(np.searchsorted(dl.cdf, probs), dl.support.size - 1)]
    else:
        rq = dist.ppf(probs)
    ax_q.plot(rq, sq, ".", ms=3, color="C0")
    span = [min(rq.min(), sq.min()), max(rq.max(), sq.max())]
    ax_q.plot(span, span, color="black", lw=0.8)
    ax_q.set_xlabel("reference quantile")
    ax_q.set_ylabel("sample quantile")
    ax_q.set_title("QQ plot", fontsize=9)
    verdict = "PASS" if result.passed else "FAIL"
    ax_q.text(0.03, 0.97, f"KS D = {result.ks_d:.2e} (crit {result.d_crit:.2e})\n"
              f"p = {result.ks_p:.3g}\nmean {result.mean_z:+.2f} SE, var {result.var_z:+.2f} SE",
              transform=ax_q.transAxes, va="top", fontsize=7, family="monospace")
    fig.suptitle(f"{case.dist}: {case.id}, {result.dtype} - {verdict}", fontsize=10,
                 color="black" if result.passed else "red")
    fig.savefig(path, dpi=80)
    return path


# --- the run and the report -----------------------------------------------------------------------


def _slug(text: str) -> str:
    """A file-name-safe form of a case id that keeps signs and decimals apart."""
    out = "".join(c if c.isalnum() else {"-": "m", ".": "p"}.get(c, "_") for c in text)
    return "_".join(p for p in out.split("_") if p)


def select_cases(dists: Sequence[str] | None = None) -> list[Case]:
    """The cases of the given distributions (all by default)."""
    if dists is None:
        return list(CASES)
    unknown = set(dists) - set(DISTRIBUTIONS)
    if unknown:
        raise ValueError(f"unknown distribution(s) {sorted(unknown)}; choose from "
                         f"{', '.join(DISTRIBUTIONS)}")
    return [c for c in CASES if c.dist in dists]


def run_checks(out_dir: str, *, dtypes: Sequence[str] = tuple(DTYPES),
               cases: Sequence[Case] | None = None, samples: int = DEFAULT_SAMPLES,
               figures: bool = True, perturb_std: float = 1.0,
               device: torch.device | str = "cpu", quiet: bool = False) -> list[CheckResult]:
    """Run every case x dtype, writing one PNG per check to ``out_dir`` (made if needed).

    Values are drawn on ``device`` (the CPU backend by default, the reference of the GPU
    kernels; ``"cuda"`` checks the Triton kernels).
    """
    from tqdm.auto import tqdm

    require_dependencies()
    cases = list(CASES if cases is None else cases)
    os.makedirs(out_dir, exist_ok=True)
    results = []
    todo = [(c, d) for d in dtypes for c in cases]
    with tqdm(todo, desc="check", disable=quiet, file=sys.stderr, leave=False,
              dynamic_ncols=True) as bar:
        for case, dt in bar:
            bar.set_postfix_str(f"{case.id} {dt}")
            result, extra = check_case(case, DTYPES[dt], samples, perturb_std=perturb_std,
                                       device=device)
            if figures:
                name = f"{case.dist}_{case.seed}_{_slug(case.id)}_{dt}.png"  # seeds are unique
                plot_case(result, extra, os.path.join(out_dir, name))
                result.figure = name
            results.append(result)
    return results


def _row(r: CheckResult) -> list[str]:
    return [r.case.dist, r.case.id, r.dtype, f"{r.ks_d:.2e}", f"{r.ks_p:.3g}",
            f"{r.mean_z:+.2f}", f"{r.var_z:+.2f}", "PASS" if r.passed else "FAIL"]


SUMMARY_HEADERS = ["distribution", "case", "dtype", "KS D", "KS p", "mean (SE)", "var (SE)",
                   "result"]


def summary_table(results: Sequence[CheckResult]) -> str:
    """A plain-text table of the results, then the failures, for the terminal."""
    rows = [_row(r) for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(SUMMARY_HEADERS)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [line(SUMMARY_HEADERS), "  ".join("-" * w for w in widths)]
    lines += [line(row) for row in rows]
    failed = [f for r in results for f in r.failures]
    ok = sum(r.passed for r in results)
    lines.append("")
    lines.append(f"{ok} of {len(results)} checks passed")
    lines += [f"FAIL {f}" for f in failed]
    return "\n".join(lines)


def _method_text(samples: int, d_crit: float) -> list[str]:
    return [
        f"Each check draws n = {samples:,} values with fastinit (fixed seed per "
        "case; the values are a pure function of seed, element index, distribution and "
        "dtype, so this report is reproducible).",
        f"A check fails when the Kolmogorov-Smirnov p-value is below {KS_ALPHA:g} "
        f"(D > D_crit = {d_crit:.3e}), when the mean or the variance is more than "
        f"{Z_MAX:g} standard errors from the exact value, or when a value lies outside the "
        "documented range. bfloat16 and float16 are compared with the exact law of the "
        "rounded values (end-point counts within 5 binomial SE as well).",
    ]


def write_report(results: Sequence[CheckResult], out_dir: str, *, machine: str = "",
                 perturb_std: float = 1.0) -> tuple[str, str]:
    """Write ``report.md`` and ``report.html`` (figures linked) to ``out_dir``.

    Returns the two paths.
    """
    samples = results[0].n if results else 0
    d_crit = results[0].d_crit if results else float("nan")
    ok = sum(r.passed for r in results)
    head = f"{ok} of {len(results)} checks passed"
    warn = (f"Deliberately perturbed run: spreads multiplied by {perturb_std:g}."
            if perturb_std != 1.0 else "")
    md = ["# fastinit statistical report", "",
          f"fastinit {fastinit.__version__}, torch {torch.__version__}. {machine}".strip(), ""]
    if warn:
        md += [f"**{warn}**", ""]
    t1, t2 = _method_text(samples, d_crit)
    md += [t1, "", t2, "", f"**{head}.**", ""]
    md += ["| " + " | ".join(SUMMARY_HEADERS + ["bounds", "figure"]) + " |",
           "|" + "|".join(["---"] * 3 + ["---:"] * 4 + ["---"] * 3) + "|"]
    for r in results:
        fig = f"[png]({r.figure})" if r.figure else ""
        md.append("| " + " | ".join(_row(r) + [r.bounds, fig]) + " |")
    failures = [f for r in results for f in r.failures]
    if failures:
        md += ["", "## Failures", ""] + [f"* {f}" for f in failures]
    md += ["", "## Figures", ""]
    for r in results:
        if r.figure:
            md += [f"### {r.case.dist}: {r.case.id}, {r.dtype}", "",
                   f"![{r.case.id} {r.dtype}]({r.figure})", ""]
    md_path = os.path.join(out_dir, "report.md")
    write_text(md_path, "\n".join(md))

    e = html.escape
    rows = "\n".join(
        "<tr class='{}'>{}<td>{}</td><td>{}</td></tr>".format(
            "ok" if r.passed else "bad", "".join(f"<td>{e(c)}</td>" for c in _row(r)),
            e(r.bounds), f"<a href='{e(r.figure)}'>png</a>" if r.figure else "")
        for r in results)
    imgs = "\n".join(f"<figure><img src='{e(r.figure)}' alt='{e(r.case.id)}'></figure>"
                     for r in results if r.figure)
    fails = "".join(f"<li>{e(f)}</li>" for f in failures)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fastinit statistical report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 6px}}
tr.bad{{background:#fdd}}img{{max-width:100%}}</style></head><body>
<h1>fastinit statistical report</h1>
<p>{e(md[2])}</p>{f"<p><b>{e(warn)}</b></p>" if warn else ""}
{"".join(f"<p>{e(t)}</p>" for t in _method_text(samples, d_crit))}
<p><b>{e(head)}.</b></p>
<table><tr>{"".join(f"<th>{e(h)}</th>" for h in SUMMARY_HEADERS + ["bounds", "figure"])}</tr>
{rows}</table>
{f"<h2>Failures</h2><ul>{fails}</ul>" if fails else ""}
<h2>Figures</h2>
{imgs}
</body></html>
"""
    html_path = os.path.join(out_dir, "report.html")
    write_text(html_path, page)
    return md_path, html_path


# --- the command's arguments -----------------------------------------------------------


@argtype
def _dist_name(text: str) -> str:

    if text not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {text!r}; choose from {', '.join(DISTRIBUTIONS)}")
    return text


def add_parser(sub) -> argparse.ArgumentParser:
    """``fastinit check``."""

    c = sub.add_parser(
        "check", formatter_class=Formatter,
        help="statistical report: every distribution x dtype against its exact law",
        description=paragraphs(
            "Draw every distribution (uniform, normal, a battery of truncated normals) in "
            "every dtype with fixed seeds and compare it with the exact law: KS statistic and "
            "p-value (fail if p < 1e-6), mean and variance (fail beyond 5 standard errors), "
            "bounds; bfloat16/float16 against the exact law of the rounded values. Writes a "
            "PNG per check (histogram with the reference density, QQ plot), report.md and "
            "report.html to --out, prints a summary, and exits 1 if any check fails.",
            f"Needs scipy and matplotlib: pip install '{DISTRIBUTION_NAME}[test]'."))
    c.set_defaults(command="check")
    c.add_argument("--device", default="cpu",
                   help="where to draw the values: 'cpu' (the reference backend) or 'cuda' "
                        "(checks the GPU kernels)")
    c.add_argument("--out", default="fastinit-check", metavar="DIR",
                   help="folder for the figures and the report (made if missing; its parent "
                        "must exist)")
    c.add_argument("--samples", type=positive_int, default=DEFAULT_SAMPLES,
                   help="values drawn per check (at least 1000)")
    c.add_argument("--dtypes", type=csv_list(dtype_arg, "dtypes"),
                   default=None, metavar="D[,D...]",
                   help="dtypes to check (default: float32, bfloat16, float16, float64)")
    c.add_argument("--dists", type=csv_list(_dist_name, "distributions"), default=None,
                   metavar="NAME[,NAME...]",
                   help=f"distributions to check, of: {', '.join(DISTRIBUTIONS)} (default: all)")
    c.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    # Hidden: draw from a deliberately wrong law (spread x FACTOR) to see the report fail.
    c.add_argument("--perturb-std", type=positive_float, default=1.0, help=argparse.SUPPRESS)
    return c
