"""The CPU backend's compiled code: cached on disk, compiled per distribution, announced.

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


def test_another_dtype_is_announced_with_its_name(tmp_path):
    _, err = run(tmp_path, dtype="bfloat16", fn="trunc_normal_")
    assert "trunc_normal bfloat16" in err, err


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


def test_a_new_region_count_is_announced_as_a_truncated_normal(tmp_path):
    """A truncated normal far in the tail needs more inverse-CDF regions: another kernel."""
    script = ("import torch, fastinit\n"
              "fastinit.trunc_normal_(torch.empty(64), 0, 1, -2, 2, seed=0)\n"
              "import sys; print('---', file=sys.stderr)\n"
              "fastinit.trunc_normal_(torch.empty(64), 0, 1, 8, 9, seed=0)\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    first, second = res.stderr.split("---")
    assert first.count(NOTICE) == 1 and second.count(NOTICE) == 1, res.stderr
    assert "(trunc_normal float32)" in second
