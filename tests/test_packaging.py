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


def test_metadata_single_sources_the_version_and_declares_the_licence():
    from importlib import metadata

    md = metadata.metadata("torch-fastinit")  # the distribution name; imported as fastinit
    assert md["Version"] == fastinit.__version__
    assert md["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in (md.get_all("License-File") or [])
    requires = md.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    assert not any(r.startswith("triton") for r in core), core  # Triton comes with torch
    assert any(r.startswith("triton") and "extra == \"test\"" in r.replace("'", '"')
               for r in requires), requires
    assert not any(r.startswith("hypothesis") for r in requires)
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert f.read().lstrip().startswith("Apache License\n")


def test_pyproject_has_no_second_version():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastinit.__version__"}


def test_check_install_hint_names_the_distribution():
    from importlib import metadata

    from fastinit.cli.parser import DISTRIBUTION_NAME

    assert metadata.metadata(DISTRIBUTION_NAME)["Name"] == DISTRIBUTION_NAME
