"""The benchmark engine behind ``fastinit bench`` and ``bench/benchmark_*.py``.

Two sections:

* **functions**: each of the init functions in :data:`FUNCTIONS`, fastinit against
  ``torch.nn.init`` on the same tensor and device, for several dtypes and sizes. Reported:
  the median time, the effective bandwidth (bytes written / time, decimal GB/s), the
  percentage of a *write roofline* measured in the same run (``Tensor.zero_()`` of the
  same tensor, the simplest way torch writes those bytes; its fastest run, as a ceiling),
  and the speed-up over torch.
* **models**: a Llama-shaped model (:mod:`fastinit.cli.models`) built in the ways torch
  offers - normal construction (torch's default init through each module's
  ``reset_parameters``), and meta + ``to_empty`` + ``reset_parameters`` (the FSDP2 recipe) -
  against meta + :func:`fastinit.materialize.materialize`; with transformers installed
  also ``LlamaForCausalLM`` built normally and materialized from meta. Reported: the
  median time, parameter bytes / time, the peak memory above the starting point as a
  multiple of the parameter bytes, and the speed-up of ``materialize``.

Timing (:class:`DeviceTimer`, the only place that knows how to time a device): on a GPU,
CUDA events around each measurement (the device time, no host-side noise); on the CPU,
``time.perf_counter``. Small cases are repeated inside one measurement until it lasts
at least ``min_time`` (as ``timeit.autorange`` does) so that clock resolution does not
matter; the reported value is the median over ``repeats`` measurements.

Every result is recorded with the machine it ran on (:func:`machine_info`: device, GPU or
CPU name, threads, versions, date). Renderers: :func:`format_table` (terminal),
:func:`to_json`, :func:`to_csv`, :func:`to_markdown` (and :func:`update_markdown_file`
for ``bench/RESULTS.md``, one section per machine) and :func:`plot_throughput` (PNG).
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import functools
import gc
import io
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

import fastinit

__all__ = [
    "FunctionCase", "FUNCTIONS", "DTYPES", "parse_dtype", "parse_size", "case_shape",
    "DeviceTimer", "resolve_device", "machine_info", "BenchRun", "bench_functions",
    "bench_models", "MODEL_METHODS", "format_table", "to_json", "to_csv", "to_markdown",
    "update_markdown_file", "plot_throughput", "JSON_SCHEMA",
]

#: Version tag of the JSON output (bump on incompatible changes).
JSON_SCHEMA = "fastinit.bench/1"

# --- the cases ------------------------------------------------------------------------------

#: Number of layers assumed by the ``scaled_residual_`` case (Llama 3 8B has 32).
RESIDUAL_LAYERS = 32


@dataclass(frozen=True)
class FunctionCase:
    """One init function and its torch equivalent, with the arguments benchmarked."""

    name: str
    args: str  # the call, for tables and docs
    fastinit: Callable[[torch.Tensor], Any]
    torch: Callable[[torch.Tensor], Any]


def _residual_torch(t: torch.Tensor) -> torch.Tensor:
    # torch has no scaled_residual_: GPT-2 / Megatron write normal_(0, std / sqrt(2 L)).
    return torch.nn.init.normal_(t, 0.0, 0.02 / math.sqrt(2 * RESIDUAL_LAYERS))


#: The benchmarked functions, with typical transformer arguments. Both sides get the
#: same 2-D tensor (see :func:`case_shape`); fastinit draws its key from torch's default
#: generator, as a user call without ``seed=`` does.
FUNCTIONS: dict[str, FunctionCase] = {c.name: c for c in (
    FunctionCase("uniform_", "uniform_(t, -0.1, 0.1)",
                 lambda t: fastinit.uniform_(t, -0.1, 0.1),
                 lambda t: torch.nn.init.uniform_(t, -0.1, 0.1)),
    FunctionCase("normal_", "normal_(t, 0, 0.02)",
                 lambda t: fastinit.normal_(t, 0.0, 0.02),
                 lambda t: torch.nn.init.normal_(t, 0.0, 0.02)),
    FunctionCase("trunc_normal_", "trunc_normal_(t, 0, 0.02, -0.04, 0.04)",
                 lambda t: fastinit.trunc_normal_(t, 0.0, 0.02, -0.04, 0.04),
                 lambda t: torch.nn.init.trunc_normal_(t, 0.0, 0.02, -0.04, 0.04)),
    FunctionCase("xavier_uniform_", "xavier_uniform_(t)",
                 fastinit.xavier_uniform_, torch.nn.init.xavier_uniform_),
    FunctionCase("xavier_normal_", "xavier_normal_(t)",
                 fastinit.xavier_normal_, torch.nn.init.xavier_normal_),
    FunctionCase("kaiming_uniform_", "kaiming_uniform_(t, a=sqrt(5))  (nn.Linear's init)",
                 lambda t: fastinit.kaiming_uniform_(t, a=math.sqrt(5)),
                 lambda t: torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))),
    FunctionCase("kaiming_normal_", "kaiming_normal_(t, nonlinearity='relu')",
                 lambda t: fastinit.kaiming_normal_(t, nonlinearity="relu"),
                 lambda t: torch.nn.init.kaiming_normal_(t, nonlinearity="relu")),
    FunctionCase("scaled_residual_",
                 f"scaled_residual_(t, 0.02, num_layers={RESIDUAL_LAYERS})  "
                 f"(torch: normal_(t, 0, 0.02 / sqrt({2 * RESIDUAL_LAYERS})))",
                 lambda t: fastinit.scaled_residual_(t, 0.02, num_layers=RESIDUAL_LAYERS),
                 _residual_torch),
)}

#: dtype names accepted on the command line.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str) -> torch.dtype:
    """A dtype from its name (``float32``/``fp32``, ``bfloat16``/``bf16``, ...)."""
    try:
        return DTYPES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose from float32 (fp32), bfloat16 "
                         "(bf16), float16 (fp16), float64 (fp64)") from None


def parse_size(text: str) -> int:
    """A number of elements: ``1048576``, ``2^20``, ``2**20`` or ``1<<20``."""
    s = text.strip().replace(" ", "")
    m = re.fullmatch(r"(?:2(?:\^|\*\*)|1<<)(\d+)", s)
    try:
        n = 1 << int(m.group(1)) if m else int(s.replace("_", ""))
    except ValueError:
        raise ValueError(f"bad size {text!r}: give a number of elements, e.g. 1048576 or "
                         "2^20") from None
    if n < 1:
        raise ValueError(f"bad size {text!r}: must be at least 1 element")
    return n


def case_shape(numel: int) -> tuple[int, int]:
    """The 2-D shape benchmarked for ``numel`` elements (the fan-based inits need 2-D).

    Rows of up to 1024 columns: a Linear-like matrix whose fans are well defined.
    """
    cols = math.gcd(numel, 1024)
    return numel // cols, cols


def format_size(n: int) -> str:
    """``2^20`` for powers of two, the number otherwise."""
    return f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n)


# --- devices and timing --------------------------------------------------------------------


def resolve_device(name: str | None) -> torch.device:
    """``None`` / ``"auto"``: CUDA when available, else the CPU. Raises ``ValueError`` for a
    device this machine does not have."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"bad device {name!r}: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available on this machine "
                             "(this torch build: " + torch.__version__ + ")")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices")
    elif dev.type not in ("cpu",):
        raise ValueError(f"device {name!r}: fastinit bench runs on 'cpu' or 'cuda'")
    return dev


