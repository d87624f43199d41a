"""The ``fastinit`` command line: ``bench``, ``check`` and ``demo``.

``main(argv)`` returns the exit status (0 success, 1 a check or determinism failure, 2 a
usage or environment error); the ``fastinit`` console script and ``python -m fastinit``
both call it. Bad flags exit through argparse with status 2 and a usage message.
"""
from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import textwrap
from collections.abc import Callable, Sequence

import torch

import fastinit

__all__ = ["main", "build_parser"]

_SIZES_CPU = "2^16,2^20,2^22"
_SIZES_GPU = "2^16,2^20,2^24,2^28"
_MODELS_CPU = "tiny,125m"
_MODELS_GPU = "1b,8b"


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (except None ones), descriptions kept as paragraphs."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _paras(*paragraphs: str) -> str:
    """Paragraphs wrapped for the terminal (descriptions are printed raw)."""
    return "\n\n".join(textwrap.fill(p, 88) for p in paragraphs)


def _csv_list(parse: Callable[[str], object], what: str) -> Callable[[str], list]:
    """An argparse type: a comma-separated list, each item checked by ``parse``."""

    def convert(text: str) -> list:
        items = [t for t in (s.strip() for s in text.split(",")) if t]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list of {what}")
        out = []
        for item in items:
            try:
                out.append(parse(item))
            except ValueError as exc:  # (the _argtype ones raise ArgumentTypeError)
                raise argparse.ArgumentTypeError(str(exc)) from None
        return out

    return convert


def _argtype(fn: Callable[[str], object]) -> Callable[[str], object]:
    """Let argparse print ``fn``'s own ValueError message (it prints a generic one)."""

    def convert(text: str):
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = fn.__name__
    return convert


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return x


@_argtype
def _function_name(name: str) -> str:
    from fastinit.cli.bench import FUNCTIONS

    key = name if name.endswith("_") else name + "_"
    if key not in FUNCTIONS:
        raise ValueError(f"unknown function {name!r}; choose from {', '.join(FUNCTIONS)}")
    return key


@_argtype
def _model_name(name: str) -> str:
    from fastinit.cli.models import get_config

    get_config(name)
    return name


def _models_arg(text: str) -> list[str]:
    if text.strip().lower() == "none":
        return []
    return _csv_list(_model_name, "models")(text)


