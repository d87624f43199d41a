"""``fastinit bench --asm``: the CPU backend's fill loops, counted in the machine code that
LLVM generates for this CPU (no timing).

Each fill loop of ``fastinit/backends/cpu_loops.py`` is compiled afresh (code loaded from
Numba's cache cannot be inspected) for the output dtype, and its hot loop - the innermost
loop with the most 512-bit (else 256-bit) operations - is read from the assembly: its
instructions, the elements it writes per iteration (the bytes of its widest stores to the
output over the element size), the instructions per element, the vector multiplies and
how many instructions are narrower than the loop's widest vectors. It is the CPU's
counterpart of ``fastinit bench --sass``: where a fill is below a target, this says what its
arithmetic costs. x86-64 only (the assembly is parsed as AT&T x86-64).
"""
from __future__ import annotations

import json
import platform
import re
import sys
from collections.abc import Sequence

import numpy as np

__all__ = ["hot_loop", "loop_counts", "asm_records", "format_asm_table", "asm_command",
           "LOOPS"]

_LABEL = re.compile(r"^\.LBB\d+_\d+:$")
_JUMP = re.compile(r"\s+j\w+\s+(\.LBB\d+_\d+)$")
_WIDTH = {"zmm": 64, "ymm": 32, "xmm": 16}


def _instructions(lines: Sequence[str]) -> list[str]:
    return [b.strip() for b in lines if b.strip() and not b.strip().startswith((".", "#"))]


def _register_class(instruction: str, wide: str) -> bool:
    """Whether ``instruction`` is a packed operation on ``wide`` registers (not a scalar
    ``...ss`` / ``...sd`` one that happens to name them)."""
    return wide in instruction and not re.match(r"v\w+s[sd]\s", instruction)


def hot_loop(asm: str) -> list[str]:
    """The instructions of the innermost loop of ``asm`` with the most packed 512-bit
    operations (256-bit where there are none): a backward jump to a label, with no other
    such loop inside it."""
    lines = asm.splitlines()
    labels = {line[:-1]: i for i, line in enumerate(lines) if _LABEL.match(line)}
    loops = []
    for i, line in enumerate(lines):
        m = _JUMP.match(line)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            loops.append((labels[m.group(1)], i))
    inner = [(a, b) for a, b in loops  # no other loop within [a, b]
             if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops)]
    best, best_score = [], (-1, -1)
    for a, b in inner:
        body = _instructions(lines[a + 1:b + 1])
        score = (sum(_register_class(x, "zmm") for x in body),
                 sum(_register_class(x, "ymm") for x in body))
        if score > best_score:
            best, best_score = body, score
    return best


def _operands(instruction: str) -> list[str]:
    """The operands of an AT&T instruction, split at the commas outside parentheses."""
    parts = instruction.split(None, 1)
    if len(parts) < 2:
        return []
    out, depth, cur = [], 0, ""
    for ch in parts[1]:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + [cur.strip()]


def _store_bytes(instruction: str) -> int:
    """Bytes of a vector store to memory that is not the stack (0 for anything else)."""
    ops = _operands(instruction)
    if not instruction.startswith("vmov") or len(ops) < 2:
        return 0
    dest = ops[-1].split("{")[0]
    if "(%r" not in dest or "rsp" in dest:
        return 0
    return next((size for name, size in _WIDTH.items() if ops[0].startswith(f"%{name}")), 0)


def loop_counts(body: Sequence[str], element_bytes: int) -> dict:
    """Counts of one hot loop: instructions, elements written per iteration (the widest
    stores' bytes over ``element_bytes``), per element, vector multiplies (``vpmuludq``),
    and the instructions narrower than the loop's widest vectors (data movement that
    narrows 64-bit lanes to 32 or joins halves not counted)."""
    stores = [_store_bytes(x) for x in body]
    widest = max(stores, default=0)
    elements = sum(size for size in stores if size == widest) // element_bytes if widest else 0
    wide = next((name for name, size in _WIDTH.items() if size == widest), None)
    narrower = [name for name, size in _WIDTH.items() if size < widest]
    narrow = [x for x in body if any(f"%{n}" in x for n in narrower)
              and not x.startswith(("vpmovqd", "vpmovdw", "vinserti64x4", "vinsertf64x4",
                                    "vinserti128", "vinsertf128", "vextract"))]
    return {"instructions": len(body), "elements": elements,
            "per_element": len(body) / elements if elements else None,
            "vector_width": widest * 8, "multiplies": sum(x.startswith("vpmuludq") for x in body),
            "wide": sum(_register_class(x, wide) for x in body) if wide else 0,
            "narrower": len(narrow)}


