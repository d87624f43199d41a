"""What the ``fastinit`` commands' arguments share, and the checks that run before any
command's work.

Each command module (``fastinit.cli.bench``, ``check``, ``demo``, ``inspect``) adds its own
sub-parser with these argument types and the help formatter; ``fastinit.cli.build_parser``
puts them together. Flag values are validated by argparse types where one value decides (bad flags exit with a
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


__all__ = ["CommandError", "check_output_paths", "setup_device", "DTYPES",
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
DTYPE_CHOICES = "float32 (fp32), bfloat16 (bf16), float16 (fp16), float64 (fp64)"


def parse_dtype(name: str) -> torch.dtype:
    """A dtype from its name (``float32``/``fp32``, ``bfloat16``/``bf16``, ...)."""
    try:
        return DTYPES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose from {DTYPE_CHOICES}") from None


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


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (except None ones), descriptions kept as paragraphs."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def paragraphs(*paragraphs: str) -> str:
    """Paragraphs wrapped for the terminal (descriptions are printed raw)."""
    return "\n\n".join(textwrap.fill(p, 88) for p in paragraphs)


def argtype(fn: Callable[[str], object]) -> Callable[[str], object]:
    """Let argparse print ``fn``'s own ValueError message (it prints a generic one)."""

    def convert(text: str):
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = fn.__name__
    return convert


def csv_list(parse: Callable[[str], object], what: str) -> Callable[[str], list]:
    """An argparse type: a comma-separated list, each item checked by ``parse``."""

    def convert(text: str) -> list:
        items = [t for t in (s.strip() for s in text.split(",")) if t]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list of {what}")
        out = []
        for item in items:
            try:
                out.append(parse(item))
            except ValueError as exc:  # (the argtype ones raise ArgumentTypeError)
                raise argparse.ArgumentTypeError(str(exc)) from None
        return out

    return convert


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return x


dtype_arg = argtype(parse_dtype)
size_arg = argtype(parse_size)


@argtype
def model_name(name: str) -> str:
    from fastinit.cli.models import get_config

    get_config(name)
    return name


def models_arg(text: str) -> list[str]:
    if text.strip().lower() == "none":
        return []
    return csv_list(model_name, "models")(text)


@argtype
def dtype_or_auto(text: str) -> torch.dtype | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return parse_dtype(text)
    except ValueError:
        raise ValueError(f"unknown dtype {text!r}; choose from auto, {DTYPE_CHOICES}") from None


# --- the parser ---------------------------------------------------------------------------


def device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="'cpu', 'cuda', 'cuda:N', or 'auto' (CUDA when available)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for torch and fastinit's CPU backend (default: torch's "
                        "default)")


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
