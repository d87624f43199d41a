"""``fastinit inspect``: the init report of a model (``fastinit.report``) from the shell.

The model is named by a built-in Llama shape (``tiny``, ``125m``, ...: see
:mod:`fastinit.cli.models`), a Hugging Face config (a ``config.json`` or a folder holding
one: ``AutoModelForCausalLM.from_config``, else ``AutoModel``; nothing is downloaded), or a
Python entry point ``module:function`` returning a model. It is built under
``fastinit.empty_init()`` and materialized with ``--seed`` (so its provenance is recorded
where fastinit records it); an entry point that returns a real model is used as it is.

``--recipe R`` compares the model's own init with the recipe (``materialize(...,
recipe=R)``, or ``apply_recipe`` on a real model); given twice, it compares the two
recipes. ``R`` is a built-in recipe name (``gpt2``, ``resnet``, ...) or ``module:attr``
naming a recipe, a mapping ``{glob: init}``, or a function of no arguments returning one.
The terminal table is printed; ``--json`` and ``--html`` write the full report.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import fastinit
from fastinit.cli.parser import (
    check_output_paths, CommandError, device_arguments, Formatter, paragraphs, setup_device)

__all__ = ["run", "build", "resolve_recipe"]


def _import_attr(spec: str, what: str) -> Any:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise CommandError(f"{what} {spec!r}: expected module:attribute")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise CommandError(f"{what} {spec!r}: cannot import {module!r} ({exc})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CommandError(f"{what} {spec!r}: {module!r} has no attribute {attr!r}") from None
    return obj


def resolve_recipe(spec: str):
    """The recipe ``--recipe spec`` names: a built-in name (kept as the name) or the object
    at ``module:attr`` (a Recipe, a mapping, or a no-argument function returning one)."""
    from fastinit.recipes import RECIPES, Recipe

    if spec in RECIPES:
        return spec
    if ":" not in spec:
        raise CommandError(f"--recipe {spec!r}: unknown recipe; built-in ones: "
                           f"{', '.join(sorted(RECIPES))}, or module:attribute")
    obj = _import_attr(spec, "--recipe")
    if callable(obj) and not isinstance(obj, (Recipe, dict)):
        obj = obj()
    if not isinstance(obj, Recipe) and not hasattr(obj, "items"):
        raise CommandError(f"--recipe {spec!r}: expected a fastinit recipe or a mapping of "
                           f"globs to inits, got {type(obj).__name__}")
    return obj


def _hf_config(path: str):
    try:
        from transformers import AutoConfig
    except ImportError:
        raise CommandError(f"{path}: a Hugging Face config needs transformers "
                           "(pip install transformers)") from None
    try:
        if os.path.isdir(path):
            return AutoConfig.from_pretrained(path, local_files_only=True)
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        model_type = data.pop("model_type", None)
        if not model_type:
            raise CommandError(f"{path}: not a Hugging Face config (no model_type)")
        return AutoConfig.for_model(model_type, **data)
    except CommandError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"{path}: cannot read the config ({type(exc).__name__}: {exc})") \
            from None


def _meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def build(target: str, *, seed: int, device: torch.device, recipe=None) -> tuple[nn.Module, str]:
    """The model ``target`` names, initialized (``recipe`` applied after its own init):
    ``(model, title)``. :class:`CommandError` for a target that names nothing usable."""
    from fastinit.cli.models import CONFIGS, LlamaShaped

    def finish(model: nn.Module) -> nn.Module:
        if _meta(model):
            return fastinit.materialize(model, device, seed=seed, recipe=recipe, progress=False)
        if recipe is not None:
            fastinit.apply_recipe(model, recipe, seed=seed, progress=False)
        return model

    if target in CONFIGS:
        with fastinit.empty_init():
            model = LlamaShaped(CONFIGS[target])
        return finish(model), f"LlamaShaped {target} ({CONFIGS[target].num_parameters() / 1e6:,.0f}M)"
    if os.path.exists(target):
        cfg = _hf_config(target)
        import transformers

        with fastinit.empty_init():
            try:
                model = transformers.AutoModelForCausalLM.from_config(cfg)
            except ValueError:
                model = transformers.AutoModel.from_config(cfg)
        return finish(model), f"{type(model).__name__} ({os.path.basename(os.path.abspath(target))})"
    if ":" in target:
        fn = _import_attr(target, "model")
        if not callable(fn):
            raise CommandError(f"model {target!r} is not callable")
        with fastinit.empty_init():
            model = fn()
        if not isinstance(model, nn.Module):
            raise CommandError(f"model {target!r} returned {type(model).__name__}, not an "
                               "nn.Module")
        return finish(model), f"{type(model).__name__} ({target})"
    raise CommandError(f"model {target!r}: not a built-in shape ({', '.join(CONFIGS)}), an "
                       "existing config file or folder, nor module:function")


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``fastinit inspect`` with parsed ``args``. Exit status 0, or 1 with
    ``--strict`` when something was flagged."""
    from fastinit.report import compare_table, report, write_html

    check_output_paths({"--json": args.json, "--html": args.html}, stdout=("--json",))
    if len(args.recipe) > 2:
        raise CommandError("--recipe: at most two (one compares with the model's own init)")
    recipes = [(spec, resolve_recipe(spec)) for spec in args.recipe]
    device = setup_device(args)
    variants: list[tuple[str, Any]] = []
    if len(recipes) < 2:
        variants.append(("own init", None))
    variants += [(f"recipe {spec}", r) for spec, r in recipes]
    say = sys.stderr if args.json == "-" else sys.stdout
    reports = {}
    for label, recipe in variants:
        t0 = time.perf_counter()
        try:
            model, title = build(args.model, seed=args.seed, device=device, recipe=recipe)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise CommandError(f"{label}: cannot build {args.model!r}: {exc}") from None
        t1 = time.perf_counter()
        try:
            reports[label] = report(model, laws=not args.no_laws, seed=args.seed,
                                    title=title)
        except TypeError as exc:
            raise CommandError(str(exc)) from None
        t2 = time.perf_counter()
        print(f"{label}: built and materialized in {t1 - t0:.1f} s, forward/backward and "
              f"checks in {t2 - t1:.1f} s", file=say)
        del model
    rows = None if args.rows == 0 else args.rows
    if len(reports) == 1:
        text = next(iter(reports.values())).table(max_rows=rows)
    else:
        text = compare_table(reports, max_rows=rows)
    print(text, file=say)
    if args.json:
        data = (next(iter(reports.values())).as_dict() if len(reports) == 1 else
                {"variants": {k: r.as_dict() for k, r in reports.items()}})
        from fastinit.report import _jsonable

        payload = json.dumps(_jsonable(data), indent=2, allow_nan=False)
        if args.json == "-":
            print(payload)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(payload + "\n")
    if args.html:
        write_html(args.html, reports if len(reports) > 1 else list(reports.values()))
        print(f"wrote {args.html}", file=say)
    flagged = any(r.findings for r in reports.values())
    return 1 if (args.strict and flagged) else 0


# --- the command's arguments -----------------------------------------------------------


def add_parser(sub) -> argparse.ArgumentParser:
    """``fastinit inspect``: the init report (signal propagation, laws) of one model."""
    from fastinit.cli.models import CONFIGS

    i = sub.add_parser(
        "inspect", formatter_class=Formatter,
        help="report what a model's init does: activations and gradients per layer, laws",
        description=paragraphs(
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
    device_arguments(i)
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
