"""``fastinit.report``: what a model's initialization did, in one place.

:func:`report` combines the signal-propagation check (:func:`fastinit.propagation.propagate`:
one forward and backward pass, activations and gradients per layer) with the law check of
``fastinit.provenance`` (every tensor's values against the law its recorded writes drew
from, and against what its shape suggests) when the model was materialized with
provenance. The :class:`Report` it returns prints as a terminal table (flagged rows
first), serializes to JSON, and writes a self-contained HTML page with plots (std per
layer of activations and gradients; observed std per tensor against the expected ones),
the images embedded as PNG.

Examples:
    >>> with fastinit.empty_init():
    ...     model = LlamaForCausalLM(config)
    >>> fastinit.materialize(model, "cpu", seed=0)
    >>> r = fastinit.report(model)
    >>> print(r.table())
    >>> r.to_html("init.html")
"""
from __future__ import annotations

import base64
import collections
import html
import io
import itertools
import json
import math
import os
import tempfile
from typing import Any, Mapping, Optional, Sequence, Union

from torch import nn

from fastinit import provenance
from fastinit.findings import Finding
from fastinit.laws import shape_fans
from fastinit.propagation import Propagation, propagate

__all__ = ["report", "Report", "write_html", "compare_table"]

#: Rows of the terminal tables by default (the JSON and the HTML page have them all).
TABLE_ROWS = 40


def _shape_rows(propagation: Propagation) -> list[dict]:
    """Per parameter: observed std and the shape references (without provenance)."""
    rows = []
    for p in propagation.params:
        fan_in, fan_out = shape_fans(p.shape)
        ref = {}
        if fan_in:
            ref = {"he": math.sqrt(2.0 / fan_in), "xavier": math.sqrt(2.0 / (fan_in + fan_out)),
                   "lecun": math.sqrt(1.0 / fan_in)}
        rows.append({"name": p.name, "shape": list(p.shape), "law": None,
                     "observed_mean": p.mean, "observed_std": p.std,
                     "expected_std_law": None, "expected_std_shape": ref,
                     "fan_in": fan_in, "fan_out": fan_out})
    return rows


