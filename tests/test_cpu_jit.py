"""The CPU backend's compiled code (``fastinit/backends/cpu_jit.py``): cached on disk and
keyed on everything compiled in, compiled per distribution.

Each case runs fresh Python processes with their own ``NUMBA_CACHE_DIR``, so that "cold"
really is an empty cache; the values each process writes are compared bit for bit.
"""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Fills one tensor and prints its bytes' sha256; ``EXTRA`` adds a constant to the contract
# before the backend is imported (a stand-in for an edited kernels/contract.py).
SCRIPT = """
import hashlib, os, sys
import fastinit.kernels.contract as C
if os.environ.get("EXTRA"):
    C.TEST_ONLY_CONSTANT = 1
import torch, fastinit
from fastinit.backends import cpu
x = torch.empty(1001, dtype=getattr(torch, sys.argv[1]))
getattr(fastinit, sys.argv[2])(x, seed=3)
print(hashlib.sha256(x.view(torch.uint8).numpy().tobytes()).hexdigest())
print(sorted(k for (k, _) in cpu._ready), file=sys.stderr)
"""

NOTICE = "fastinit: compiling the CPU kernels once, ~"


def run(cache_dir, dtype="float32", fn="uniform_", extra=False):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    env.pop("EXTRA", None)
    if extra:
        env["EXTRA"] = "1"
    res = subprocess.run([sys.executable, "-c", SCRIPT, dtype, fn], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip(), res.stderr


def test_first_fill_announces_one_line_then_loads_silently(tmp_path):
    digest, err = run(tmp_path)
    lines = [line for line in err.splitlines() if line.startswith("fastinit:")]
    assert len(lines) == 1 and lines[0].startswith(NOTICE), err
    assert "uniform float32" in lines[0]
    again, err2 = run(tmp_path)  # a new process: the cache is warm
    assert again == digest
    assert NOTICE not in err2, err2
    assert os.listdir(tmp_path)  # the code went to NUMBA_CACHE_DIR


def test_a_fill_compiles_its_own_distribution_only(tmp_path):
    _, err = run(tmp_path, fn="normal_")
    fills = [name for _, _, names in os.walk(tmp_path) for name in names
             if name.endswith(".nbi") and ".fill_" in name]
    assert len(fills) == 1 and ".fill_normal_" in fills[0], fills
    assert "normal float32" in err


def test_a_changed_contract_does_not_load_stale_code(tmp_path):
    digest, _ = run(tmp_path)
    same, err = run(tmp_path, extra=True)  # another contract fingerprint: compiled afresh
    assert NOTICE in err, err
    assert same == digest  # (the added constant is not used by the kernels)


def test_no_writable_cache_falls_back_to_compiling(monkeypatch):
    """Where Numba finds no cache directory it can write, the code is compiled uncached."""
    from numba.core import caching

    from fastinit.backends import cpu

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # (_CacheImpl in older Numba)
    monkeypatch.setattr(impl, "_locator_classes", [])
    monkeypatch.setattr(caching.config, "CACHE_LOCATOR_CLASSES", "", raising=False)

    def f(x):
        return x + 1

    jitted = cpu._cached_jit()(f)
    assert jitted(1) == 2
    assert isinstance(jitted._cache, caching.NullCache)


def test_an_edited_kernel_source_does_not_load_stale_code(tmp_path):
    """Numba keys cached code on the cached function's own file only: the fill loops' code
    from the backend's other files is in the fingerprint of the cached names instead."""
    import shutil

    from fastinit.backends import cpu_jit

    here = os.path.dirname(cpu_jit.__file__)
    for name in cpu_jit.KERNEL_SOURCES:
        shutil.copy(os.path.join(here, name), tmp_path / name)
    assert cpu_jit._contract_fingerprint(str(tmp_path)) == cpu_jit._CONTRACT_KEY
    for name in cpu_jit.KERNEL_SOURCES:
        original = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(original + b"\n# edited\n")
        assert cpu_jit._contract_fingerprint(str(tmp_path)) != cpu_jit._CONTRACT_KEY, name
        (tmp_path / name).write_bytes(original)


def test_the_fingerprint_covers_every_file_the_kernels_use():
    """Every backend module that the kernel sources import from is in the fingerprint (but
    the cache helper itself, which compiles nothing), and so is every backend module with
    Numba code, but ``cpu.py``, whose cached functions Numba keys on that file."""
    import ast

    from fastinit.backends import cpu_jit

    here = os.path.dirname(cpu_jit.__file__)
    covered = set(cpu_jit.KERNEL_SOURCES)
    for name in covered:
        tree = ast.parse(open(os.path.join(here, name)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (
                    node.level or (node.module or "").startswith("fastinit.backends")):
                module = (node.module or "").rsplit(".", 1)[-1] + ".py"
                assert module in covered | {"cpu_jit.py"}, (name, module)
    for name in os.listdir(here):
        if name.endswith(".py") and name not in covered | {"cpu.py", "cpu_jit.py"}:
            source = open(os.path.join(here, name)).read()
            assert "numba" not in source, name