#: The loops reported: (name, loop function in cpu_loops, output NumPy dtype, dtype name,
#: truncated-normal region count). A float32 output 8-byte aligned takes two passes where
#: they are faster (uniform, normal, truncated normal with 1-2 regions): Philox's words
#: (``_pair_words``, the same for every distribution), then a loop over the values in
#: place; the one-pass loops serve the other dtypes and outputs.
LOOPS = [("uniform_", "_uniform_groups", np.float32, "float32", 1),
         ("normal_", "_normal_groups", np.float32, "float32", 1),
         ("normal_", "_normal_groups", np.uint16, "bfloat16", 1),
         ("trunc_normal_ (1-2 regions)", "_trunc_dense_groups", np.float32, "float32", 2),
         ("trunc_normal_ (tiles, 4 regions)", "_trunc_groups", np.float32, "float32", 4),
         ("trunc_normal_ (all 4 regions)", "_trunc_dense_groups", np.float32, "float32", 4),
         ("two passes: Philox words", "_pair_words", np.float32, "float32", 1),
         ("two passes: uniform_ values", "_uniform_f32_words", np.float32, "float32", 1),
         ("two passes: normal_ values", "_normal_f32_words", np.float32, "float32", 1),
         ("two passes: trunc_normal_ values (1-2 regions)", "_trunc_dense_f32_words",
          np.float32, "float32", 2)]


def _loop_args(loop: str, out: np.ndarray, regions: int) -> tuple:
    """The arguments that run ``loop`` over ``out`` (a group of four elements per 16 bytes):
    a wide truncated-normal interval (pa = qb = 1e-3), finite values for every loop."""
    u, f = np.uint32, np.float32
    conversion = (f(0), f(1), f(-np.inf), f(np.inf))
    trunc = (f(1e-3), f(1e-3), f(0.998), f(-3.0))
    words = out.view(np.uint32)
    if loop == "_pair_words":
        return (out.view(np.uint64), 0, 0, words.size // 4, u(1), u(2), u(3), u(4))
    if loop.endswith("_f32_words"):  # a two-pass loop's values, over whole groups
        return (words, words.size // 4) + trunc + (regions,) + conversion
    return (out, 0, out.size // 4, u(1), u(2), u(3), u(4)) + trunc + (regions,) + conversion


def asm_records(loops=None) -> list[dict]:
    """Compile each of ``loops`` (default :data:`LOOPS`) afresh and count its hot loop.

    Raises:
        RuntimeError: not an x86-64 CPU (the assembly is parsed as x86-64).
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError(f"--asm reads x86-64 assembly; this CPU is {platform.machine()}")
    from llvmlite import binding
    from numba import njit

    from fastinit.backends import cpu_loops

    cpu = binding.get_host_cpu_name()
    records = []
    for name, loop, out_dtype, dtype, regions in loops or LOOPS:
        fresh = njit(getattr(cpu_loops, loop).py_func)
        out = np.zeros(4 * 64, out_dtype)
        fresh(*_loop_args(loop, out, regions))
        body = hot_loop(fresh.inspect_asm(fresh.signatures[0]))
        records.append({"fill": name, "dtype": dtype, "loop": loop, "regions": regions,
                        "cpu": cpu, **loop_counts(body, out.itemsize)})
    return records


_COLUMNS = [("fill", "fill"), ("dtype", "dtype"), ("instructions", "instr/iter"),
            ("elements", "elements/iter"), ("per_element", "instr/element"),
            ("vector_width", "vector bits"), ("multiplies", "vpmuludq"),
            ("narrower", "narrower ops")]


def _cells(record: dict) -> list[str]:
    out = []
    for key, _ in _COLUMNS:
        v = record[key]
        out.append("-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v))
    return out


def format_asm_table(records: Sequence[dict]) -> str:
    """The report as a terminal table, under a line naming the CPU LLVM compiled for."""
    from fastinit.cli.rendering import _text_table

    headers = [h for _, h in _COLUMNS]
    left = [k in ("fill", "dtype") for k, _ in _COLUMNS]
    cpu = records[0]["cpu"] if records else "-"
    return (f"CPU fill loops compiled for {cpu} (LLVM's name for this CPU), hot loop of each\n"
            + _text_table(headers, [_cells(r) for r in records], left))


def asm_command(args) -> int:
    """``fastinit bench --asm``: print the report; ``--json PATH`` writes the records
    (``-``: stdout, the table then goes to stderr)."""
    try:
        records = asm_records()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    to_stdout = getattr(args, "json", None) == "-"
    print(format_asm_table(records), file=sys.stderr if to_stdout else sys.stdout)
    if getattr(args, "json", None):
        text = json.dumps(records, indent=1)
        if to_stdout:
            print(text)
        else:
            with open(args.json, "w") as fh:
                fh.write(text + "\n")
    return 0
