"""Test configuration.

Without a CUDA device the Triton kernels run under the interpreter (TRITON_INTERPRET=1),
which must be set before Triton is first imported. GPU-only tests carry the ``gpu`` mark
and skip cleanly when no device is present.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from pathlib import Path

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_report_header(config):
    """The resolved versions of what the suite depends on, at the top of every run."""
    script = Path(__file__).resolve().parent.parent / ".ci" / "versions"
    loader = importlib.machinery.SourceFileLoader("fastinit_ci_versions", str(script))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return "versions: " + ", ".join(f"{name} {version}" for name, version in module.versions().items()
                                    if version != "not installed")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
