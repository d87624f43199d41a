"""The kernels compile for an NVIDIA H100 (sm_90) on a machine without a GPU.

The Triton interpreter checks the kernels' values on the CPU, but not that they compile
for a real device, where Triton's type and layout rules are stricter. Triton compiles
ahead of time for a named target with its bundled LLVM and ptxas, so CI catches a kernel
that would fail on a GPU. The checks also pin the store width: whole blocks of an
aligned fill use 16-byte vector stores. (Runs in a subprocess: the interpreter, which
the rest of the suite enables, replaces the kernels' compiled form.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

_SCRIPT = r"""
import json
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from fastinit.kernels.fill import _fill_kernel, _grouped_fill_kernel

target = GPUTarget("cuda", 90, 32)
ints = ["m_base", "m_row_stride", "g_base", "g_row_stride", "row_len", "blocks_per_row",
        "k0", "k1", "c2", "c3", "shift_bits", "scale_bits", "pa_bits", "qb_bits",
        "dd_bits", "xa_bits", "lo_bits", "hi_bits"]
out = {}
for dist, dtype in [(1, "fp32"), (2, "bf16"), (3, "fp16"), (0, "fp64")]:
    for aligned in (False, True):
        sig = {"out_ptr": "*" + dtype, **{k: "i64" for k in ints}, "DIST": "constexpr",
               "CLAMP": "constexpr", "BLOCK": "constexpr", "ALIGNED": "constexpr"}
        src = ASTSource(fn=_fill_kernel, signature=sig,
                        constexprs={"DIST": dist, "CLAMP": True, "BLOCK": 4096,
                                    "ALIGNED": aligned},
                        attrs={(0,): [["tt.divisibility", 16]]})
        ptx = triton.compile(src, target=target,
                             options={"num_warps": 8, "enable_fp_fusion": False}).asm["ptx"]
        out[f"single {dist} {dtype} {aligned}"] = {
            "v4": ptx.count("st.global.v4"), "v2": ptx.count("st.global.v2"),
            "approx": ptx.count(".approx")}
sig = {"table_ptr": "*i64", "block_entry_ptr": "*i32", "OUT_DTYPE": "constexpr",
       "BLOCK": "constexpr", "ALIGNED": "constexpr"}
src = ASTSource(fn=_grouped_fill_kernel, signature=sig,
                constexprs={"OUT_DTYPE": tl.bfloat16, "BLOCK": 4096, "ALIGNED": True})
ptx = triton.compile(src, target=target,
                     options={"num_warps": 8, "enable_fp_fusion": False}).asm["ptx"]
out["grouped bf16 True"] = {"v4": ptx.count("st.global.v4"), "v2": 0,
                            "approx": ptx.count(".approx")}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)
    if proc.returncode != 0 and "ptxas" in proc.stderr and "not found" in proc.stderr:
        pytest.skip("this Triton build has no ptxas")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_kernels_compile_for_sm90(compiled):
    assert len(compiled) == 9


def test_no_approximate_device_math(compiled):
    """No sin/cos/lg2/rsqrt .approx instructions: the values must not depend on the GPU."""
    assert all(r["approx"] == 0 for r in compiled.values()), compiled


def test_aligned_whole_blocks_use_vector_stores(compiled):
    for key, r in compiled.items():
        if key.endswith("True"):
            assert r["v4"] + r["v2"] > 0, key
        else:
            assert r["v4"] + r["v2"] == 0, key