class Report:
    """The result of :func:`report`.

    Attributes:
        title: what was inspected (the model's class name unless given)
        propagation: the :class:`fastinit.propagation.Propagation` of the pass
        tensors: per parameter / buffer: name, shape, law, observed mean and std, the
            expected std by its law and by its shape (``fastinit.provenance.law_table``;
            without provenance the shape references only, law None)
        law_findings: what ``fastinit.provenance.check_laws`` flagged (empty without it)
        laws_note: why the law check did not run (None when it did)
    """

    def __init__(self, title: str, propagation: Propagation, tensors: list,
                 law_findings: Sequence[Finding] = (), laws_note: Optional[str] = None) -> None:
        self.title = title
        self.propagation = propagation
        self.tensors = list(tensors)
        self.law_findings = list(law_findings)
        self.laws_note = laws_note

    @property
    def findings(self) -> list[Finding]:
        """Everything flagged: the law check's findings, then the propagation check's."""
        return self.law_findings + list(self.propagation.findings)

    def flagged_names(self) -> set[str]:
        """Names of modules, parameters and series members that a finding concerns."""
        return {f.name for f in self.findings}.union(
            *(s.names for s in self.propagation.series if s.flagged))

    def __repr__(self) -> str:
        return f"Report({self.title!r}, {len(self.findings)} findings)"

    # --- terminal -------------------------------------------------------------------------

    def table(self, max_rows: Optional[int] = TABLE_ROWS) -> str:
        """The report as terminal text: findings, then modules and tensors (flagged first).

        ``max_rows`` caps the module and tensor tables (None: every row).
        """
        p = self.propagation
        out = [f"fastinit report: {self.title}",
               f"  inputs: {p.inputs}; backward from {p.loss}",
               f"  {len(self.findings)} finding(s)"
               + (f"; law check: {self.laws_note}" if self.laws_note else "")]
        if self.findings:
            out += ["", "FINDINGS"]
            out.append(_text_table(["check", "name", "message"],
                                   [[f.check, f.name, f.message] for f in self.findings],
                                   wrap={2: 100}))
        flagged = self.flagged_names()
        for title, headers, (cells, flags) in (
                ("MODULES (execution order, flagged first)", _MODULE_HEADERS,
                 _module_rows(self, flagged)),
                ("TENSORS (flagged first)", _TENSOR_HEADERS, _tensor_rows(self, flagged))):
            rows = [["!" if flag else ""] + c for c, flag in zip(cells, flags)]
            out += ["", _caption(title, len(rows), max_rows)]
            out.append(_text_table([""] + headers, rows[:max_rows] if max_rows else rows))
        return "\n".join(out)

    # --- data -----------------------------------------------------------------------------

    def as_dict(self) -> dict:
        """The report as plain JSON-serializable data."""
        return {"title": self.title, "findings": [f.as_dict() for f in self.findings],
                "laws_note": self.laws_note, "tensors": [_jsonable(t) for t in self.tensors],
                "propagation": self.propagation.as_dict()}

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The report as JSON (non-finite numbers as null)."""
        return json.dumps(_jsonable(self.as_dict()), indent=indent, allow_nan=False)

    def to_html(self, path: str) -> None:
        """Write the report as one self-contained HTML page (plots embedded as PNG).

        The file is written whole or not at all. Needs matplotlib.
        """
        write_html(path, [self])


def report(model: nn.Module, example_inputs: Any = None, *, laws: bool = True, seed: int = 0,
           title: Optional[str] = None) -> Report:
    """Check what ``model``'s initialization did: signal propagation and, where recorded,
    each tensor's values against its law.

    Args:
        model: a real (materialized) module
        example_inputs: inputs for the forward pass (a tensor, a tuple of arguments or a
            dict of keyword arguments); None: random inputs inferred from the model (token
            ids for language models, images for vision models, vectors for a first
            ``nn.Linear``; see :func:`fastinit.propagation.infer_inputs`)
        laws: also run ``fastinit.provenance.check_laws`` and ``law_table`` when the model
            has provenance (materialized or re-initialized by fastinit with recording);
            False: the propagation check only
        seed: for the random inputs and the backward projection
        title: what to call the model in the report (default: its class name)

    Returns:
        a :class:`Report`; ``report.findings`` lists what was flagged, with the reason

    Raises:
        TypeError: inputs cannot be inferred (pass ``example_inputs``)
        ValueError: the model has meta tensors (materialize it first)
        RuntimeError: the forward pass failed on the inputs
    """
    prop = propagate(model, example_inputs, seed=seed)
    title = title or type(model).__name__
    tensors, law_findings, note = None, [], None
    if not laws:
        note = "not requested"
    else:
        try:
            provenance.provenance(model)
        except (ValueError, RuntimeError, LookupError, TypeError, AttributeError) as exc:
            note = f"no provenance ({exc})"
        else:
            tensors = provenance.law_table(model)
            law_findings = provenance.check_laws(model)
    if tensors is None:
        tensors = _shape_rows(prop)
    return Report(title, prop, tensors, law_findings, note)


# --- text helpers ---------------------------------------------------------------------------

_MODULE_HEADERS = ["module", "class", "output", "std", "mean", "grad std", "zeros"]
_TENSOR_HEADERS = ["tensor", "shape", "law", "std", "law std", "shape references"]


def _module_rows(r: Report, flagged: set) -> tuple[list, list]:
    """(cells, whether flagged) per module call of the module tables: flagged first, then
    in execution order."""
    mods = sorted(r.propagation.modules,
                  key=lambda m: (m.label not in flagged and m.name not in flagged, m.order))
    cells = [[m.label, m.kind, "x".join(map(str, m.shape)), _g(m.std), _g(m.mean),
              _g(m.grad_std), "" if m.zero_fraction is None else f"{m.zero_fraction:.0%}"]
             for m in mods]
    return cells, [m.label in flagged or m.name in flagged for m in mods]


def _tensor_rows(r: Report, flagged: set) -> tuple[list, list]:
    """(cells, whether flagged) per tensor of the tensor tables: flagged first."""
    tens = sorted(r.tensors, key=lambda t: t["name"] not in flagged)
    cells = [[t["name"], "x".join(map(str, t["shape"])), t.get("law") or "",
              _g(t.get("observed_std")), _g(t.get("expected_std_law")),
              " ".join(f"{k}={_g(v)}" for k, v in (t.get("expected_std_shape") or {}).items()
                       if isinstance(v, (int, float)))] for t in tens]
    return cells, [t["name"] in flagged for t in tens]


def _g(x: Optional[float]) -> str:
    return "" if x is None else f"{x:.3g}"  # nan and inf come out as str() writes them


def _caption(title: str, n: int, cap: Optional[int]) -> str:
    if cap and n > cap:
        return f"{title}: {cap} of {n} rows (--json / --html for all)"
    return f"{title}: {n} rows"


def _text_table(headers: list, rows: list, wrap: Optional[Mapping[int, int]] = None) -> str:
    import textwrap

    wrap = wrap or {}
    cells = []
    for r in rows:  # a row takes as many lines as its longest wrapped cell
        parts = [textwrap.wrap(str(c), wrap[i]) or [""] if i in wrap else [str(c)]
                 for i, c in enumerate(r)]
        cells += [list(line) for line in itertools.zip_longest(*parts, fillvalue="")]
    widths = [max([len(str(h))] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):  # torch.Size too
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if hasattr(x, "as_dict"):
        return _jsonable(x.as_dict())
    return str(x)


def compare_table(reports: Mapping[str, Report], max_rows: Optional[int] = TABLE_ROWS) -> str:
    """One summary line per report (its label, findings by check), then each report's
    table (``max_rows`` as in :meth:`Report.table`)."""
    lines = ["comparison:"]
    for label, r in reports.items():
        counts = collections.Counter(f.check for f in r.findings)
        what = ", ".join(f"{k} x{v}" for k, v in counts.items()) or "no findings"
        lines.append(f"  {label}: {what}")
    for label, r in reports.items():
        lines += ["", f"=== {label} ===", r.table(max_rows=max_rows)]
    return "\n".join(lines)


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:16px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:18px 0 6px}
.meta{color:#555;margin-bottom:8px}
table{border-collapse:collapse;margin:6px 0;font-size:12px}
th{background:#dbe4f0;text-align:left;padding:3px 8px}
td{padding:2px 8px;border-bottom:1px solid #e3e3e3;vertical-align:top}
tr.flag td{background:#f8d7d3}
.ok{background:#d9f0dc;padding:6px 10px;display:inline-block}
img{max-width:100%;display:block;margin:6px 0}
.variant{border-top:3px solid #555;margin-top:14px;padding-top:4px}
.cols{display:flex;gap:14px}.cols>div{flex:1;min-width:0}
"""