class DeviceTimer:
    """Times callables on one device; the only device-specific code of the benchmarks.

    Args:
        device: where the work runs
        min_time: the shortest single measurement (seconds); faster calls are repeated
            inside a measurement and the time divided
    """

    def __init__(self, device: torch.device | str, min_time: float | None = None) -> None:
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        # GPU events resolve ~0.5 us; the CPU clock is fine, but Python call overhead and
        # OS noise call for a longer floor.
        self.min_time = min_time if min_time is not None else (1e-3 if self.is_cuda else 5e-3)

    def sync(self) -> None:
        """Wait for the device to finish queued work."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def _measure(self, fn: Callable[[], Any], inner: int) -> float:
        if self.is_cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            stream = torch.cuda.current_stream(self.device)  # where fastinit and torch launch
            start.record(stream)
            for _ in range(inner):
                fn()
            end.record(stream)
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return time.perf_counter() - t0

    def wall(self, fn: Callable[[], Any]) -> float:
        """One call, host wall clock, synchronized on both sides (for whole-model builds)."""
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t0

    def median(self, fn: Callable[[], Any], repeats: int = 5, *, warmup: int = 1,
               budget: float | None = None, min_repeats: int = 3,
               stat: Callable[[list[float]], float] = statistics.median) -> tuple[float, int]:
        """Median seconds per call of ``fn`` over ``repeats`` measurements.

        ``budget`` (seconds) caps the time spent on one case: slow calls (torch's
        ``trunc_normal_`` on a CPU) get fewer measurements, never fewer than
        ``min(min_repeats, repeats)``. ``stat`` reduces the measurements (``min`` for a
        ceiling such as the roofline). Returns ``(seconds, measurements taken)``.
        """
        for _ in range(warmup):  # JIT loading, kernel compilation, first-touch page faults
            self._measure(fn, 1)
        first = self._measure(fn, 1)
        inner = 1
        if first < self.min_time:
            inner = min(1000, math.ceil(self.min_time / max(first, 1e-7)))
        n = repeats
        if budget is not None and first * inner * repeats > budget:
            n = max(min(min_repeats, repeats), int(budget / (first * inner)))
        times = [self._measure(fn, inner) / inner for _ in range(n)]
        return stat(times), n

    def memory_available(self) -> int | None:
        """Free memory of the device in bytes (``None`` if unknown)."""
        if self.is_cuda:
            return torch.cuda.mem_get_info(self.device)[0]
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    @contextlib.contextmanager
    def peak_memory(self) -> Iterator[dict]:
        """Peak memory above the starting point while the block runs, in ``box["bytes"]``.

        CUDA: ``max_memory_allocated``. CPU (Linux): the resident-set high-water mark
        (``VmHWM``), reset by writing 5 to ``/proc/self/clear_refs`` after freed heap
        memory is returned to the OS; ``None`` elsewhere. Collect garbage before entering.
        """
        box: dict = {"bytes": None}
        if self.is_cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            yield box
            self.sync()
            box["bytes"] = torch.cuda.max_memory_allocated(self.device) - base
            return
        _release_freed_memory()  # else reused heap pages would not raise the mark
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _proc_status_kib("VmRSS")
        except OSError:
            base = None
        yield box
        if base is not None:
            box["bytes"] = (_proc_status_kib("VmHWM") - base) * 1024


def _proc_status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"{field_name} not in /proc/self/status")


# --- the machine ---------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed, or no metadata
        return None


def machine_info(device: torch.device | str) -> dict:
    """What a result was measured on: device, its name, CPU, threads, versions, date."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_name()
    return {
        "device": str(device),
        "device_type": device.type,
        "device_name": name,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "numba": _version("numba"),
        "numpy": _version("numpy"),
        "transformers": _version("transformers"),
        "fastinit": fastinit.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --- running ---------------------------------------------------------------------------------


@dataclass
class BenchRun:
    """Everything one ``fastinit bench`` produced: the machine, the settings, the results."""

    machine: dict
    settings: dict
    functions: list[dict] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"schema": JSON_SCHEMA, "machine": self.machine, "settings": self.settings,
                "functions": self.functions, "models": self.models}


