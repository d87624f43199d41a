"""``fastinit bench``: the command, and the benchmark engine behind it and ``bench/``.

Two sections:

* **functions**: each of the init functions in :data:`FUNCTIONS`, fastinit against
  ``torch.nn.init`` on the same tensor and device, for several dtypes and sizes. Reported:
  the median time, the effective bandwidth (bytes written / time, decimal GB/s), the
  percentage of a *write roofline* measured in the same run (``Tensor.zero_()`` of the
  same tensor, the simplest way torch writes those bytes; its fastest run, as a ceiling),
  and the speed-up over torch. A fill faster than its roofline means the roofline was
  slowed by other work: it is measured again, and if that does not settle it the
  percentage is not given (``roofline_unstable``).
* **models**: a Llama-shaped model (:mod:`fastinit.cli.models`) built in the ways torch
  offers - normal construction (torch's default init through each module's
  ``reset_parameters``), and meta + ``to_empty`` + ``reset_parameters`` (the FSDP2 recipe) -
  against meta + :func:`fastinit.materialize.materialize`; with transformers installed
  also ``LlamaForCausalLM`` built normally and materialized from meta. Beside them, the
  first-touch limit: ``torch.empty(n).zero_()`` and ``fastinit.uniform_`` of fresh memory
  of the parameter bytes. Reported: the median time, parameter bytes / time, the peak
  memory above the starting point as a multiple of the parameter bytes, and the speed-up
  of ``materialize``. Then the host cost per tensor: a model of 3,000 parameters of 4
  elements built eagerly, under ``empty_init`` + ``materialize`` and on meta +
  ``materialize`` (:func:`bench_small_tensors`).

Timing is :mod:`fastinit.cli.timing`'s, rendering :mod:`fastinit.cli.rendering`'s. Two
reports time nothing: ``--sass`` counts the GPU kernels' machine code
(:mod:`fastinit.cli.sass`), ``--asm`` the CPU loops' (:mod:`fastinit.cli.asm`).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import math
import os
import shlex
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

import fastinit
from fastinit.cli import rendering
from fastinit.cli.parser import (
    DISTRIBUTION_NAME, DTYPE_CHOICES, MODELS_CPU, MODELS_GPU, SIZES_CPU, SIZES_GPU, argtype,
    check_output_paths, CommandError, csv_list, device_arguments, dtype_or_auto, Formatter,
    models_arg, paragraphs, parse_size, positive_float, positive_int, setup_device, size_arg, dtype_arg)
from fastinit.cli.rendering import (JSON_SCHEMA, BenchRun, dtype_name, format_bytes,
                                    format_size)
from fastinit.cli.timing import DeviceTimer, machine_info

__all__ = ["run", "FunctionCase", "FUNCTIONS", "case_shape", "BenchRun", "bench_functions",
           "bench_models", "MODEL_METHODS", "has_transformers", "JSON_SCHEMA",
           "bench_small_tensors", "SMALL_METHODS", "SMALL_TENSORS"]

#: Version tag of the JSON output (bump on incompatible changes).


# --- the command ---------------------------------------------------------------------------


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``fastinit bench`` with parsed ``args`` (``argv``: the command line, recorded)."""
    check_output_paths({"--json": args.json, "--csv": args.csv, "--markdown": args.markdown,
                        "--plot": args.plot}, stdout=("--json", "--csv", "--markdown"))
    if args.sass and args.asm:
        raise CommandError("--sass (the GPU kernels) and --asm (the CPU loops) are two "
                           "reports: ask for one")
    if args.sass:
        if args.csv or args.plot:
            raise CommandError("--sass writes its records with --json and its table with "
                               "--markdown only (no --csv, no --plot)")
        from fastinit.cli.sass import sass_command

        return sass_command(args)
    if args.asm:
        if args.csv or args.plot or args.markdown:
            raise CommandError("--asm writes its records with --json only (no --csv, "
                               "--markdown or --plot)")
        from fastinit.cli.asm import asm_command

        return asm_command(args)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError(f"--plot needs matplotlib: pip install "
                               f"'{DISTRIBUTION_NAME}[bench]'") from None
    device = setup_device(args)
    gpu = device.type == "cuda"
    sizes = args.sizes or [parse_size(s) for s in (SIZES_GPU if gpu else SIZES_CPU).split(",")]
    models = args.models if args.models is not None else (
        MODELS_GPU if gpu else MODELS_CPU).split(",")
    model_dtype = args.model_dtype if args.model_dtype != "auto" else (
        torch.bfloat16 if gpu else torch.float32)
    functions = args.functions or list(FUNCTIONS)
    timer = DeviceTimer(device)
    _check_memory(timer, device, sizes, args.dtypes, models, model_dtype)

    with torch.random.fork_rng(devices=[device] if gpu else []):
        # fork_rng: an in-process call (tests, notebooks) leaves the caller's RNG alone
        torch.manual_seed(args.seed)
        results = BenchRun(machine_info(device), {
            "command": "fastinit " + " ".join(shlex.quote(a) for a in argv),
            "functions": functions, "dtypes": [dtype_name(d) for d in args.dtypes],
            "sizes": sizes, "repeats": args.repeats, "budget_s": args.budget,
            "models": models, "model_dtype": dtype_name(model_dtype),
            "model_repeats": args.model_repeats, "hf": not args.no_hf and has_transformers(),
            "seed": args.seed})
        results.functions = bench_functions(device, functions, args.dtypes, sizes,
                                            repeats=args.repeats, budget=args.budget,
                                            torch_baseline=not args.no_torch,
                                            quiet=args.quiet, timer=timer)
        if models:
            results.models = bench_models(device, models, model_dtype,
                                          repeats=args.model_repeats, hf=not args.no_hf,
                                          quiet=args.quiet, timer=timer)
            results.models += bench_small_tensors(device, model_dtype, timer=timer)
    _write_results(args, results)
    return 0


