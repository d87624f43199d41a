"""The ``fastinit`` argument parser, and the checks that run before any command's work.

:func:`build_parser` makes one sub-parser per command (``add_<command>_parser``); flag
values are validated by argparse types where one value decides (bad flags exit with a
usage message and status 2). What needs the parsed whole - output paths, the device, free
memory - is checked by the command before it starts, and reported as a
:class:`CommandError`: one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Callable, Mapping

import torch

import fastinit

__all__ = ["build_parser", "CommandError", "check_output_paths", "setup_device", "DTYPES",
           "parse_dtype", "parse_size", "DISTRIBUTION_NAME"]

#: The name fastinit is installed by (``import fastinit`` stays the import name).
DISTRIBUTION_NAME = "torch-fastinit"

#: Default sizes and models of ``bench`` by device.
SIZES_CPU = "2^16,2^20,2^22"
SIZES_GPU = "2^16,2^20,2^24,2^28"
MODELS_CPU = "tiny,125m"
MODELS_GPU = "1b,8b"


class CommandError(Exception):
    """A usage or environment error found after parsing: one line, exit status 2."""


# --- value parsers ------------------------------------------------------------------------

#: dtype names accepted on the command line.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}
_DTYPE_CHOICES = "float32 (fp32), bfloat16 (bf16), float16 (fp16), float64 (fp64)"


def parse_dtype(name: str) -> torch.dtype:
    """A dtype from its name (``float32``/``fp32``, ``bfloat16``/``bf16``, ...)."""
    try:
        return DTYPES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose from {_DTYPE_CHOICES}") from None


def parse_size(text: str) -> int:
    """A number of elements: ``1048576``, ``2^20``, ``2**20`` or ``1<<20``."""
    import re

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


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (except None ones), descriptions kept as paragraphs."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _paras(*paragraphs: str) -> str:
    """Paragraphs wrapped for the terminal (descriptions are printed raw)."""
    return "\n\n".join(textwrap.fill(p, 88) for p in paragraphs)


def _argtype(fn: Callable[[str], object]) -> Callable[[str], object]:
    """Let argparse print ``fn``'s own ValueError message (it prints a generic one)."""

    def convert(text: str):
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = fn.__name__
    return convert


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


_dtype = _argtype(parse_dtype)
_size = _argtype(parse_size)


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


@_argtype
def _dtype_or_auto(text: str) -> torch.dtype | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return parse_dtype(text)
    except ValueError:
        raise ValueError(f"unknown dtype {text!r}; choose from auto, {_DTYPE_CHOICES}") from None


@_argtype
def _dist_name(text: str) -> str:
    from fastinit.cli.check import DISTRIBUTIONS

    if text not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {text!r}; choose from {', '.join(DISTRIBUTIONS)}")
    return text


# --- the parser ---------------------------------------------------------------------------


def _device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="'cpu', 'cuda', 'cuda:N', or 'auto' (CUDA when available)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for torch and fastinit's CPU backend (default: torch's "
                        "default)")