def _dtype_or_auto(text: str):
    from fastinit.cli.bench import parse_dtype

    if text == "auto":
        return "auto"
    try:
        return parse_dtype(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="'cpu', 'cuda', 'cuda:N', or 'auto' (CUDA when available)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for torch and fastinit's CPU backend (default: torch's "
                        "default)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastinit`` command."""
    from fastinit.cli.bench import FUNCTIONS
    from fastinit.cli.models import CONFIGS
    from fastinit.cli.check import DEFAULT_SAMPLES, DISTRIBUTIONS

    parser = argparse.ArgumentParser(
        prog="fastinit",
        description="fastinit: neural-network weight initialization with a counter-based "
                    "Philox stream, identical on the CPU and on any GPU.",
        epilog="Run 'fastinit COMMAND --help' for the flags of a command.")
    parser.add_argument("--version", action="version", version=f"fastinit {fastinit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # --- bench ---
    b = sub.add_parser(
        "bench", formatter_class=_Formatter,
        help="time the init functions and model materialization against torch",
        description=_paras(
            "Time fastinit's init functions against torch.nn.init on the same tensor and "
            "device, with the write roofline (zero_() of the same bytes) measured in the same "
            "run, and materialize of Llama-shaped models against torch's ways of building "
            "them.",
            "CPU timings: time.perf_counter, median of --repeats. GPU timings: CUDA "
            "events, median of --repeats. GB/s = bytes written / time (10^9 B/s). "
            f"Default sizes: {_SIZES_CPU} elements on a CPU, {_SIZES_GPU} on a GPU; default "
            f"models: {_MODELS_CPU} on a CPU, {_MODELS_GPU} on a GPU.",
            "Example: fastinit bench --sizes 2^20,2^24 --markdown bench/RESULTS.md "
            "--plot bench/throughput_cpu.png"))
    b.set_defaults(subparser=b)
    _common(b)
    b.add_argument("--functions", type=_csv_list(_function_name, "functions"),
                   default=None, metavar="F[,F...]",
                   help=f"functions to time, of: {', '.join(FUNCTIONS)} (default: all)")
    b.add_argument("--dtypes", type=_csv_list(_dtype_only, "dtypes"),
                   default="float32,bfloat16", metavar="D[,D...]",
                   help="dtypes: float32 (fp32), bfloat16 (bf16), float16 (fp16), float64 (fp64)")
    b.add_argument("--sizes", type=_csv_list(_size, "sizes"), default=None, metavar="N[,N...]",
                   help="tensor sizes in elements, e.g. 2^16,2^20 or 65536 (default: by device)")
    b.add_argument("--repeats", type=_positive_int, default=5,
                   help="timed runs per case (the median is reported)")
    b.add_argument("--budget", type=_positive_float, default=10.0,
                   help="seconds per case at most: slow baselines get fewer runs (>= 3)")
    b.add_argument("--models", type=_models_arg, default=None, metavar="M[,M...]",
                   help=f"Llama-shaped models for the model section, of: {', '.join(CONFIGS)}; "
                        "'none' skips the section (default: by device)")
    b.add_argument("--model-dtype", type=_dtype_or_auto, default="auto",
                   help="dtype of the model section ('auto': bfloat16 on a GPU, float32 on a CPU)")
    b.add_argument("--model-repeats", type=_positive_int, default=3,
                   help="builds per model and method (the median is reported)")
    b.add_argument("--no-hf", action="store_true",
                   help="skip the transformers LlamaForCausalLM rows of the model section")
    b.add_argument("--no-torch", action="store_true",
                   help="skip the torch.nn.init baselines of the function section")
    b.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the run")
    b.add_argument("--json", metavar="PATH", help="write the results as JSON ('-': stdout)")
    b.add_argument("--csv", metavar="PATH", help="write the results as CSV ('-': stdout)")
    b.add_argument("--markdown", metavar="PATH",
                   help="write this machine's section of a results Markdown file (replaced if "
                        "present, e.g. bench/RESULTS.md; '-': stdout)")
    b.add_argument("--title", help="heading of the Markdown section (default: device and date)")
    b.add_argument("--plot", metavar="PNG", help="write a plot of GB/s against size (PNG)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.add_argument("--sass", action="store_true",
                   help="no timing: compile every kernel variant for sm_90 (no GPU needed) and "
                        "report SASS instructions per element and the predicted H100/H200 "
                        "ceiling (with --json / --markdown as above)")

    # --- check ---
    c = sub.add_parser(
        "check", formatter_class=_Formatter,
        help="statistical report: every distribution x dtype against its exact law",
        description=_paras(
            "Draw every distribution (uniform, normal, a battery of truncated normals) in "
            "every dtype with fixed seeds and compare it with the exact law: KS statistic and "
            "p-value (fail if p < 1e-6), mean and variance (fail beyond 5 standard errors), "
            "bounds; bfloat16/float16 against the exact law of the rounded values. Writes a "
            "PNG per check (histogram with the reference density, QQ plot), report.md and "
            "report.html to --out, prints a summary, and exits 1 if any check fails.",
            "Needs scipy and matplotlib: pip install 'fastinit[test]'."))
    c.set_defaults(subparser=c)
    c.add_argument("--device", default="cpu",
                   help="where to draw the values: 'cpu' (the reference backend) or 'cuda' "
                        "(checks the GPU kernels)")
    c.add_argument("--out", default="fastinit-check", metavar="DIR",
                   help="directory for the figures and the report")
    c.add_argument("--samples", type=_positive_int, default=DEFAULT_SAMPLES,
                   help="values drawn per check (at least 1000)")
    c.add_argument("--dtypes", type=_csv_list(_dtype_only, "dtypes"),
                   default=None, metavar="D[,D...]",
                   help="dtypes to check (default: float32, bfloat16, float16, float64)")
    c.add_argument("--dists", type=_csv_list(_dist_name, "distributions"), default=None,
                   metavar="NAME[,NAME...]",
                   help=f"distributions to check, of: {', '.join(DISTRIBUTIONS)} (default: all)")
    c.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    # Hidden: draw from a deliberately wrong law (spread x FACTOR) to see the report fail.
    c.add_argument("--perturb-std", type=_positive_float, default=1.0, help=argparse.SUPPRESS)

    # --- demo ---
    d = sub.add_parser(
        "demo", formatter_class=_Formatter,
        help="build a Llama-shaped model on meta and materialize it (vs torch's own init)",
        description=_paras(
            "Build a Llama-shaped model on the meta device, materialize it with fastinit on "
            "the best device available, and compare with building it normally in torch "
            "(torch's default init at construction). Prints the size, the times, the "
            "throughput, the speed-up and a determinism fingerprint (sha256 of the weights), "
            "checked against a second materialize with the same seed.",
            "Models: "
            + ", ".join(f"{k} ({v.num_parameters() / 1e6:,.0f}M)" for k, v in CONFIGS.items())
            + ". The default finishes in seconds on a laptop CPU; pass --model 1b or 8b for "
            "the real thing on a GPU."))
    d.set_defaults(subparser=d)
    _common(d)
    d.add_argument("--model", type=_model_name, default="125m",
                   help=f"model shape, of: {', '.join(CONFIGS)}")
    d.add_argument("--dtype", type=_dtype_or_auto, default="auto",
                   help="parameter dtype ('auto': bfloat16 on a GPU, float32 on a CPU)")
    d.add_argument("--seed", type=int, default=0, help="materialize seed")
    d.add_argument("--no-baseline", action="store_true",
                   help="skip building the model with torch (saves time and memory)")
    return parser


@_argtype
def _dtype_only(text: str) -> torch.dtype:
    from fastinit.cli.bench import parse_dtype

    return parse_dtype(text)


@_argtype
def _size(text: str) -> int:
    from fastinit.cli.bench import parse_size

    return parse_size(text)


@_argtype
def _dist_name(text: str) -> str:
    from fastinit.cli.check import DISTRIBUTIONS

    if text not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {text!r}; choose from {', '.join(DISTRIBUTIONS)}")
    return text


# --- helpers ------------------------------------------------------------------------------------


def _write_out(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _setup_device(args, parser: argparse.ArgumentParser) -> torch.device:
    from fastinit.cli.bench import resolve_device

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        return resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n} B"


def _device_text(machine: dict) -> str:
    if machine["device_type"] == "cpu":
        n = machine["threads"]
        return f"cpu ({machine['device_name']}, {n} thread{'' if n == 1 else 's'})"
    return f"{machine['device']} ({machine['device_name']})"


# --- commands -------------------------------------------------------------------------------------


def _cmd_bench(args, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    if args.sass:
        from fastinit.cli.sass import sass_command

        return sass_command(args)
    from fastinit.cli import bench as B
    from fastinit.cli.models import get_config, parameter_bytes

    device = _setup_device(args, parser)
    gpu = device.type == "cuda"
    sizes = args.sizes or [B.parse_size(s) for s in (_SIZES_GPU if gpu else _SIZES_CPU).split(",")]
    models = args.models if args.models is not None else (_MODELS_GPU if gpu else _MODELS_CPU
                                                           ).split(",")
    model_dtype = args.model_dtype if args.model_dtype != "auto" else (
        torch.bfloat16 if gpu else torch.float32)
    timer = B.DeviceTimer(device)
    free = timer.memory_available()
    if free is not None:
        biggest = max(sizes) * max(torch.empty((), dtype=d).element_size() for d in args.dtypes)
        if biggest > 0.8 * free:
            parser.error(f"--sizes: a {_fmt_bytes(biggest)} tensor does not fit in the "
                         f"{_fmt_bytes(free)} free on {device}; pass smaller --sizes")
        for m in models:
            need = 1.5 * parameter_bytes(get_config(m), model_dtype)
            if need > 0.9 * free:
                parser.error(f"--models: {m} needs about {_fmt_bytes(need)} on {device}, "
                             f"{_fmt_bytes(free)} free; pass a smaller model or --models none")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib: pip install 'fastinit[bench]'",
                  file=sys.stderr)
            return 2
    functions = args.functions or list(B.FUNCTIONS)

    with torch.random.fork_rng(devices=[device] if gpu else []):
        # fork_rng: an in-process call (tests, notebooks) leaves the caller's RNG alone
        torch.manual_seed(args.seed)
        run = _run_bench(args, device, functions, sizes, models, model_dtype, timer, argv)
    _emit_bench(args, run)
    return 0


def _run_bench(args, device, functions, sizes, models, model_dtype, timer, argv):
    """Run both sections of ``fastinit bench``; returns the :class:`BenchRun`."""
    from fastinit.cli import bench as B

    command = "fastinit " + " ".join(shlex.quote(a) for a in argv)
    run = B.BenchRun(B.machine_info(device), {
        "command": command, "functions": functions,
        "dtypes": [B.dtype_name(d) for d in args.dtypes], "sizes": sizes,
        "repeats": args.repeats, "budget_s": args.budget, "models": models,
        "model_dtype": B.dtype_name(model_dtype), "model_repeats": args.model_repeats,
        "hf": not args.no_hf and B.has_transformers(), "seed": args.seed})
    run.functions = B.bench_functions(device, functions, args.dtypes, sizes,
                                      repeats=args.repeats, budget=args.budget,
                                      torch_baseline=not args.no_torch, quiet=args.quiet,
                                      timer=timer)
    if models:
        run.models = B.bench_models(device, models, model_dtype, repeats=args.model_repeats,
                                    hf=not args.no_hf, quiet=args.quiet, timer=timer)
    return run


def _emit_bench(args, run) -> None:
    """Print the table and write the requested outputs of a bench run."""
    from fastinit.cli import bench as B

    command = run.settings["command"]
    to_stdout = "-" in (args.json, args.csv, args.markdown)
    print(B.format_table(run), file=sys.stderr if to_stdout else sys.stdout)
    if args.plot:
        B.plot_throughput(run, args.plot)
    if args.json:
        _write_out(args.json, B.to_json(run))
    if args.csv:
        _write_out(args.csv, B.to_csv(run))
    if args.markdown:
        plot = None
        if args.plot:
            base = os.getcwd() if args.markdown == "-" else os.path.dirname(
                os.path.abspath(args.markdown))
            plot = os.path.relpath(os.path.abspath(args.plot), base)
        section = B.to_markdown(run, title=args.title, plot=plot, command=command)
        if args.markdown == "-":
            _write_out("-", section)
        else:
            B.update_markdown_file(args.markdown, run, section)


def _cmd_check(args, parser: argparse.ArgumentParser) -> int:
    from fastinit.cli import check as report
    from fastinit.cli.bench import cpu_name, dtype_name

    if args.samples < 1000:
        parser.error("--samples: at least 1000 values per check")
    try:
        report.require_dependencies()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = _setup_device(args, parser)
    dtypes = [dtype_name(d) for d in args.dtypes] if args.dtypes else list(report.DTYPES)
    cases = report.select_cases(args.dists)
    results = report.run_checks(args.out, dtypes=dtypes, cases=cases, samples=args.samples,
                                figures=not args.no_figures, perturb_std=args.perturb_std,
                                device=device, quiet=args.quiet)
    machine = (f"Values drawn on {device}"
               + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                  f" ({cpu_name()})") + ".")
    md, html = report.write_report(results, args.out, machine=machine,
                                   perturb_std=args.perturb_std)
    print(report.summary_table(results))
    print(f"\nreport: {md} (and {os.path.basename(html)}); figures in {args.out}")
    return 0 if all(r.passed for r in results) else 1


def _cmd_demo(args, parser: argparse.ArgumentParser) -> int:
    from fastinit.cli.bench import DeviceTimer, dtype_name, machine_info
    from fastinit.materialize import materialize
    from fastinit.cli.models import LlamaShaped, fingerprint, get_config, parameter_bytes

    device = _setup_device(args, parser)
    dtype = args.dtype if args.dtype != "auto" else (
        torch.bfloat16 if device.type == "cuda" else torch.float32)
    cfg = get_config(args.model)
    nbytes = parameter_bytes(cfg, dtype)
    timer = DeviceTimer(device)
    free = timer.memory_available()
    if free is not None and 1.2 * nbytes > free:
        parser.error(f"--model {cfg.name}: {_fmt_bytes(nbytes)} of {dtype_name(dtype)} "
                     f"parameters do not fit in the {_fmt_bytes(free)} free on {device}; "
                     "choose a smaller --model or --dtype")
    machine = machine_info(device)
    print(f"fastinit {fastinit.__version__} demo: a Llama-shaped model, built on meta and "
        "materialized in one pass")
    print(f"  device        {_device_text(machine)}; torch {machine['torch']}")
    print(f"  model         {cfg.name}: hidden {cfg.hidden}, {cfg.layers} layers, {cfg.heads} "
        f"heads ({cfg.kv_heads} KV), intermediate {cfg.intermediate}, vocab {cfg.vocab}")
    print(f"  parameters    {cfg.num_parameters():,} = {_fmt_bytes(nbytes)} of "
        f"{dtype_name(dtype)}")

    def build_materialized() -> torch.nn.Module:
        model = LlamaShaped(cfg, device="meta", dtype=dtype)
        # progress: a bar on stderr if a big model takes more than two seconds on a CPU
        return materialize(model, device, seed=args.seed, progress=True)

    # One-time costs (loading the JIT-compiled CPU kernels, compiling the GPU ones, lazy
    # imports, the allocator's first pages) are paid on a tiny model, for both sides.
    warm = timer.wall(lambda: (materialize(LlamaShaped("tiny", device="meta", dtype=dtype),
                                           device, seed=args.seed, progress=False),
                               LlamaShaped("tiny", device=device, dtype=dtype)))
    print(f"  warm-up       {warm:.2f} s (one-time kernel loading, not counted below)")

    t_torch = None
    if not args.no_baseline:
        t_torch = timer.wall(lambda: LlamaShaped(cfg, device=device, dtype=dtype))
        gc.collect()
        print(f"  torch         LlamaShaped(cfg) on {device.type}: {t_torch:.3f} s "
            f"({nbytes / t_torch / 1e9:.2f} GB/s)  [torch's default init at construction]")

    holder: list = []
    t_mat = timer.wall(lambda: holder.append(build_materialized()))
    fp1 = fingerprint(holder.pop())
    gc.collect()
    print(f"  fastinit      meta + materialize: {t_mat:.3f} s ({nbytes / t_mat / 1e9:.2f} GB/s)")
    if t_torch is not None:
        print(f"  speed-up      {t_torch / t_mat:.2f}x over torch's own construction")
    print(f"  fingerprint   {fp1}  (sha256 of the state dict, seed {args.seed})")

    t_again = timer.wall(lambda: holder.append(build_materialized()))
    fp2 = fingerprint(holder.pop())
    same = fp1 == fp2
    print(f"  determinism   second materialize with seed {args.seed} ({t_again:.3f} s): "
        f"fingerprint {fp2} - {'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastinit`` command line with ``argv`` (default ``sys.argv[1:]``); returns
    the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    sub = args.subparser  # its .error() names the subcommand in the usage line
    if args.command == "bench":
        return _cmd_bench(args, sub, argv)
    if args.command == "check":
        return _cmd_check(args, sub)
    return _cmd_demo(args, sub)


if __name__ == "__main__":
    sys.exit(main())
