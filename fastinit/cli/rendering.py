"""Rendering benchmark results: terminal tables, JSON, CSV, Markdown sections and plots.

A run (:class:`BenchRun`) carries the machine it ran on, the settings
and one record (a dict) per result; everything here only reads those. Files are written
whole or not at all (:func:`write_text`: a temporary file in the same folder, then
renamed), and plots use matplotlib's Agg canvas without pyplot (no global state, works
headless).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

#: the "schema" of ``fastinit bench --json`` output
JSON_SCHEMA = "fastinit.bench/1"


@dataclass
class BenchRun:
    """Everything one ``fastinit bench`` produced: the machine, the settings, the results."""

    machine: dict
    settings: dict
    functions: list[dict] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The run as plain data (the JSON output)."""
        return {"schema": JSON_SCHEMA, "machine": self.machine, "settings": self.settings,
                "functions": self.functions, "models": self.models}


__all__ = ["BenchRun", "JSON_SCHEMA", "dtype_name", "format_size", "format_bytes", "device_text", "machine_line",
           "machine_key", "format_table", "to_json", "to_csv", "to_markdown",
           "update_markdown_file", "write_text", "throughput_figure", "plot_throughput",
           "UNSTABLE_NOTE"]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def format_size(n: int) -> str:
    """``2^20`` for powers of two, the number otherwise."""
    return f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n)


def format_bytes(n: float) -> str:
    """``1.5 GB`` (decimal units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n} B"


def device_text(machine: dict) -> str:
    """``cpu (AMD EPYC, 2 threads)`` or ``cuda:3 (NVIDIA H100 80GB HBM3)``."""
    if machine["device_type"] == "cpu":
        n = machine["threads"]
        return f"cpu ({machine['device_name']}, {n} thread{'' if n == 1 else 's'})"
    return f"{machine['device']} ({machine['device_name']})"


# --- tables ----------------------------------------------------------------------------------

#: Columns of the terminal / Markdown function table: (header, record key, format).
FUNCTION_COLUMNS: list[tuple[str, str, str]] = [
    ("function", "function", "{}"),
    ("dtype", "dtype", "{}"),
    ("elements", "numel", "size"),
    ("fastinit ms", "fastinit_s", "ms"),
    ("fastinit GB/s", "fastinit_gbps", "gbps"),
    ("% roofline", "pct_roofline", "pct"),
    ("torch ms", "torch_s", "ms"),
    ("torch GB/s", "torch_gbps", "gbps"),
    ("speed-up", "speedup", "{:.2f}x"),
    ("zero_ GB/s", "roofline_gbps", "gbps"),
]

MODEL_COLUMNS: list[tuple[str, str, str]] = [
    ("model", "model", "{}"),
    ("dtype", "dtype", "{}"),
    ("params", "params", "params"),
    ("method", "label", "{}"),
    ("time s", "seconds", "{:.3f}"),
    ("GB/s", "gbps", "gbps"),
    ("peak mem / params", "peak_x_params", "{:.2f}x"),
    ("materialize speed-up", "materialize_speedup", "{:.2f}x"),
]

#: What an "unstable" percentage means (printed under a table that has one).
UNSTABLE_NOTE = ("unstable: zero_() of the same bytes measured slower than a fill, also when "
                 "measured again (other work on the machine), so no percentage of the "
                 "roofline is given")


def _fmt(record: dict, key: str, spec: str) -> str:
    value = record.get(key)
    if spec == "pct" and record.get("roofline_unstable"):
        return "unstable"
    if value is None:
        return "-"
    if spec == "pct":
        return f"{value:.0f}%"
    if spec == "ms":
        ms = value * 1e3
        return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"
    if spec == "gbps":  # 3 significant digits: torch's trunc_normal_ is at 0.005 GB/s
        return f"{value:#.3g}" if value < 100 else f"{value:.0f}"
    if spec == "size":
        return format_size(value)
    if spec == "params":
        return f"{value / 1e9:.2f}B" if value >= 1e9 else f"{value / 1e6:.1f}M"
    return spec.format(value)


def _rows(records: Iterable[dict], columns) -> list[list[str]]:
    return [[_fmt(r, k, spec) for _, k, spec in columns] for r in records]


def _left(columns) -> list[bool]:
    """Text columns are left-aligned, numbers right-aligned."""
    return [spec == "{}" for _, _, spec in columns]


def _text_table(headers: list[str], rows: list[list[str]], left: list[bool]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if lft else c.rjust(w)
                         for c, w, lft in zip(cells, widths, left, strict=True))

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def machine_line(machine: dict) -> str:
    """One line naming the machine and the software."""
    dev = machine["device_name"]
    if machine["device_type"] == "cpu":
        n = machine["threads"]
        dev = f"{dev} ({n} thread{'' if n == 1 else 's'})"
    else:
        dev = f"{dev} (CPU: {machine['cpu']})"
    soft = ", ".join(f"{k} {machine[k]}" for k in ("torch", "triton", "numba", "fastinit")
                     if machine.get(k))
    return f"{machine['device']}: {dev}; {soft}; {machine['date']}"


def format_table(run: BenchRun) -> str:
    """The results as plain-text tables for the terminal."""
    parts = [machine_line(run.machine)]
    if run.functions:
        parts += ["", _text_table([c[0] for c in FUNCTION_COLUMNS],
                                  _rows(run.functions, FUNCTION_COLUMNS),
                                  _left(FUNCTION_COLUMNS))]
        if any(r.get("roofline_unstable") for r in run.functions):
            parts.append(UNSTABLE_NOTE)
        errs = {r["torch_error"] for r in run.functions if r.get("torch_error")}
        parts += [f"torch failed: {e}" for e in sorted(errs)]
    if run.models:
        parts += ["", _text_table([c[0] for c in MODEL_COLUMNS],
                                  _rows(run.models, MODEL_COLUMNS), _left(MODEL_COLUMNS))]
    return "\n".join(parts)


def to_json(run: BenchRun) -> str:
    """The run as JSON (schema ``fastinit.bench/1``: machine, settings, functions, models)."""
    return json.dumps(run.as_dict(), indent=2)


#: Machine fields repeated on every CSV row (a CSV has nowhere else to keep them).
CSV_MACHINE_FIELDS = ("device_name", "cpu", "threads", "torch", "triton", "numba",
                      "fastinit", "date")


def to_csv(run: BenchRun) -> str:
    """The run as CSV: one row per result, ``section`` = functions | models, machine
    fields on every row."""
    keys: list[str] = ["section"]
    for rec in run.functions + run.models:
        keys += [k for k in rec if k not in keys]
    keys += [f"machine_{k}" for k in CSV_MACHINE_FIELDS]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    extra = {f"machine_{k}": run.machine.get(k) for k in CSV_MACHINE_FIELDS}
    for section, records in (("functions", run.functions), ("models", run.models)):
        for rec in records:
            row = {k: ("" if v is None else v) for k, v in rec.items()}
            row["shape"] = "x".join(map(str, rec["shape"])) if "shape" in rec else ""
            w.writerow({"section": section, **row, **extra})
    return buf.getvalue()


def _md_table(columns, records: Iterable[dict]) -> str:
    headers = [c[0] for c in columns]
    rows = _rows(records, columns)
    align = ["---" if lft else "---:" for lft in _left(columns)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine_key(machine: dict) -> str:
    """A stable key for a machine's section in RESULTS.md (device name + CPU + threads)."""
    raw = f"{machine['device_type']}-{machine['device_name']}-{machine['threads']}t"
    return re.sub(r"[^A-Za-z0-9]+", "-", raw).strip("-").lower()


