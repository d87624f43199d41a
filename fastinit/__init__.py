"""fastinit: neural-network weight initialization on the device, reproducible everywhere.

The functions mirror ``torch.nn.init``; every value is a pure function of (seed, stream,
element index, distribution, dtype), identical on the CPU and on any GPU.
``materialize`` initializes a whole meta-device model in grouped launches, and ``patch``
routes unmodified ``torch.nn.init`` calls through fastinit.
"""
import importlib.machinery as _machinery
import importlib.util as _util
import os as _os
import sys as _sys


def _source_kernels() -> None:
    """Make ``fastinit.kernels`` the repository's ``kernels/`` folder in a source checkout.

    An installed wheel has the device code in ``fastinit/kernels/`` (pyproject's
    ``package-dir`` puts it there). A source checkout (an editable install, or the
    repository root on ``sys.path``) keeps it in the top-level ``kernels/`` folder, which
    has no ``__init__.py`` on purpose: a regular package there would shadow the PyPI
    package ``kernels`` (a dependency of transformers) for anything run from the root.
    setuptools' editable finder cannot map a package without ``__init__.py`` under a
    regular one, so this binds the name here, once, before anything imports it.
    """
    here = _os.path.dirname(_os.path.abspath(__file__))
    if "fastinit.kernels" in _sys.modules or _os.path.isdir(_os.path.join(here, "kernels")):
        return
    spec = _machinery.PathFinder.find_spec("fastinit.kernels", [_os.path.dirname(here)])
    if spec is None or spec.submodule_search_locations is None:
        return  # neither layout: the import below fails with Python's own message
    module = _util.module_from_spec(spec)
    _sys.modules["fastinit.kernels"] = module
    spec.loader.exec_module(module)
    globals()["kernels"] = module  # as the import system binds a submodule on its parent


_source_kernels()
del _source_kernels, _machinery, _util, _os, _sys

from fastinit import recipes
from fastinit.init import (
    calculate_gain,
    class_prior_bias_,
    constant,
    constant_,
    dirac,
    dirac_,
    eye,
    eye_,
    kaiming_normal,
    kaiming_normal_,
    kaiming_uniform,
    kaiming_uniform_,
    lecun_normal_,
    lecun_uniform_,
    mean_resize_embeddings_,
    normal,
    normal_,
    ones_,
    orthogonal,
    orthogonal_,
    scaled_residual_,
    sparse,
    sparse_,
    trunc_normal_,
    uniform,
    uniform_,
    variance_scaling_,
    xavier_normal,
    xavier_normal_,
    xavier_uniform,
    xavier_uniform_,
    zeros_,
)
from fastinit.construction import empty_init
from fastinit.intercept import TorchRNGWarning, patch
from fastinit.materialize import materialize
from fastinit.recipes import apply_recipe
from fastinit.report import report
from fastinit import provenance  # callable: fastinit.provenance(model)

__version__ = "0.1.0"  # the only place the version is written (pyproject.toml reads it)

__all__ = [
    # torch.nn.init.__all__, in torch's order
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
    "uniform",
    "normal",
    "constant",
    "eye",
    "dirac",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "sparse",
    # fastinit's additions
    "scaled_residual_",
    "variance_scaling_",
    "lecun_normal_",
    "lecun_uniform_",
    "class_prior_bias_",
    "mean_resize_embeddings_",
    "materialize",
    "empty_init",
    "apply_recipe",
    "patch",
    "report",
    "TorchRNGWarning",
    "recipes",
    "provenance",
]