def _figure_png(r: Report) -> str:
    """The three plots of one report as a base64 PNG (matplotlib's backend already set)."""
    from matplotlib.figure import Figure

    p = r.propagation
    fig = Figure(figsize=(12, 3.6), dpi=100)
    axes = fig.subplots(1, 3)
    has_grad = any(s.kind == "activation-grad" for s in p.series)
    panels = (("activations: std per layer", ("residual", "activation")),
              ("gradients: std per layer",
               ("residual-grad", "activation-grad" if has_grad else "param-grad")))
    for ax, (title, kinds) in zip(axes, panels):
        shown = [s for kind in kinds for s in p.series if s.kind == kind][:8]
        for s in shown:
            bold = s.kind in ("residual", "residual-grad")
            style = dict(lw=2.4, color="k") if bold else dict(lw=1.3)
            if s.flagged:
                style.update(ls="--")
            ys = [max(v, 1e-30) for v in s.stds]
            ax.plot(range(len(ys)), ys, marker=".", ms=3, label=_short(s.key, s.kind), **style)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer (position in the series)", fontsize=8)
        if shown:
            ax.set_yscale("log")
            ax.legend(fontsize=6, loc="best")
        else:
            ax.text(0.5, 0.5, "no series of 4 or more layers", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color="#666")
    ax = axes[2]
    # Constant tensors (std 0: norms at one, biases at zero) have no place on a log scale;
    # the panel counts them in its title.
    tensors = [t for t in r.tensors if isinstance(t.get("observed_std"), (int, float))
               and t["observed_std"] > 0]
    constants = len(r.tensors) - len(tensors)
    obs = [t["observed_std"] for t in tensors]
    ax.scatter(range(len(obs)), obs, s=10, color="#1f77b4", label="observed", zorder=3)
    law = [(i, t["expected_std_law"]) for i, t in enumerate(tensors)
           if isinstance(t.get("expected_std_law"), (int, float)) and t["expected_std_law"] > 0]
    if law:
        ax.scatter([i for i, _ in law], [v for _, v in law], s=28, marker="x", color="#d62728",
                   label="recorded law", zorder=4)
    refs = sorted({k for t in tensors for k, v in (t.get("expected_std_shape") or {}).items()
                   if isinstance(v, (int, float))})
    for k, color in zip(refs, ("#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")):
        pts = [(i, t["expected_std_shape"][k]) for i, t in enumerate(tensors)
               if isinstance((t.get("expected_std_shape") or {}).get(k), (int, float))]
        ax.scatter([i for i, _ in pts], [v for _, v in pts], s=12, marker="_", color=color,
                   label=k, zorder=2)
    flagged = r.flagged_names()
    bad = [(i, obs[i]) for i, t in enumerate(tensors) if t["name"] in flagged]
    if bad:
        ax.scatter([i for i, _ in bad], [v for _, v in bad], s=70, facecolors="none",
                   edgecolors="#d62728", lw=1.5, label="flagged", zorder=5)
    if obs:
        ax.set_yscale("log")
    ax.set_title("tensors: observed std vs expected", fontsize=10)
    ax.set_xlabel("tensor (registration order)"
                  + (f"; {constants} constant ones not shown" if constants else ""), fontsize=8)
    ax.legend(fontsize=6, loc="best")
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _short(key: str, kind: str) -> str:
    key = key if len(key) <= 38 else "..." + key[-35:]
    return f"{key} [{kind}]" if kind in ("param-grad", "residual", "residual-grad") else key


