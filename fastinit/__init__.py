"""fastinit: neural-network weight initialization on the device, reproducible everywhere.

The functions mirror ``torch.nn.init``; every value is a pure function of (seed, stream,
element index, distribution, dtype), identical on the CPU and on any GPU.
``materialize`` initializes a whole meta-device model in grouped launches, and ``patch``
routes unmodified ``torch.nn.init`` calls through fastinit.
"""
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
from fastinit.intercept import patch
from fastinit.materialize import materialize
from fastinit.recipes import apply_recipe

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
    "recipes",
]
