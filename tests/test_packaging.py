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


# Top-level folders of the repository and PyPI names they must never shadow: from the root
# (``python -m pytest``, a script or notebook run there) each is at most a namespace portion,
# which any installed regular package of the same name takes precedence over.
_TOP_LEVEL_FOLDERS = ("kernels", "tests", "bench", "tools")


def test_no_top_level_folder_is_a_regular_package():
    for name in _TOP_LEVEL_FOLDERS:
        if os.path.isdir(os.path.join(ROOT, name)):
            assert not os.path.exists(os.path.join(ROOT, name, "__init__.py")), name


def test_installed_packages_win_over_the_repository_folders(tmp_path):
    """From the repository root, an installed package named like one of our folders is the
    one ``import`` finds (stand-ins on ``PYTHONPATH``: regular packages, as on PyPI), while
    ``fastinit.kernels`` stays the project's device code."""
    import subprocess

    for name in _TOP_LEVEL_FOLDERS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"STAND_IN = {name!r}\n")
    code = ("import importlib, os\n"
            f"for name in {_TOP_LEVEL_FOLDERS!r}:\n"
            "    assert importlib.import_module(name).STAND_IN == name, name\n"
            "import fastinit.kernels, fastinit.kernels.philox as P\n"
            "print(os.path.dirname(os.path.abspath(P.__file__)))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(tmp_path)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    where = res.stdout.strip()
    assert os.path.samefile(where, os.path.join(ROOT, "kernels")) or \
        os.path.samefile(where, os.path.join(os.path.dirname(fastinit.__file__), "kernels")), where


def test_transformers_loads_its_hub_kernels_from_the_repository_root():
    """transformers imports the PyPI package ``kernels`` when its model modules load; from the
    root that must be the installed package, and the test suite must collect."""
    import subprocess
    from importlib import metadata

    try:
        metadata.version("kernels")
        metadata.version("transformers")
    except metadata.PackageNotFoundError:
        pytest.skip("needs transformers and Hugging Face's kernels installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import kernels, transformers.models.bert.modeling_bert\n"
            "import fastinit.kernels.contract\n"
            "print(kernels.__file__)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert not res.stdout.strip().startswith(ROOT + os.sep), res.stdout
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--collect-only", "tests/differential/test_hf_models.py"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def _readme_command(prefix: str) -> str:
    """The README's set-up line that starts with ``prefix`` (one line, in a bash block)."""
    lines = [line.strip() for line in open(os.path.join(ROOT, "README.md")).read().splitlines()
             if line.strip().startswith(prefix)]
    assert len(lines) >= 1, f"the README has no line starting with {prefix!r}"
    return lines[0]


def test_ci_runs_the_readme_test_command_verbatim_in_a_venv_of_its_own():
    readme = _readme_command('pip install torch==2.13.0 -e ".[test]"')
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    commands = [line.split("#")[0].strip() for line in ci.splitlines()]
    assert readme in commands, "CI must run the README's test command exactly as written"
    # Its own environment: made from nothing and activated before the README's command runs.
    made = next(i for i, c in enumerate(commands) if "-m venv" in c)
    activated = next(i for i, c in enumerate(commands) if c.startswith("source") and "activate" in c)
    assert made < activated < commands.index(readme)
    assert "--system-site-packages" not in ci


def _test_file_of(module: str) -> str:
    """The test file of a module path under fastinit/ (see docs/development.md)."""
    folder, _, name = module.rpartition("/")
    if folder == "fastinit/cli":
        return "test_cli.py" if name == "__init__" else (
            "test_sass.py" if name == "sass" else f"test_cli_{name}.py")
    return f"test_{name}.py"


def test_every_module_has_its_test_file():
    """Tests mirror modules: fastinit/X.py and fastinit/backends/X.py are tested in
    tests/test_X.py, fastinit/cli/X.py in tests/test_cli_X.py (the command line as a whole,
    cli/__init__.py, in test_cli.py; the SASS analyzer in test_sass.py). Package files
    (``__init__``, ``__main__`` of fastinit and backends) are tested by what they export."""
    import glob

    found = glob.glob(os.path.join(ROOT, "fastinit", "**", "*.py"), recursive=True)
    modules = sorted(p[len(ROOT) + 1:-3] for p in found)
    assert "fastinit/route" in modules and "fastinit/backends/cpu" in modules
    missing = [f"{m}.py -> tests/{_test_file_of(m)}" for m in modules
               if not (m.endswith(("/__init__", "/__main__")) and not m.startswith("fastinit/cli/"))
               and not os.path.exists(os.path.join(ROOT, "tests", _test_file_of(m)))]
    assert missing == []