def _check_memory(timer: DeviceTimer, device: torch.device, sizes: Sequence[int],
                  dtypes: Sequence[torch.dtype], models: Sequence[str],
                  model_dtype: torch.dtype) -> None:
    from fastinit.cli.models import get_config, parameter_bytes

    free = timer.memory_available()
    if free is None:
        return
    biggest = max(sizes) * max(torch.empty((), dtype=d).element_size() for d in dtypes)
    if biggest > 0.8 * free:
        raise CommandError(f"--sizes: a {format_bytes(biggest)} tensor does not fit in the "
                           f"{format_bytes(free)} free on {device}; pass smaller --sizes")
    for m in models:
        need = 1.5 * parameter_bytes(get_config(m), model_dtype)
        if need > 0.9 * free:
            raise CommandError(f"--models: {m} needs about {format_bytes(need)} on {device}, "
                               f"{format_bytes(free)} free; pass a smaller model or "
                               "--models none")


def _write_results(args: argparse.Namespace, results: BenchRun) -> None:
    """Print the table and write the requested outputs (paths checked before the run)."""
    to_stdout = "-" in (args.json, args.csv, args.markdown)
    print(rendering.format_table(results), file=sys.stderr if to_stdout else sys.stdout)
    if args.plot:
        rendering.plot_throughput(results, args.plot)
    if args.json:
        rendering.write_text(args.json, rendering.to_json(results))
    if args.csv:
        rendering.write_text(args.csv, rendering.to_csv(results))
    if args.markdown:
        plot = None
        if args.plot:
            base = os.getcwd() if args.markdown == "-" else os.path.dirname(
                os.path.abspath(args.markdown))
            plot = os.path.relpath(os.path.abspath(args.plot), base)
        section = rendering.to_markdown(results, title=args.title, plot=plot,
                                        command=results.settings["command"])
        if args.markdown == "-":
            rendering.write_text("-", section)
        else:
            rendering.update_markdown_file(args.markdown, results, section)


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


def case_shape(numel: int) -> tuple[int, int]:
    """The 2-D shape benchmarked for ``numel`` elements (the fan-based inits need 2-D).

    Rows of up to 1024 columns: a Linear-like matrix whose fans are well defined.
    """
    cols = math.gcd(numel, 1024)
    return numel // cols, cols