def _html_table(headers: list, rows: list, flags: list) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    flagged = ' class="flag"'
    body = "".join(
        f"<tr{flagged if flag else ''}>"
        + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row, flag in zip(rows, flags))
    return f"<table><tr>{head}</tr>{body}</table>"


def _variant_html(label: Optional[str], r: Report) -> tuple[str, str]:
    """(the top part: findings and plots, the detail part: module and tensor tables)."""
    p = r.propagation
    e = html.escape
    top = [f"<div class='variant'><h2>{e(label)}</h2>" if label else "<div>"]
    top.append(f"<div class='meta'>inputs: {e(p.inputs)}; backward from {e(p.loss)}"
               + (f"; law check: {e(r.laws_note)}" if r.laws_note else "") + "</div>")
    if r.findings:
        top += [f"<b>{len(r.findings)} finding(s)</b>",
                _html_table(["check", "name", "message"],
                            [[f.check, f.name, f.message] for f in r.findings],
                            [True] * len(r.findings))]
    else:
        top.append("<div class='ok'>no findings</div>")
    top += [f"<img alt='std per layer and per tensor' "
            f"src='data:image/png;base64,{_figure_png(r)}'>", "</div>"]
    flagged = r.flagged_names()
    prefix = e(label + ": " if label else "")
    detail = [f"<h2>{prefix}modules (execution order, flagged first)</h2>",
              _html_table(_MODULE_HEADERS, *_module_rows(r, flagged)),
              f"<h2>{prefix}tensors (flagged first)</h2>",
              _html_table(_TENSOR_HEADERS, *_tensor_rows(r, flagged))]
    return "\n".join(top), "\n".join(detail)


def write_html(path: str, reports: Union[Sequence[Report], Mapping[str, Report]]) -> None:
    """Write one or more reports (a mapping label -> report compares them, one after the
    other with their plots on the same scales of layout) as a self-contained HTML page.

    The page is written to a temporary file next to ``path`` and moved into place: whole
    or not at all. Needs matplotlib (the ``test`` or ``bench`` extra).
    """
    items = list(reports.items()) if isinstance(reports, Mapping) else [(None, r) for r in reports]
    if not items:
        raise ValueError("write_html needs at least one report")
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the HTML report needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg", force=False)
    parts = [_variant_html(label, r) for label, r in items]
    title = " vs ".join(r.title if label is None else label for label, r in items)
    page = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>fastinit report: {html.escape(title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>fastinit report: {html.escape(items[0][1].title)}</h1>",
            *(top for top, _ in parts), *(detail for _, detail in parts), "</body></html>"]
    text = "\n".join(page)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
