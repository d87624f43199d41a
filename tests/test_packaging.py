"""How fastinit is packaged: metadata, optional Triton, the licence."""
from __future__ import annotations

import os
import sys
import types

import pytest
import torch

import fastinit
from fastinit import backends
from fastinit.layout import Segment
from fastinit.spec import InitSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cuda_tensor_without_triton_is_one_line_naming_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton -> ImportError
    # A stand-in for a CUDA tensor: the backend only reads its device before dispatching.
    out = types.SimpleNamespace(device=torch.device("cuda", 0))
    entry = backends.FillEntry(out, [Segment(0, 0, 0, 0, 4, 1)],
                               InitSpec.normal().kernel_params(torch.float32), 1, 0)
    with pytest.raises(RuntimeError) as info:
        backends.fill_grouped([entry])
    message = str(info.value)
    assert "\n" not in message and "pip install triton" in message, message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_cpu_fills_do_not_import_triton():
    import subprocess

    code = ("import sys, torch, fastinit\n"
            "fastinit.normal_(torch.empty(8), seed=0)\n"
            "with torch.device('meta'):\n"
            "    m = torch.nn.Linear(4, 4)\n"
            "fastinit.materialize(m, 'cpu', seed=0)\n"
            "print('triton' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