def _gbps(nbytes: int, seconds: float | None) -> float | None:
    return None if not seconds else nbytes / seconds / 1e9


def _progress(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def bench_functions(device: torch.device, functions: Sequence[str],
                    dtypes: Sequence[torch.dtype], sizes: Sequence[int], *,
                    repeats: int = 5, budget: float = 10.0,
                    torch_baseline: bool = True, quiet: bool = False,
                    timer: DeviceTimer | None = None) -> list[dict]:
    """Time every function x dtype x size on ``device`` against torch and ``zero_()``.

    Each (dtype, size) gets one tensor; its roofline (``zero_()``) is measured right before
    the functions, so the percentage compares numbers from the same minutes of the same run.

    Returns one record (a dict, see ``JSON_SCHEMA``) per function x dtype x size.
    """
    timer = timer or DeviceTimer(device)
    cases = [FUNCTIONS[f] for f in functions]
    results = []
    bar = _progress(len(dtypes) * len(sizes) * len(cases), "functions", quiet)
    try:
        for dtype in dtypes:
            for numel in sizes:
                shape = case_shape(numel)
                t = torch.empty(shape, dtype=dtype, device=device)
                nbytes = t.numel() * t.element_size()
                # The roofline is a ceiling: the fastest of its runs (the functions get
                # their median), so a noisy machine cannot inflate the percentage.
                zero_s, _ = timer.median(t.zero_, repeats, budget=budget, stat=min)
                for case in cases:
                    bar.set_postfix_str(f"{case.name} {dtype_name(dtype)} {format_size(numel)}")
                    ours, n_ours = timer.median(functools.partial(case.fastinit, t), repeats,
                                                budget=budget)
                    theirs = n_theirs = err = None
                    if torch_baseline:
                        try:
                            theirs, n_theirs = timer.median(functools.partial(case.torch, t),
                                                            repeats, budget=budget)
                        except (RuntimeError, NotImplementedError, ValueError) as exc:
                            err = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    results.append({
                        "function": case.name,
                        "call": case.args,
                        "dtype": dtype_name(dtype),
                        "numel": t.numel(),
                        "shape": list(shape),
                        "bytes": nbytes,
                        "device": str(device),
                        "fastinit_s": ours,
                        "fastinit_gbps": _gbps(nbytes, ours),
                        "pct_roofline": 100.0 * zero_s / ours,
                        "torch_s": theirs,
                        "torch_gbps": _gbps(nbytes, theirs),
                        "torch_pct_roofline": None if theirs is None else 100.0 * zero_s / theirs,
                        "roofline_s": zero_s,
                        "roofline_gbps": _gbps(nbytes, zero_s),
                        "speedup": None if theirs is None else theirs / ours,
                        "repeats": n_ours,
                        "torch_repeats": n_theirs,
                        "torch_error": err,
                    })
                    bar.update()
                del t
    finally:
        bar.close()
    return results


# --- the model section ----------------------------------------------------------------------


def _release_freed_memory() -> None:
    """Return freed heap memory to the OS before a CPU peak-memory measurement.

    glibc keeps freed blocks below its (dynamic, up to 32 MiB) mmap threshold in the heap:
    the next measurement would start from an inflated RSS and reuse that memory without
    raising the high-water mark, under-reporting its peak. ``malloc_trim(0)`` releases the
    free pages (they fault back in, and count, when reused). A no-op without glibc.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_all(module: torch.nn.Module) -> None:
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


def _build_torch(cfg, device, dtype):
    from fastinit.cli.models import LlamaShaped

    return LlamaShaped(cfg, device=device, dtype=dtype)


def _build_to_empty(cfg, device, dtype):
    from fastinit.cli.models import LlamaShaped

    model = LlamaShaped(cfg, device="meta", dtype=dtype)
    model.to_empty(device=device)
    _reset_all(model)
    return model


def _build_materialize(cfg, device, dtype):
    from fastinit.materialize import materialize
    from fastinit.cli.models import LlamaShaped

    model = LlamaShaped(cfg, device="meta", dtype=dtype)
    return materialize(model, device, seed=0, progress=False)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _build_hf(cfg, device, dtype):
    from transformers import LlamaForCausalLM

    from fastinit.cli.models import hf_config

    # transformers builds in the default dtype on the current default device.
    with _default_dtype(dtype), torch.device(device):
        return LlamaForCausalLM(hf_config(cfg))


def _build_hf_materialize(cfg, device, dtype):
    from transformers import LlamaForCausalLM

    from fastinit.materialize import materialize
    from fastinit.cli.models import hf_config

    with _default_dtype(dtype), torch.device("meta"):
        model = LlamaForCausalLM(hf_config(cfg))
    return materialize(model, device, seed=0, progress=False)


#: (key, label, builder, needs transformers). The label is what tables show.
MODEL_METHODS: list[tuple[str, str, Callable, bool]] = [
    ("torch_construct", "torch: LlamaShaped(cfg) on the device", _build_torch, False),
    ("torch_to_empty", "torch: meta + to_empty + reset_parameters", _build_to_empty, False),
    ("fastinit_materialize", "fastinit: meta + materialize", _build_materialize, False),
    ("hf_construct", "transformers: LlamaForCausalLM(config)", _build_hf, True),
    ("hf_materialize", "fastinit: LlamaForCausalLM on meta + materialize",
     _build_hf_materialize, True),
]


def _timed_build(timer: DeviceTimer, build: Callable, cfg, device, dtype) -> float:
    """Seconds to build one model; the model is dropped on return (so it can be freed)."""
    holder = []
    return timer.wall(lambda: holder.append(build(cfg, device, dtype)))


def has_transformers() -> bool:
    """Whether ``transformers.LlamaForCausalLM`` can be imported."""
    try:
        from transformers import LlamaForCausalLM  # noqa: F401
    except Exception:
        return False
    return True


def bench_models(device: torch.device, models: Sequence[str], dtype: torch.dtype, *,
                 repeats: int = 3, hf: bool = True, quiet: bool = False,
                 timer: DeviceTimer | None = None) -> list[dict]:
    """Time building each model in :data:`MODEL_METHODS` ways; peak memory of each.

    Each measurement builds a fresh model (the previous one is freed first). Every
    method is run once on the ``"tiny"`` config before timing, so one-time costs (JIT
    loading, kernel compilation, lazy imports) are not charged to the first method.
    The time reported is the median of ``repeats`` builds; the peak memory is the
    largest seen over them.
    """
    from fastinit.cli.models import get_config, parameter_bytes

    timer = timer or DeviceTimer(device)
    methods = [m for m in MODEL_METHODS if hf or not m[3]]
    if hf and not has_transformers():
        methods = [m for m in methods if not m[3]]
    results: list[dict] = []
    bar = _progress(len(models) * len(methods) * (repeats + 1), "models", quiet)
    try:
        for _, _, build, _ in methods:  # warm-up
            build(get_config("tiny"), device, dtype)
            gc.collect()
        for name in models:
            cfg = get_config(name)
            pbytes = parameter_bytes(cfg, dtype)
            rows = []
            for key, label, build, _ in methods:
                bar.set_postfix_str(f"{name} {key}")
                times, peaks = [], []
                for _ in range(repeats):
                    gc.collect()
                    with timer.peak_memory() as peak:
                        times.append(_timed_build(timer, build, cfg, device, dtype))
                    gc.collect()
                    if peak["bytes"] is not None:
                        peaks.append(peak["bytes"])
                    bar.update()
                bar.update()  # the warm-up share
                secs = statistics.median(times)
                rows.append({
                    "model": name,
                    "method": key,
                    "label": label,
                    "dtype": dtype_name(dtype),
                    "device": str(device),
                    "params": cfg.num_parameters(),
                    "bytes": pbytes,
                    "seconds": secs,
                    "gbps": _gbps(pbytes, secs),
                    "peak_bytes": max(peaks) if peaks else None,
                    "peak_x_params": max(peaks) / pbytes if peaks else None,
                    "repeats": repeats,
                })
            mat = next(r["seconds"] for r in rows if r["method"] == "fastinit_materialize")
            for r in rows:
                r["materialize_speedup"] = r["seconds"] / mat
            results += rows
    finally:
        bar.close()
    return results


# --- rendering -------------------------------------------------------------------------------

#: Columns of the terminal / Markdown function table: (header, record key, format).
FUNCTION_COLUMNS: list[tuple[str, str, str]] = [
    ("function", "function", "{}"),
    ("dtype", "dtype", "{}"),
    ("elements", "numel", "size"),
    ("fastinit ms", "fastinit_s", "ms"),
    ("fastinit GB/s", "fastinit_gbps", "gbps"),
    ("% roofline", "pct_roofline", "{:.0f}%"),
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


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
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
    return [[_fmt(r.get(k), spec) for _, k, spec in columns] for r in records]


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
CSV_MACHINE_FIELDS = ("device_name", "cpu", "threads", "torch", "triton", "numba", "fastinit",
                      "date")


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
    title = title or f"{m['device_name']} ({m['device_type']}), {m['date'][:10]}"
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
        out += ["Calls: " + "; ".join(f"`{v}`" for v in cases.values()) + ".", ""]
    if run.models:
        out += ["Model builds (median of "
                f"{run.settings.get('model_repeats', '?')}); GB/s = parameter bytes / time; "
                "peak mem = peak memory above the start / parameter bytes; materialize "
                "speed-up = time of the row / time of meta + materialize.", ""]
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
    with open(path, "w") as f:
        f.write(text)


def _figure(width: float, height: float):
    """A matplotlib Figure with an Agg canvas (no pyplot: no global state, no display)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install 'fastinit[bench]' "
                           "(or pip install matplotlib)") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_throughput(run: BenchRun, path: str) -> str:
    """Write a PNG of GB/s against bytes written, one panel per dtype, with the measured
    write roofline; fastinit solid, torch dashed in the same colour. Returns ``path``."""
    recs = run.functions
    if not recs:
        raise ValueError("no function results to plot")
    dtypes = list(dict.fromkeys(r["dtype"] for r in recs))
    funcs = list(dict.fromkeys(r["function"] for r in recs))
    fig = _figure(5.2 * len(dtypes) + 2.4, 4.4)
    axes = fig.subplots(1, len(dtypes), squeeze=False, sharey=True)[0]
    colors = {f: f"C{i}" for i, f in enumerate(funcs)}
    for ax, dt in zip(axes, dtypes, strict=True):
        sub = [r for r in recs if r["dtype"] == dt]
        roof = sorted({(r["bytes"], r["roofline_gbps"]) for r in sub})
        ax.plot([b for b, _ in roof], [g for _, g in roof], color="black", lw=2.5,
                label="write roofline: zero_()")
        for f in funcs:
            pts = sorted((r["bytes"], r["fastinit_gbps"], r["torch_gbps"]) for r in sub
                         if r["function"] == f)
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1] for p in pts], color=colors[f], marker="o", ms=3, lw=1.5,
                    label=f"fastinit.{f}")
            tpts = [(p[0], p[2]) for p in pts if p[2] is not None]
            if tpts:
                ax.plot([p[0] for p in tpts], [p[1] for p in tpts], color=colors[f], ls="--",
                        lw=1, alpha=0.7, label=f"torch.nn.init.{f}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("bytes written")
        ax.set_title(dt)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("GB/s (higher is better)")
    m = run.machine
    where = (f"{m['device_name']} (cpu, {m['threads']} thread{'' if m['threads'] == 1 else 's'}"
             if m["device_type"] == "cpu" else f"{m['device_name']} ({m['device_type']}")
    fig.suptitle(f"fastinit vs torch.nn.init on {where}, torch {m['torch']}, "
                 f"{m['date'][:10]})", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7)
    fig.savefig(path, dpi=110)
    return path