def add_bench_parser(sub) -> argparse.ArgumentParser:
    """``fastinit bench``: its flags in groups (what to time, how, where results go)."""
    from fastinit.cli.bench import FUNCTIONS
    from fastinit.cli.models import CONFIGS

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
            "% roofline = zero_() time / fill time; a zero_() slower than a fill (other work "
            "on the machine) is measured again, and the percentage is marked 'unstable' if "
            f"it stays so. Default sizes: {SIZES_CPU} elements on a CPU, {SIZES_GPU} on a GPU; "
            f"default models: {MODELS_CPU} on a CPU, {MODELS_GPU} on a GPU.",
            "Every output path is checked before the benchmark starts. Example: fastinit "
            "bench --sizes 2^20,2^24 --markdown bench/RESULTS.md --plot "
            "bench/throughput_cpu.png"))
    b.set_defaults(command="bench")
    _device_arguments(b)
    what = b.add_argument_group("what to time")
    what.add_argument("--functions", type=_csv_list(_function_name, "functions"),
                      default=None, metavar="F[,F...]",
                      help=f"functions to time, of: {', '.join(FUNCTIONS)} (default: all)")
    what.add_argument("--dtypes", type=_csv_list(_dtype, "dtypes"),
                      default="float32,bfloat16", metavar="D[,D...]",
                      help=f"dtypes, of: {_DTYPE_CHOICES}")
    what.add_argument("--sizes", type=_csv_list(_size, "sizes"), default=None,
                      metavar="N[,N...]",
                      help="tensor sizes in elements, e.g. 2^16,2^20 or 65536 (default: by "
                           "device)")
    what.add_argument("--models", type=_models_arg, default=None, metavar="M[,M...]",
                      help=f"Llama-shaped models for the model section, of: "
                           f"{', '.join(CONFIGS)}; 'none' skips the section (default: by "
                           "device)")
    what.add_argument("--model-dtype", type=_dtype_or_auto, default="auto",
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
    how = b.add_argument_group("how")
    how.add_argument("--repeats", type=_positive_int, default=5,
                     help="timed runs per case (the median is reported)")
    how.add_argument("--budget", type=_positive_float, default=10.0,
                     help="seconds per case at most: slow baselines get fewer runs (>= 3)")
    how.add_argument("--model-repeats", type=_positive_int, default=3,
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


def add_check_parser(sub) -> argparse.ArgumentParser:
    """``fastinit check``."""
    from fastinit.cli.check import DEFAULT_SAMPLES, DISTRIBUTIONS

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
            f"Needs scipy and matplotlib: pip install '{DISTRIBUTION_NAME}[test]'."))
    c.set_defaults(command="check")
    c.add_argument("--device", default="cpu",
                   help="where to draw the values: 'cpu' (the reference backend) or 'cuda' "
                        "(checks the GPU kernels)")
    c.add_argument("--out", default="fastinit-check", metavar="DIR",
                   help="folder for the figures and the report (made if missing; its parent "
                        "must exist)")
    c.add_argument("--samples", type=_positive_int, default=DEFAULT_SAMPLES,
                   help="values drawn per check (at least 1000)")
    c.add_argument("--dtypes", type=_csv_list(_dtype, "dtypes"),
                   default=None, metavar="D[,D...]",
                   help="dtypes to check (default: float32, bfloat16, float16, float64)")
    c.add_argument("--dists", type=_csv_list(_dist_name, "distributions"), default=None,
                   metavar="NAME[,NAME...]",
                   help=f"distributions to check, of: {', '.join(DISTRIBUTIONS)} (default: all)")
    c.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    # Hidden: draw from a deliberately wrong law (spread x FACTOR) to see the report fail.
    c.add_argument("--perturb-std", type=_positive_float, default=1.0, help=argparse.SUPPRESS)
    return c


def add_demo_parser(sub) -> argparse.ArgumentParser:
    """``fastinit demo``."""
    from fastinit.cli.models import CONFIGS

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
    d.set_defaults(command="demo")
    _device_arguments(d)
    d.add_argument("--model", type=_model_name, default="125m",
                   help=f"model shape, of: {', '.join(CONFIGS)}")
    d.add_argument("--dtype", type=_dtype_or_auto, default="auto",
                   metavar="{auto,float32,bfloat16,float16,float64}",
                   help=f"parameter dtype, of: auto, {_DTYPE_CHOICES} ('auto': bfloat16 on a "
                        "GPU, float32 on a CPU)")
    d.add_argument("--seed", type=int, default=0, help="materialize seed")
    d.add_argument("--no-baseline", action="store_true",
                   help="skip building the model with torch (saves time and memory)")
    return d