# --- running ---------------------------------------------------------------------------------


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

    Each (dtype, size) gets one tensor; its roofline (``zero_()``, the fastest of its runs)
    is measured right before the functions, so the percentage compares numbers from the
    same minutes of the same run. No fill can beat ``zero_()`` of the same bytes: if one
    does, the roofline was slowed by other work, so it is measured again (the faster
    measurement counts); if a fill still beats it, the records of that (dtype, size) get
    ``roofline_unstable = True`` and no percentage.

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
                zero_s, _ = timer.median(t.zero_, repeats, budget=budget, stat=min)
                rows = []
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
                    rows.append({
                        "function": case.name,
                        "call": case.args,
                        "dtype": dtype_name(dtype),
                        "numel": t.numel(),
                        "shape": list(shape),
                        "bytes": nbytes,
                        "device": str(device),
                        "fastinit_s": ours,
                        "fastinit_gbps": _gbps(nbytes, ours),
                        "torch_s": theirs,
                        "torch_gbps": _gbps(nbytes, theirs),
                        "speedup": None if theirs is None else theirs / ours,
                        "repeats": n_ours,
                        "torch_repeats": n_theirs,
                        "torch_error": err,
                    })
                    bar.update()
                fastest = min(s for r in rows for s in (r["fastinit_s"], r["torch_s"])
                              if s is not None)
                unstable = False
                if fastest < zero_s:
                    zero_s = min(zero_s, timer.median(t.zero_, repeats, budget=budget,
                                                      stat=min)[0])
                    unstable = fastest < zero_s
                for r in rows:
                    r.update(_roofline_fields(r, zero_s, nbytes, unstable))
                results += rows
                del t
    finally:
        bar.close()
    return results


def _roofline_fields(record: dict, zero_s: float, nbytes: int, unstable: bool) -> dict:
    theirs = record["torch_s"]
    return {
        "pct_roofline": None if unstable else 100.0 * zero_s / record["fastinit_s"],
        "torch_pct_roofline": None if unstable or theirs is None else 100.0 * zero_s / theirs,
        "roofline_s": zero_s,
        "roofline_gbps": _gbps(nbytes, zero_s),
        "roofline_unstable": unstable,
    }


# --- the model section ----------------------------------------------------------------------


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
    from fastinit.cli.models import LlamaShaped
    from fastinit.materialize import materialize

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

    from fastinit.cli.models import hf_config
    from fastinit.materialize import materialize

    with _default_dtype(dtype), torch.device("meta"):
        model = LlamaForCausalLM(hf_config(cfg))
    return materialize(model, device, seed=0, progress=False)


def _build_hf_empty_init(cfg, device, dtype):
    from transformers import LlamaForCausalLM

    import fastinit
    from fastinit.cli.models import hf_config

    with _default_dtype(dtype), fastinit.empty_init():
        model = LlamaForCausalLM(hf_config(cfg))
    return fastinit.materialize(model, device, seed=0, progress=False)


def _hf_meta_build(cfg, device, dtype):
    from transformers import LlamaForCausalLM

    from fastinit.cli.models import hf_config

    with _default_dtype(dtype), torch.device("meta"):
        return LlamaForCausalLM(hf_config(cfg))


def _hf_recorded_build(cfg, device, dtype):
    from transformers import LlamaForCausalLM

    import fastinit
    from fastinit.cli.models import hf_config

    with _default_dtype(dtype), fastinit.empty_init():
        return LlamaForCausalLM(hf_config(cfg))


def _fresh(cfg, device, dtype) -> torch.Tensor:
    return torch.empty(cfg.num_parameters(), dtype=dtype, device=device)


def _zero_fresh(cfg, device, dtype):
    """The first-touch limit: ``zero_()`` of fresh memory of the parameter bytes."""
    return _fresh(cfg, device, dtype).zero_()


def _uniform_fresh(cfg, device, dtype):
    """A fill of fresh memory of the parameter bytes (what the model's Linear layers draw)."""
    return fastinit.uniform_(_fresh(cfg, device, dtype), -0.1, 0.1)


#: (key, label, builder, needs transformers). The label is what tables show. The two
#: ``fresh`` rows write fresh memory of the parameter bytes (no model): the first-touch
#: limit of a materialize. The last two build without materializing: what recording
#: construction costs over a plain meta build.
MODEL_METHODS: list[tuple[str, str, Callable, bool]] = [
    ("torch_construct", "torch: LlamaShaped(cfg) on the device", _build_torch, False),
    ("torch_to_empty", "torch: meta + to_empty + reset_parameters", _build_to_empty, False),
    ("fastinit_materialize", "fastinit: meta + materialize", _build_materialize, False),
    ("fresh_zero", "limit: torch.empty(n).zero_(), n = parameters (fresh memory)",
     _zero_fresh, False),
    ("fresh_uniform", "fastinit.uniform_(torch.empty(n)) (fresh memory)", _uniform_fresh,
     False),
    ("hf_construct", "transformers: LlamaForCausalLM(config)", _build_hf, True),
    ("hf_materialize", "fastinit: LlamaForCausalLM on meta + materialize",
     _build_hf_materialize, True),
    ("hf_empty_init", "fastinit: LlamaForCausalLM in empty_init + materialize",
     _build_hf_empty_init, True),
    ("hf_meta_build", "build only: LlamaForCausalLM on meta", _hf_meta_build, True),
    ("hf_recorded_build", "build only: LlamaForCausalLM in empty_init", _hf_recorded_build,
     True),
]