def to_markdown(run: BenchRun, *, title: str | None = None, plot: str | None = None,
                command: str | None = None) -> str:
    """The run as a Markdown section (for ``bench/RESULTS.md`` or a README).

    ``plot`` is a path (relative to the Markdown file) of the throughput PNG to embed;
    ``command`` is the command line that produced the tables.
    """
    m = run.machine
    title = title or f"{m['device_name']} ({m['device']}), {m['date'][:10]}"
    out = [f"### {title}", "", machine_line(m) + ".", ""]
    if command:
        out += [f"Produced by `{command}`.", ""]
    if run.functions:
        cases = {r["function"]: r["call"] for r in run.functions}
        out += [f"Medians of {run.settings.get('repeats', '?')} runs (slow torch baselines: "
                f"at least 3, within --budget {run.settings.get('budget_s', '?')} s); "
                "GB/s = bytes written / time (10^9 B/s); % roofline = fastest time of "
                "`zero_()` on the same tensor / time; speed-up = torch.nn.init time / "
                "fastinit time.", ""]
        out += [_md_table(FUNCTION_COLUMNS, run.functions), ""]
        if any(r.get("roofline_unstable") for r in run.functions):
            out += [UNSTABLE_NOTE[0].upper() + UNSTABLE_NOTE[1:] + ".", ""]
        out += ["Calls: " + "; ".join(f"`{v}`" for v in cases.values()) + ".", ""]
    if run.models:
        out += ["Model builds (median of "
                f"{run.settings.get('model_repeats', '?')}); GB/s = parameter bytes / time; "
                "peak mem = peak memory above the start / parameter bytes; materialize "
                "speed-up = time of the row / time of meta + materialize (rows of the "
                "3000x4 model: / time of empty_init + materialize); `limit` rows write "
                "fresh memory of the parameter bytes (no model).", ""]
        out += [_md_table(MODEL_COLUMNS, run.models), ""]
    if plot:
        out += [f"![throughput vs size]({plot})", ""]
    return "\n".join(out)