def add_inspect_parser(sub) -> argparse.ArgumentParser:
    """``fastinit inspect``: the init report (signal propagation, laws) of one model."""
    from fastinit.cli.models import CONFIGS

    i = sub.add_parser(
        "inspect", formatter_class=_Formatter,
        help="report what a model's init does: activations and gradients per layer, laws",
        description=_paras(
            "Build a model on meta, materialize it with fastinit, run one forward and "
            "backward pass with random inputs (token ids, images or vectors, inferred from "
            "the model) and report what keeps or loses the signal: activations or gradients "
            "that shrink or grow across depth, a residual stream that grows, dead units, "
            "NaN/inf, and (with provenance) tensors whose values do not follow their law.",
            f"MODEL: a built-in Llama shape ({', '.join(CONFIGS)}), a Hugging Face "
            "config.json or a folder holding one (nothing is downloaded), or "
            "module:function returning a model. --recipe compares the model's own init "
            "with a recipe (twice: two recipes). Example: fastinit inspect 125m --recipe "
            "gpt2 --html report.html"))
    i.set_defaults(command="inspect")
    i.add_argument("model", metavar="MODEL", help="what to inspect (see above)")
    _device_arguments(i)
    i.add_argument("--recipe", action="append", default=[], metavar="R",
                   help="a built-in recipe name (gpt2, llama, resnet, ...) or module:attr "
                        "naming a recipe or a mapping {glob: init}; at most twice")
    i.add_argument("--seed", type=int, default=0,
                   help="materialize seed (and the random inputs')")
    i.add_argument("--no-laws", action="store_true",
                   help="the propagation check only (no law check from provenance)")
    i.add_argument("--rows", type=int, default=40,
                   help="rows of the terminal tables (0: all)")
    i.add_argument("--strict", action="store_true", help="exit status 1 if anything is flagged")
    i.add_argument("--json", metavar="PATH", help="write the full report as JSON ('-': stdout)")
    i.add_argument("--html", metavar="PATH",
                   help="write a self-contained HTML page with plots (needs matplotlib)")
    return i


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastinit`` command."""
    parser = argparse.ArgumentParser(
        prog="fastinit",
        description="fastinit: neural-network weight initialization with a counter-based "
                    "Philox stream, identical on the CPU and on any GPU.",
        epilog="Run 'fastinit COMMAND --help' for the flags of a command.")
    parser.add_argument("--version", action="version",
                        version=f"fastinit {fastinit.__version__} ({DISTRIBUTION_NAME})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_bench_parser(sub)
    add_check_parser(sub)
    add_demo_parser(sub)
    add_inspect_parser(sub)
    return parser


# --- checks before any work ----------------------------------------------------------------


def _folder_problem(folder: str) -> str | None:
    shown = folder or "."
    if not os.path.exists(folder or "."):
        return f"folder {shown!r} does not exist"
    if not os.path.isdir(folder or "."):
        return f"{shown!r} is not a folder"
    if not os.access(folder or ".", os.W_OK | os.X_OK):
        return f"folder {shown!r} is not writable"
    return None


def _file_problem(path: str) -> str | None:
    if os.path.isdir(path):
        return "is a folder"
    problem = _folder_problem(os.path.dirname(path))
    if problem:
        return problem
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return "exists and is not writable"
    return None


def check_output_paths(files: Mapping[str, str | None],
                       folders: Mapping[str, str | None] | None = None,
                       stdout: tuple[str, ...] = ()) -> None:
    """Raise :class:`CommandError` unless every output can be written.

    ``files``: flag -> path of a file to write (None: not requested); its folder must exist
    and be writable, and the path must not be a folder. ``stdout``: the flags that accept
    ``-`` for standard output (at most one of them may use it). ``folders``: flag -> a
    folder to write into, made if missing (its parent must exist), not an existing file.
    No two outputs may be the same path. Nothing is created or written here.
    """
    folders = folders or {}
    seen: dict[str, str] = {}
    dashes = [flag for flag, path in files.items() if path == "-"]
    for flag in dashes:
        if flag not in stdout:
            raise CommandError(f"{flag} -: cannot write to stdout; give a file name")
    if len(dashes) > 1:
        raise CommandError(f"{' and '.join(dashes)} cannot all write to stdout ('-'); "
                           "give file names for all but one")
    for flag, path in list(files.items()) + list(folders.items()):
        if path is None or path == "-":
            continue
        if not path.strip():
            raise CommandError(f"{flag}: empty path")
        if flag in folders:
            if os.path.exists(path) and not os.path.isdir(path):
                problem = "exists and is not a folder"
            elif os.path.isdir(path):
                problem = (None if os.access(path, os.W_OK | os.X_OK)
                           else "folder is not writable")
            else:
                problem = _folder_problem(os.path.dirname(os.path.abspath(path)))
        else:
            problem = _file_problem(path)
        if problem:
            raise CommandError(f"{flag} {path}: {problem}")
        real = os.path.realpath(path)
        if real in seen:
            raise CommandError(f"{seen[real]} and {flag} both write {path}")
        seen[real] = flag


def setup_device(args: argparse.Namespace) -> torch.device:
    """``--threads`` applied and ``--device`` resolved (:class:`CommandError` if unusable)."""
    from fastinit.cli.timing import resolve_device

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        return resolve_device(args.device, args.command)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