# --- many small tensors: the host cost per tensor ---------------------------------------------

#: The small-tensor case: parameters and elements per parameter.
SMALL_TENSORS = (3000, 4)


class _SmallTensors(torch.nn.Module):
    """``SMALL_TENSORS[0]`` parameters of ``SMALL_TENSORS[1]`` elements, each drawn by
    ``reset_parameters()`` at construction (what thousands of norms or unfused experts
    cost per tensor)."""

    def __init__(self) -> None:
        super().__init__()
        count, numel = SMALL_TENSORS
        self.params = torch.nn.ParameterList(
            torch.nn.Parameter(torch.empty(numel)) for _ in range(count))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.params:
            torch.nn.init.normal_(p, std=0.02)


def _small_eager(device, dtype):
    with _default_dtype(dtype), torch.device(device):
        return _SmallTensors()


def _small_empty_init(device, dtype):
    with _default_dtype(dtype), fastinit.empty_init():
        model = _SmallTensors()
    return fastinit.materialize(model, device, seed=0, progress=False)


def _small_meta(device, dtype):
    from fastinit.materialize import materialize

    with _default_dtype(dtype), torch.device("meta"):
        model = _SmallTensors()
    return materialize(model, device, seed=0, progress=False)


#: The small-tensor rows: (key, label, builder).
SMALL_METHODS: list[tuple[str, str, Callable]] = [
    ("small_construct", "torch: construction on the device", _small_eager),
    ("small_empty_init", "fastinit: empty_init + materialize", _small_empty_init),
    ("small_materialize", "fastinit: meta + materialize", _small_meta),
]


def bench_small_tensors(device: torch.device, dtype: torch.dtype, *, repeats: int = 5,
                        timer: DeviceTimer | None = None) -> list[dict]:
    """Time building a model of :data:`SMALL_TENSORS` tiny parameters in the
    :data:`SMALL_METHODS` ways, interleaved (one build of each per round), medians.

    Returns records shaped as :func:`bench_models`' (``model`` = ``"3000x4"``);
    ``materialize_speedup`` is relative to ``empty_init`` + ``materialize``."""
    timer = timer or DeviceTimer(device)
    count, numel = SMALL_TENSORS
    times: dict[str, list[float]] = {key: [] for key, _, _ in SMALL_METHODS}
    for _, _, build in SMALL_METHODS:  # warm-up
        build(device, dtype)
    for _ in range(repeats):
        for key, _, build in SMALL_METHODS:
            gc.collect()
            holder = []
            times[key].append(timer.wall(lambda: holder.append(build(device, dtype))))
            del holder
    nbytes = count * numel * torch.empty((), dtype=dtype).element_size()
    ref = statistics.median(times["small_empty_init"])
    rows = []
    for key, label, _ in SMALL_METHODS:
        secs = statistics.median(times[key])
        rows.append({"model": f"{count}x{numel}", "method": key, "label": label,
                     "dtype": dtype_name(dtype), "device": str(device), "params": count * numel,
                     "bytes": nbytes, "seconds": secs, "gbps": _gbps(nbytes, secs),
                     "peak_bytes": None, "peak_x_params": None, "repeats": repeats,
                     "materialize_speedup": secs / ref})
    return rows


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


# --- the command's arguments -----------------------------------------------------------


@argtype
def _function_name(name: str) -> str:

    key = name if name.endswith("_") else name + "_"
    if key not in FUNCTIONS:
        raise ValueError(f"unknown function {name!r}; choose from {', '.join(FUNCTIONS)}")
    return key


