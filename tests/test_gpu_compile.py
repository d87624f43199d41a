"""The kernels compile for an NVIDIA H100 (sm_90) on a machine without a GPU.

The Triton interpreter checks the kernels' values on the CPU, but not that they compile
for a real device, where Triton's type and layout rules are stricter. Triton compiles
ahead of time for a named target with its bundled LLVM and ptxas, so CI catches a kernel
that would fail on a GPU. ``tools/triton_compile_check.py`` compiles every variant the
launchers use (``fastinit.backends.triton.all_variants``) with the installed Triton; CI
also runs it with Triton 3.6 in a separate environment (``.ci/run``). The checks pin the
PTX: no approximate math, vector stores for whole aligned blocks (none where alignment is
not proven), bfloat16 rounded to nearest even. (Runs in a subprocess: the interpreter,
which the rest of the suite enables, replaces the kernels' compiled form.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("compile") / "variants.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, os.path.join(_ROOT, "tools", "triton_compile_check.py"),
                           "--json", str(out)], capture_output=True, text=True, env=env,
                          timeout=1800, cwd=_ROOT)
    if proc.returncode != 0 and "ptxas" in proc.stderr and "not found" in proc.stderr:
        pytest.skip("this Triton build has no ptxas")
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_every_variant_compiles_for_sm90(compiled):
    from fastinit.backends import triton as TB

    assert len(compiled) == len(TB.all_variants()) == 56
    assert {r["kernel"] for r in compiled} == {"_fill_kernel", "_grouped_fill_kernel"}
    assert {r["dtype"] for r in compiled} >= {"fp32", "fp64", "fp16", "bf16"}


def test_no_approximate_device_math(compiled):
    """No sin/cos/lg2/rsqrt .approx instructions: the values must not depend on the GPU."""
    assert all(r["approx"] == 0 for r in compiled), [r for r in compiled if r["approx"]]


def test_aligned_whole_blocks_use_vector_stores(compiled):
    for r in compiled:
        if r["constexprs"]["ALIGNED"] == "True":
            if r["dtype"] == "fp32":
                assert r["v4"] > 0, r  # 16-byte stores
            else:
                assert r["v4"] + r["v2"] > 0, r  # fp64: 16 bytes; 16-bit outputs: 8 bytes
        else:
            assert r["v4"] + r["v2"] == 0, r


def test_bfloat16_rounds_to_nearest_even_on_the_device(compiled):
    """The native bfloat16 conversion is cvt.rn (the interpreter's integer form rounds the
    same way and is checked bit for bit against the CPU backend)."""
    bf16 = [r for r in compiled if r["dtype"] == "bf16"]
    assert bf16 and all(r["cvt_bf16"] > 0 and r["cvt_bf16_other"] == 0 for r in bf16)
    assert all(not r["problems"] for r in compiled), [r for r in compiled if r["problems"]]
