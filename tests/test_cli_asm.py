"""``fastinit bench --asm`` (``fastinit/cli/asm.py``): the CPU fill loops counted in their
generated assembly - the loop finder and the counts on hand-written assembly, then the
command on this CPU."""
from __future__ import annotations

import json
import math
import platform

import pytest

from fastinit.cli import asm
from tests.cli_helpers import exit_status, one_line_error

# Two loops after each other; the first holds an inner loop (the hot one: the outer loop's
# body holds more zmm instructions in all, but is not innermost).
_NESTED = """\
fill:
.LBB0_1:
\tvmulps\t%zmm1, %zmm2, %zmm3
\tvaddps\t%zmm1, %zmm2, %zmm3
.LBB0_2:
\tvpmuludq\t%zmm1, %zmm2, %zmm3
\tvpsrlq\t$32, %zmm3, %zmm4
\tvpmovqd\t%zmm4, %ymm4
\tvmovups\t%zmm4, (%rbx)
\tvmovups\t%zmm5, 64(%rbx,%rax,4) {%k1}
\tvmovups\t%zmm6, 128(%rsp)
\taddq\t$8, %rax
\tjne\t.LBB0_2
\tvmulps\t%zmm1, %zmm2, %zmm3
\tvmulps\t%zmm1, %zmm2, %zmm3
\tvmulps\t%zmm1, %zmm2, %zmm3
\tjne\t.LBB0_1
.LBB0_3:
\tvaddps\t%ymm1, %ymm2, %ymm3
\tvmovups\t%ymm3, (%rcx)
\tjne\t.LBB0_3
"""


def test_the_hot_loop_is_the_innermost_with_the_most_wide_operations():
    body = asm.hot_loop(_NESTED)
    assert body[0].startswith("vpmuludq") and body[-1] == "jne\t.LBB0_2"
    assert len(body) == 8


def test_loop_counts_of_a_hand_written_loop():
    """Two 64-byte stores to the output (the stack store is a spill, not output): 32 float32
    elements; the ``vpmovqd`` narrowing is data movement, a ymm add is narrower arithmetic."""
    body = asm.hot_loop(_NESTED)
    counts = asm.loop_counts(body, 4)
    assert counts["elements"] == 32 and counts["vector_width"] == 512
    assert counts["instructions"] == 8 and counts["per_element"] == 8 / 32
    assert counts["multiplies"] == 1 and counts["narrower"] == 0
    counts = asm.loop_counts(body + ["vaddps\t%ymm1, %ymm2, %ymm3"], 2)  # 16-bit elements
    assert counts["elements"] == 64 and counts["narrower"] == 1


@pytest.mark.parametrize("instruction,size", [
    ("vmovdqu64\t%zmm10, 64(%r14,%rax,8)", 64), ("vmovups\t%ymm3, (%rcx)", 32),
    ("vmovups\t%zmm6, 128(%rsp)", 0), ("vmovups\t(%rbx), %zmm4", 0),
    ("vmovdqu\t%xmm3, (%r8,%r11)", 16), ("vmovaps\t%zmm9, %zmm10", 0), ("addq\t$8, %rax", 0)])
def test_store_bytes(instruction, size):
    """Stores to memory other than the stack, by register width; loads and moves are 0."""
    assert asm._store_bytes(instruction) == size


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 assembly")
def test_bench_asm_reports_every_loop(tmp_path, capsys):
    """``fastinit bench --asm --json PATH``: the table on stdout, one record per loop, each
    writing whole vectors of elements at a finite cost per element."""
    path = tmp_path / "asm.json"
    assert exit_status(["bench", "--asm", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    records = json.loads(path.read_text())
    assert [(r["fill"], r["dtype"]) for r in records] == [(f, d) for f, _, _, d, _ in asm.LOOPS]
    for r in records:
        assert r["elements"] >= 8 and r["vector_width"] >= 256, r
        values = r["loop"].endswith("_f32_words")  # a two-pass loop's values: no Philox
        assert math.isfinite(r["per_element"]) and (0.2 if values else 1) < r["per_element"] < 30, r
        assert values or r["multiplies"] >= 8, r  # Philox's 32x32->64 multiplies, in vectors
        assert f"{r['per_element']:.2f}" in out
    assert records[0]["cpu"] in out


@pytest.mark.parametrize("extra,message", [
    (["--csv", "x.csv"], "--asm writes its records with --json only"),
    (["--sass"], "--sass (the GPU kernels) and --asm (the CPU loops) are two reports")])
def test_bench_asm_refuses_other_outputs(extra, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert exit_status(["bench", "--asm", *extra]) == 2
    assert message in one_line_error(capsys, "bench")


def test_asm_on_another_architecture_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert asm.asm_command(type("Args", (), {"json": None})()) == 2
    assert "--asm reads x86-64 assembly; this CPU is aarch64" in capsys.readouterr().err