def add_parser(sub) -> argparse.ArgumentParser:
    """``fastinit bench``: its flags in groups (what to time, how, where results go)."""
    from fastinit.cli.models import CONFIGS

    b = sub.add_parser(
        "bench", formatter_class=Formatter,
        help="time the init functions and model materialization against torch",
        description=paragraphs(
            "Time fastinit's init functions against torch.nn.init on the same tensor and "
            "device, with the write roofline (zero_() of the same bytes) measured in the same "
            "run, and materialize of Llama-shaped models against torch's ways of building "
            "them.",
            "CPU timings: time.perf_counter, median of --repeats. GPU timings: CUDA "
            "events, median of --repeats. GB/s = bytes written / time (10^9 B/s). "
            "% roofline = zero_() time / fill time; a zero_() slower than a fill (other work "
            "on the machine) is measured again, and the percentage is marked 'unstable' if "
            f"it stays so. Default sizes: {SIZES_CPU} elements on a CPU, {SIZES_GPU} on a GPU; "
            f"default models: {MODELS_CPU} on a CPU, {MODELS_GPU} on a GPU.",
            "Every output path is checked before the benchmark starts. Example: fastinit "
            "bench --sizes 2^20,2^24 --markdown bench/RESULTS.md --plot "
            "bench/throughput_cpu.png"))
    b.set_defaults(command="bench")
    device_arguments(b)
    what = b.add_argument_group("what to time")
    what.add_argument("--functions", type=csv_list(_function_name, "functions"),
                      default=None, metavar="F[,F...]",
                      help=f"functions to time, of: {', '.join(FUNCTIONS)} (default: all)")
    what.add_argument("--dtypes", type=csv_list(dtype_arg, "dtypes"),
                      default="float32,bfloat16", metavar="D[,D...]",
                      help=f"dtypes, of: {DTYPE_CHOICES}")
    what.add_argument("--sizes", type=csv_list(size_arg, "sizes"), default=None,
                      metavar="N[,N...]",
                      help="tensor sizes in elements, e.g. 2^16,2^20 or 65536 (default: by "
                           "device)")
    what.add_argument("--models", type=models_arg, default=None, metavar="M[,M...]",
                      help=f"Llama-shaped models for the model section, of: "
                           f"{', '.join(CONFIGS)}; 'none' skips the section (default: by "
                           "device)")
    what.add_argument("--model-dtype", type=dtype_or_auto, default="auto",
                      metavar="{auto,float32,bfloat16,float16,float64}",
                      help="dtype of the model section ('auto': bfloat16 on a GPU, float32 "
                           "on a CPU)")
    what.add_argument("--no-hf", action="store_true",
                      help="skip the transformers LlamaForCausalLM rows of the model section")
    what.add_argument("--no-torch", action="store_true",
                      help="skip the torch.nn.init baselines of the function section")
    what.add_argument("--sass", action="store_true",
                      help="no timing: compile every kernel variant for sm_90 (no GPU needed) "
                           "and report SASS instructions per element and the predicted "
                           "H100/H200 ceiling (with --json / --markdown as below)")
    what.add_argument("--asm", action="store_true",
                      help="no timing: compile the CPU backend's fill loops afresh for this "
                           "CPU (x86-64) and report each hot loop's instructions per element "
                           "from the assembly (with --json as below)")
    how = b.add_argument_group("how")
    how.add_argument("--repeats", type=positive_int, default=5,
                     help="timed runs per case (the median is reported)")
    how.add_argument("--budget", type=positive_float, default=10.0,
                     help="seconds per case at most: slow baselines get fewer runs (>= 3)")
    how.add_argument("--model-repeats", type=positive_int, default=3,
                     help="builds per model and method (the median is reported)")
    how.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the run")
    how.add_argument("--quiet", action="store_true", help="no progress bars")
    out = b.add_argument_group("results (the table is always printed)")
    out.add_argument("--json", metavar="PATH", help="write the results as JSON ('-': stdout)")
    out.add_argument("--csv", metavar="PATH", help="write the results as CSV ('-': stdout)")
    out.add_argument("--markdown", metavar="PATH",
                     help="write this machine's section of a results Markdown file (replaced "
                          "if present, e.g. bench/RESULTS.md; '-': stdout)")
    out.add_argument("--title", help="heading of the Markdown section (default: device and "
                                     "date)")
    out.add_argument("--plot", metavar="PNG", help="write a plot of GB/s against size (PNG)")
    return b