def update_markdown_file(path: str, run: BenchRun, section: str) -> None:
    """Put ``section`` into the Markdown file ``path`` as this machine's results.

    Sections are delimited by ``<!-- fastinit-bench: KEY -->`` markers (KEY from
    :func:`machine_key`); an existing section for the same machine is replaced, others
    are kept, a new one is appended. A missing file is created with a heading.
    """
    key = machine_key(run.machine)
    begin, end = f"<!-- fastinit-bench: {key} -->", f"<!-- /fastinit-bench: {key} -->"
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# fastinit benchmark results\n\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    write_text(path, text)


# --- files -------------------------------------------------------------------------------------


def _replace_atomically(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``:
    a failure leaves ``path`` as it was. The file gets the permissions a plain ``open``
    would give it (those of the file it replaces, if any)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastinit-", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (``"-"``: stdout), whole or not at all."""
    if not text.endswith("\n"):
        text += "\n"
    if path == "-":
        sys.stdout.write(text)
        return

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    _replace_atomically(path, write)


# --- plots -------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    """A matplotlib Figure with an Agg canvas (no pyplot: no global state, no display)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install 'torch-fastinit[bench]' "
                           "(or pip install matplotlib)") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def throughput_figure(run: BenchRun):
    """GB/s against bytes written, one panel per dtype, with the measured write roofline
    (hollow where unstable); fastinit solid, torch dashed in the same colour. Every series
    has markers, so that a run of a single size still shows each of them."""
    recs = run.functions
    if not recs:
        raise ValueError("no function results to plot")
    dtypes = list(dict.fromkeys(r["dtype"] for r in recs))
    funcs = list(dict.fromkeys(r["function"] for r in recs))
    fig = _figure(5.2 * len(dtypes) + 2.4, 4.4)
    axes = fig.subplots(1, len(dtypes), squeeze=False, sharey=True)[0]
    colors = {f: f"C{i}" for i, f in enumerate(funcs)}
    roof_label = "write roofline: zero_()" + (
        " (hollow: unstable)" if any(r.get("roofline_unstable") for r in recs) else "")
    for ax, dt in zip(axes, dtypes, strict=True):
        sub = [r for r in recs if r["dtype"] == dt]
        roof = sorted({(r["bytes"], r["roofline_gbps"], bool(r.get("roofline_unstable")))
                       for r in sub})
        # An unstable roofline (see fastinit.cli.bench) is drawn hollow.
        ax.plot([p[0] for p in roof], [p[1] for p in roof], color="black", lw=2.5, marker="s",
                ms=5, markevery=[i for i, p in enumerate(roof) if not p[2]], label=roof_label)
        shaky = [p for p in roof if p[2]]
        if shaky:
            ax.plot([p[0] for p in shaky], [p[1] for p in shaky], ls="none", marker="s", ms=5,
                    mfc="white", mec="black")
        for f in funcs:
            pts = sorted((r["bytes"], r["fastinit_gbps"], r["torch_gbps"]) for r in sub
                         if r["function"] == f)
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1] for p in pts], color=colors[f], marker="o", ms=4, lw=1.5,
                    label=f"fastinit.{f}")
            tpts = [(p[0], p[2]) for p in pts if p[2] is not None]
            if tpts:
                ax.plot([p[0] for p in tpts], [p[1] for p in tpts], color=colors[f], ls="--",
                        marker="x", ms=5, lw=1, alpha=0.7, label=f"torch.nn.init.{f}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        if len(roof) == 1:  # one size: a window around it
            ax.set_xlim(roof[0][0] / 2, roof[0][0] * 2)
        ax.set_xlabel("bytes written")
        ax.set_title(dt)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("GB/s (higher is better)")
    m = run.machine
    where = (f"{m['device_name']} (cpu, {m['threads']} thread{'' if m['threads'] == 1 else 's'}"
             if m["device_type"] == "cpu" else f"{m['device_name']} ({m['device']}")
    fig.suptitle(f"fastinit vs torch.nn.init on {where}, torch {m['torch']}, "
                 f"{m['date'][:10]})", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7)
    return fig


def plot_throughput(run: BenchRun, path: str) -> str:
    """Write :func:`throughput_figure` as a PNG to ``path`` (whole or not at all)."""
    fig = throughput_figure(run)
    _replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    return path
