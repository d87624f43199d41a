"""Test configuration.

Without a CUDA device the Triton kernels run under the interpreter (TRITON_INTERPRET=1),
which must be set before Triton is first imported. GPU-only tests carry the ``gpu`` mark
and skip cleanly when no device is present.
"""
from __future__ import annotations

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
