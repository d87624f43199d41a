"""SASS cost report: what each fill kernel costs a GPU, measured without one.

Triton compiles ahead of time for a named target with its bundled LLVM and ``ptxas``,
and ships ``nvdisasm``: so the exact machine code an H100 would run (sm_90 SASS) can be
read on any machine. This module compiles every kernel variant the launchers use (with
the launch settings they pick), disassembles it, finds the *hot path* of a whole block,
counts its instructions per element and per execution pipe, and turns the counts into a
predicted ceiling against the HBM write roofline. ``fastinit bench --sass`` prints it;
the CI budgets (``tests/test_sass_budget.py``) are checked with it.

**Hot path.** The machine code of a kernel is a graph of basic blocks. The hot path is
the cheapest path (fewest instructions) from the entry to an ``EXIT`` that runs the code of
each of the case's ``require`` functions (``@triton.jit`` functions of
``fastinit.kernels``, found through the line table; a block counts when it holds at least
a tenth as many of a function's instructions as the block holding most, so that a few
misplaced ones do not):

* ``store_whole``: a whole block is stored (the masked store of a partial block is the
  cold side of that branch);
* the distribution's code (for the grouped kernel, whose branch on the distribution is
  taken at run time), and for ``trunc_normal_wide`` the tail polynomial ``_ndtri_poly2``;
* the clamp (min/max instructions) where the launcher keeps it.

Being the cheapest, it takes 32-bit rather than 64-bit division, ``sqrt`` without its slow
path and skips the branches the case does not take (other distributions, tail regions).
Code the compiler predicates instead of branching around is on every path: it issues.

A called subroutine costs its own cheapest path to ``RET``. Instructions per element =
instructions on the path / elements per thread (``BLOCK / (32 * num_warps)``), i.e.
thread-instructions per element: a warp issues one instruction per clock per SM
sub-partition whatever it does, so uniform-datapath and predicated-off instructions
count too.

**Model** (documented in docs/performance.md, "Performance model"): an H100 SXM issues at most
132 SMs x 4 sub-partitions x 32 lanes per clock (about 29.7e12 thread-instructions/s at
a sustained 1.755 GHz); the *issue bound* is that rate / instructions per element. The
*roofline* is the HBM write bandwidth / bytes per element. The predicted ceiling is the
lesser of the two, as % of the roofline. The *pipe bound* refines the issue bound with
the throughput of each execution pipe per SM and clock (FP32 128, integer multiply
(IMAD) 64, integer/logic ALU 64, FP64 64, conversions and MUFU 16, load/store 32).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

__all__ = [
    "Instruction", "Disassembly", "Program", "PathCost", "SassCase", "MACHINES", "CASES", "parse_sass",
    "hot_path", "pipe_of", "predict", "disassemble", "nvdisasm_path", "sass_records",
    "format_sass_table", "sass_markdown", "JSON_SCHEMA", "sass_command", "compare_markdown",
    "update_markdown_section", "TARGETS",
]

#: Version tag of the JSON records.
JSON_SCHEMA = "fastinit.sass/1"

# --- machine model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """What bounds a fill on one GPU: issue slots, pipe widths and the HBM write bandwidth."""

    name: str
    sms: int
    clock_ghz: float  # sustained clock under a long fill (not the boost clock)
    hbm_tb_s: float  # data-sheet HBM bandwidth
    #: thread-instructions per SM per clock each pipe completes (CUDA C++ Programming Guide,
    #: "Arithmetic Instructions", compute capability 9.0; Nsight Compute pipe names)
    pipes: tuple[tuple[str, int], ...] = (("fma", 128), ("imad", 64), ("alu", 64),
                                          ("fp64", 64), ("xu", 16), ("lsu", 32),
                                          ("uniform", 128), ("branch", 128))

    @property
    def issue_rate(self) -> float:
        """Thread-instructions per second the whole GPU issues (4 x 32 lanes per SM)."""
        return self.sms * 128 * self.clock_ghz * 1e9


MACHINES: dict[str, Machine] = {
    "h100": Machine("H100 SXM", sms=132, clock_ghz=1.755, hbm_tb_s=3.35),
    "h200": Machine("H200 SXM", sms=132, clock_ghz=1.755, hbm_tb_s=4.8),
}

# --- instructions and pipes ----------------------------------------------------------------

# Opcode (first dotted part) -> execution pipe, for the opcodes the fill kernels use.
_PIPES = {
    "fma": {"FFMA", "FMUL", "FADD", "FSWZADD", "HFMA2", "HMUL2", "HADD2", "FMUL32I",
            "FFMA32I", "FADD32I"},
    "imad": {"IMAD", "IMUL", "IDP", "IMADSP", "IMAD32I", "IMUL32I"},
    "fp64": {"DFMA", "DADD", "DMUL", "DSETP", "DMNMX"},
    "xu": {"MUFU", "I2F", "F2I", "F2F", "FRND", "POPC", "FLO", "BREV", "I2I"},
    "lsu": {"STG", "LDG", "LDS", "STS", "LD", "ST", "ATOM", "ATOMG", "ATOMS", "RED", "SHFL",
            "LDL", "STL", "LDSM", "MATCH"},
    "branch": {"BRA", "BRX", "JMP", "JMX", "CALL", "RET", "EXIT", "BSSY", "BSYNC", "BAR",
               "WARPSYNC", "BMOV", "YIELD", "NOP", "BREAK", "KILL", "DEPBAR", "MEMBAR",
               "ELECT", "ERRBAR", "CCTL"},
}
_PIPE_OF = {op: pipe for pipe, ops in _PIPES.items() for op in ops}
#: Opcodes counted as "slow" in the report: integer multiplies, conversions, MUFU.
SLOW = {"IMAD": ("IMAD", "IMUL"), "I2F/F2I": ("I2F", "F2I", "F2F", "I2FP", "F2FP", "FRND"),
        "MUFU": ("MUFU",)}


def pipe_of(opcode: str) -> str:
    """The execution pipe of an SASS opcode (``"alu"`` for integer, logic, compare, select
    and everything not listed elsewhere; ``"uniform"`` for the uniform datapath)."""
    base = opcode.split(".", 1)[0]
    if base in _PIPE_OF:
        return _PIPE_OF[base]
    if base.startswith("U") or base in ("S2UR", "R2UR", "LDC", "S2R", "CS2R"):
        # LDC/S2R: constant-bank and special-register reads; counted with the uniform
        # datapath (issue slot, no vector pipe contention)
        return "uniform"
    return "alu"


@dataclass
class Instruction:
    """One SASS instruction: opcode with modifiers, guard predicate, branch target, and the
    chain of (file, line) it was generated from (innermost first)."""

    opcode: str
    text: str
    predicate: str | None = None
    target: str | None = None
    source: tuple[tuple[str, int], ...] = ()

    @property
    def base(self) -> str:
        return self.opcode.split(".", 1)[0]


@dataclass
class Disassembly:
    """A disassembled cubin: functions (kernel and subroutines) as instruction lists."""

    functions: dict[str, list[Instruction]]
    labels: dict[str, tuple[str, int]]  # label -> (function, index of the next instruction)


Program = Disassembly  # the older name


_LOC = re.compile(r'File "([^"]*)", line (\d+)')
_INS = re.compile(r"/\*[0-9a-f]+\*/\s+(.*?)\s*;")


def parse_sass(text: str) -> Disassembly:
    """Parse ``nvdisasm -c -gi`` output into functions, instructions and labels."""
    functions: dict[str, list[Instruction]] = {}
    labels: dict[str, tuple[str, int]] = {}
    current: str | None = None
    source: tuple[tuple[str, int], ...] = ()
    fresh = False  # consecutive "//## File" lines describe one instruction's inlining chain
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("//## File"):
            locs = tuple((os.path.basename(f), int(n)) for f, n in _LOC.findall(line))
            source = source + locs if fresh else locs
            fresh = True
            continue
        if line.startswith(".type") and "@function" in line:
            continue
        m = re.fullmatch(r"([.$\w]+):", line)
        if m:
            name = m.group(1)
            if name.startswith(".L"):
                if current is not None:
                    labels[name] = (current, len(functions[current]))
            elif not name.startswith(".text"):
                current = name
                functions.setdefault(current, [])
                labels[name] = (current, 0)
            continue
        m = _INS.search(line)
        if m and current is not None:
            body = m.group(1)
            pred = None
            pm = re.match(r"(@!?U?P[T\d]+)\s+(.*)", body)
            if pm:
                pred, body = pm.group(1), pm.group(2)
            tm = re.search(r"`\(([^)]*)\)", body)
            functions[current].append(Instruction(body.split()[0], body, pred,
                                                  tm.group(1) if tm else None, source))
            fresh = False
    return Disassembly(functions, labels)


# --- paths ---------------------------------------------------------------------------------


@dataclass
class PathCost:
    """The instructions on one path, counted."""

    instructions: list[Instruction] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.instructions)

    def by_pipe(self) -> Counter:
        return Counter(pipe_of(i.opcode) for i in self.instructions)

    def slow(self) -> dict[str, int]:
        return {name: sum(1 for i in self.instructions if i.base in ops)
                for name, ops in SLOW.items()}

    def calls(self) -> int:
        return sum(1 for i in self.instructions if i.base == "CALL")

    def stores(self) -> Counter:
        return Counter(i.opcode for i in self.instructions if i.base == "STG")


def _blocks(ins: list[Instruction], labels: dict[str, int]) -> tuple[list[tuple[int, int]],
                                                                        list[list[int]]]:
    """Basic blocks ``[start, end)`` of one function and their successors (-1: exit/return)."""
    starts = {0} | set(labels.values())
    for k, i in enumerate(ins):
        if i.base in ("BRA", "EXIT", "RET", "BRX", "JMP", "JMX"):
            starts.add(k + 1)
    starts = sorted(s for s in starts if s < len(ins))
    index = {s: n for n, s in enumerate(starts)}
    blocks = [(s, starts[n + 1] if n + 1 < len(starts) else len(ins))
              for n, s in enumerate(starts)]
    succ: list[list[int]] = []
    for s, e in blocks:
        last = ins[e - 1]
        out: list[int] = []
        falls = True
        if last.base in ("EXIT", "RET"):
            out.append(-1)
            falls = last.predicate is not None
        elif last.base == "BRA":
            if last.target not in labels:
                raise ValueError(f"branch to unknown label {last.target!r}")
            out.append(index[labels[last.target]])
            falls = last.predicate is not None
        elif last.base in ("BRX", "JMP", "JMX"):
            raise ValueError(f"indirect branch {last.text!r}: not supported")
        if falls and e < len(ins):
            out.append(index[e])
        succ.append(out)
    return blocks, succ


def _function_costs(program: Disassembly) -> dict[str, int]:
    """Cheapest instruction count of each subroutine, entry to ``RET`` (for ``CALL``)."""
    costs: dict[str, int] = {}
    for name in program.functions:
        if name.startswith("$"):
            path = _cheapest(program, name, lambda i: True, (), costs={})
            if path is not None:
                costs[name] = path.total
    return costs


def _cheapest(program: Disassembly, fn: str, allowed, required: Sequence, costs: dict[str, int],
              ) -> PathCost | None:
    """The cheapest entry -> exit path of ``fn`` through blocks whose instructions all
    satisfy ``allowed``, running at least one instruction of each predicate in
    ``required``. Loops: each back edge is cut (one iteration is counted)."""
    ins = program.functions[fn]
    labels = {k: v[1] for k, v in program.labels.items() if v[0] == fn}
    blocks, succ = _blocks(ins, labels)
    nreq = len(required)
    full = (1 << nreq) - 1

    # A block meets a requirement when it holds at least a tenth as many matching
    # instructions as the block holding most: the line table misplaces a few instructions
    # (a hoisted load, a merged constant), which must not stand for the whole function.
    hits = [[sum(1 for i in ins[s:e] if pred(i)) for pred in required] for s, e in blocks]
    need_hits = [max(1, math.ceil(max((h[r] for h in hits), default=0) / 10))
                 for r in range(nreq)]

    def block_cost(b: int) -> tuple[int, int] | None:
        s, e = blocks[b]
        cost = 0
        for i in ins[s:e]:
            if not allowed(i):
                return None
            cost += 1
            if i.base == "CALL":
                callee = i.target
                if callee not in costs:
                    return None
                cost += costs[callee]
        mask = sum(1 << r for r in range(nreq) if hits[b][r] >= need_hits[r])
        return cost, mask

    info = [block_cost(b) for b in range(len(blocks))]
    # topological order by DFS from the entry, cutting back edges
    order: list[int] = []
    state = [0] * len(blocks)
    edges: list[list[int]] = [[] for _ in blocks]
    stack = [(0, iter(succ[0]))]
    state[0] = 1
    while stack:
        b, it = stack[-1]
        for n in it:
            if n == -1:
                edges[b].append(-1)
            elif state[n] == 0:
                edges[b].append(n)
                state[n] = 1
                stack.append((n, iter(succ[n])))
                break
            elif state[n] == 2:
                edges[b].append(n)
            # state 1: a back edge, cut
        else:
            state[b] = 2
            order.append(b)
            stack.pop()
    # best[b][mask]: cheapest cost from the start of b to an exit, collecting `mask`
    inf = math.inf
    best = [[inf] * (full + 1) for _ in blocks]
    choice: list[list] = [[None] * (full + 1) for _ in blocks]
    for b in order:  # reverse topological: successors first
        if info[b] is None:
            continue
        cost, mask = info[b]
        for need in range(full + 1):
            rest = need & ~mask
            for n in edges[b]:
                c = (0 if rest == 0 else inf) if n == -1 else best[n][rest]
                if cost + c < best[b][need]:
                    best[b][need] = cost + c
                    choice[b][need] = (n, rest)
    if best[0][full] == inf:
        return None
    path = PathCost()
    b, need = 0, full
    while b != -1:
        s, e = blocks[b]
        for i in ins[s:e]:
            path.instructions.append(i)
            if i.base == "CALL":
                sub = _cheapest(program, i.target, lambda x: True, (), costs)
                path.instructions.extend(sub.instructions if sub else [])
        b, need = choice[b][need]
    return path


def hot_path(program: Disassembly, kernel: str, require: Sequence = (), exclude=lambda i: False
             ) -> PathCost:
    """The hot path of ``kernel``: the cheapest path from the entry to an exit running an
    instruction matching each of ``require`` and none matching ``exclude``."""
    costs = _function_costs(program)
    path = _cheapest(program, kernel, lambda i: not exclude(i), list(require), costs)
    if path is None:
        raise ValueError(f"{kernel}: no whole-block path satisfies the case's constraints")
    return path


# --- the cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SassCase:
    """One row of the report: a kernel of the launchers, a distribution, an output dtype.

    ``require``: names of ``@triton.jit`` functions (in ``fastinit.kernels``) the hot path
    must run (being the cheapest such path, it skips the branches the case does not
    take: the other distributions of the grouped kernel, the tail polynomials).
    """

    kernel: str  # "single" | "grouped"
    distribution: str
    dtype: str  # "float32", "bfloat16", "float16", "float64"
    require: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.kernel} {self.distribution} {self.dtype}"


#: Distribution -> (InitSpec constructor arguments, functions the hot path must run).
DISTRIBUTIONS: dict[str, tuple[tuple, tuple[str, ...]]] = {
    "constant": (("constant", 0.0), ()),
    "uniform": (("uniform", -0.1, 0.1), ("uniform_open",)),
    "normal": (("normal", 0.0, 0.02), ("box_muller",)),
    # torch's defaults (a, b = -2, 2 with std 1): every w < 3, the central polynomial only
    "trunc_normal": (("trunc_normal", 0.0, 1.0, -2.0, 2.0), ("trunc_normal_standard",)),
    # std 0.02 in [-2, 2] (timm, torchtitan): elements reach w >= 6.25 (|z| >= 3.3, one in
    # a thousand: nearly every block of 4096) but not w >= 16 (|z| >= 5.4)
    "trunc_normal_wide": (("trunc_normal", 0.0, 0.02, -2.0, 2.0),
                          ("trunc_normal_standard", "_ndtri_poly2")),
}
DTYPE_NAMES = ("float32", "bfloat16", "float16", "float64")
#: The issue's targets (instructions per element on the hot path, fp32 and bf16).
TARGETS = {"uniform": 20.0, "normal": 38.0, "trunc_normal": 55.0}
_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float64": "fp64"}
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}


def _cases() -> list[SassCase]:
    out = []
    for kernel in ("single", "grouped"):
        for dist, (_, req) in DISTRIBUTIONS.items():
            for dtype in DTYPE_NAMES:
                out.append(SassCase(kernel, dist, dtype, req))
    return out


CASES: list[SassCase] = _cases()


def _function_lines(files: Sequence[str] | None = None) -> dict[str, list[tuple[str, int, int]]]:
    """``@triton.jit`` function name -> [(file name, first line, last line)] of its body in
    the kernels package (or in ``files``), read from the source with ``ast`` (the line
    table names files and lines)."""
    import ast

    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")
    try:
        import fastinit.kernels as K

        here = os.path.abspath(list(K.__path__)[0])  # a namespace portion has no __file__
    except ImportError:  # pragma: no cover
        pass
    out: dict[str, list[tuple[str, int, int]]] = {}
    if files is None:
        files = [os.path.join(here, n) for n in sorted(os.listdir(here)) if n.endswith(".py")]
    for path in files:
        name = os.path.basename(path)
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                out.setdefault(node.name, []).append((name, node.lineno, node.end_lineno))
    return out


_MINMAX = ("FMNMX", "HMNMX2", "DMNMX", "FMNMX3", "DSETP")  # fp64: DSETP + FSEL


def _runs(functions: Iterable[str], spans: dict[str, list[tuple[str, int, int]]]):
    """A predicate: the instruction comes (inlined or not) from one of ``functions``."""
    ranges = [r for fn in functions for r in spans.get(fn, ())]
    missing = [fn for fn in functions if fn not in spans]
    if missing:
        raise ValueError(f"no kernel function named {', '.join(missing)}")

    def pred(i: Instruction) -> bool:
        return any(f == file and lo <= line <= hi for file, line in i.source
                   for f, lo, hi in ranges)

    return pred


# --- compiling ---------------------------------------------------------------------------------


def nvdisasm_path() -> str:
    """The ``nvdisasm`` Triton ships (or one on ``PATH``)."""
    try:
        from triton import knobs

        path = knobs.nvidia.nvdisasm.path
        if path and os.path.exists(path):
            return path
    except Exception:  # older Triton without knobs
        pass
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    if os.path.exists(path):
        return path
    found = shutil.which("nvdisasm")
    if found:
        return found
    raise RuntimeError("nvdisasm not found: it ships with Triton's NVIDIA backend")


def disassemble(cubin: bytes) -> str:
    """SASS text of a cubin, with the line table (``nvdisasm -c -gi``)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
        path = f.name
    try:
        proc = subprocess.run([nvdisasm_path(), "-c", "-gi", path], capture_output=True,
                              text=True, check=False)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"nvdisasm failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _compile_case(case: SassCase, arch: int) -> dict:
    """Compile one case with the launcher's settings; return its counts (in this process,
    which must not run the Triton interpreter)."""
    import torch

    from fastinit.backends import triton as TB
    from fastinit.spec import InitSpec

    ctor, *args = DISTRIBUTIONS[case.distribution][0]
    spec = getattr(InitSpec, ctor)(*args)
    dtype = getattr(torch, case.dtype)
    params = spec.kernel_params(dtype)
    variant = TB.launch_variant(params, dtype, grouped=case.kernel == "grouped")
    compiled = TB.compile_variant(variant, arch=arch)
    program = parse_sass(disassemble(compiled.asm["cubin"]))
    spans = _function_lines()
    # the clamp runs where the launcher found that it can change a value (one it skips
    # is not excluded: a clamp the compiler predicates rather than branches around issues)
    clamp = TB.needs_clamp(params, dtype)
    required = ("store_whole",) + case.require
    require = [_runs([fn], spans) for fn in required]
    if clamp:  # by opcode: the line table puts some min/max on the bounds' lines
        required += ("clamp_to",)
        require.append(lambda i: i.base in _MINMAX)
    try:
        path = hot_path(program, variant.kernel_name, require)
    except ValueError as exc:
        raise ValueError(f"{case.name}: {exc} (requires {', '.join(required)})") from None
    per_thread = variant.block // (32 * variant.num_warps)
    static = sum(len(v) for v in program.functions.values())
    return {
        "case": case.name, "kernel": case.kernel, "distribution": case.distribution,
        "dtype": case.dtype, "block": variant.block, "num_warps": variant.num_warps,
        "elements_per_thread": per_thread, "path_instructions": path.total,
        "pipes": dict(path.by_pipe()), "slow": path.slow(), "calls_on_path": path.calls(),
        "division_calls": sum(1 for fn in program.functions if "div" in fn and
                              fn.startswith("$")),
        "stores": dict(path.stores()), "static_instructions": static,
        "clamp": clamp,
    }


def predict(ipe: float, pipes_per_element: dict[str, float], nbytes: int,
            machine: Machine) -> dict[str, float]:
    """Predicted ceilings for one kernel on ``machine``, as % of its HBM write roofline.

    ``issue``: the issue-rate bound; ``pipe``: the busiest execution pipe's bound; both
    capped at 100 (the roofline itself).
    """
    roofline = machine.hbm_tb_s * 1e12 / nbytes  # elements/s
    issue = machine.issue_rate / ipe
    per_sm_clock = machine.sms * machine.clock_ghz * 1e9
    widths = dict(machine.pipes)
    pipe_time = max([ipe / 128] + [n / widths[p] for p, n in pipes_per_element.items()
                                   if p in widths])
    pipe = per_sm_clock / pipe_time
    return {"issue_pct": min(100.0, 100 * issue / roofline),
            "pipe_pct": min(100.0, 100 * pipe / roofline)}


def _record(raw: dict) -> dict:
    per = raw["elements_per_thread"]
    ipe = raw["path_instructions"] / per
    pipes = {p: n / per for p, n in raw["pipes"].items()}
    nbytes = _BYTES[raw["dtype"]]
    rec = {
        "schema": JSON_SCHEMA, "kernel": raw["kernel"], "distribution": raw["distribution"],
        "dtype": raw["dtype"], "instructions_per_element": round(ipe, 2),
        "block": raw["block"], "num_warps": raw["num_warps"],
        "elements_per_thread": per, "path_instructions": raw["path_instructions"],
        "pipes_per_element": {p: round(v, 2) for p, v in sorted(pipes.items())},
        "slow_per_element": {k: round(v / per, 2) for k, v in raw["slow"].items()},
        "calls_on_path": raw["calls_on_path"], "division_subroutines": raw["division_calls"],
        "stores": raw["stores"], "static_instructions": raw["static_instructions"],
        "clamp": raw["clamp"],
    }
    for key, machine in MACHINES.items():
        p = predict(ipe, pipes, nbytes, machine)
        rec[f"predicted_pct_{key}"] = round(p["issue_pct"], 1)
        rec[f"pipe_bound_pct_{key}"] = round(p["pipe_pct"], 1)
    return rec


def _compile_many(cases: Sequence[SassCase], arch: int, jobs: int) -> list[dict]:
    if jobs <= 1 or len(cases) <= 1:
        return [_compile_case(c, arch) for c in cases]
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_compile_case, cases, [arch] * len(cases)))


def _interpreter_active() -> bool:
    """Whether the kernels were (or will be) imported as interpreted functions."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return True
    mod = sys.modules.get("fastinit.kernels.fill")
    if mod is None:
        return False
    import triton

    return not isinstance(mod._fill_kernel, triton.runtime.JITFunction)


def sass_records(cases: Sequence[SassCase] | None = None, *, arch: int = 90,
                 jobs: int | None = None) -> list[dict]:
    """Compile ``cases`` (default: all of :data:`CASES`) for ``sm_<arch>`` and return one
    record per case. Runs in a child process when the Triton interpreter is active here
    (the interpreter replaces the kernels' compiled form)."""
    cases = list(CASES if cases is None else cases)
    jobs = jobs or min(len(cases), os.cpu_count() or 1)
    if _interpreter_active():
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        payload = json.dumps({"cases": [asdict(c) for c in cases], "arch": arch, "jobs": jobs})
        proc = subprocess.run([sys.executable, "-m", "fastinit.cli.sass", "--child"],
                              input=payload, capture_output=True, text=True, env=env,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling for sm_{arch} failed:\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout)
    return [_record(r) for r in _compile_many(cases, arch, jobs)]


# --- rendering ---------------------------------------------------------------------------------


def _table_rows(records: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    headers = ["kernel", "distribution", "dtype", "instr/elem", "IMAD", "I2F/F2I", "MUFU",
               "calls", "H100 %", "H200 %", "H100 pipe %", "H200 pipe %"]
    rows = []
    for r in records:
        s = r["slow_per_element"]
        rows.append([r["kernel"], r["distribution"], _SHORT[r["dtype"]],
                     f"{r['instructions_per_element']:.1f}", f"{s['IMAD']:.1f}",
                     f"{s['I2F/F2I']:.2f}", f"{s['MUFU']:.2f}", str(r["calls_on_path"]),
                     f"{r['predicted_pct_h100']:.0f}", f"{r['predicted_pct_h200']:.0f}",
                     f"{r['pipe_bound_pct_h100']:.0f}", f"{r['pipe_bound_pct_h200']:.0f}"])
    return headers, rows


def format_sass_table(records: Sequence[dict]) -> str:
    """The report as a terminal table."""
    headers, rows = _table_rows(records)
    widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h)
              for k, h in enumerate(headers)]
    left = {0, 1, 2}

    def fmt(cells):
        return "  ".join(c.ljust(w) if k in left else c.rjust(w)
                         for k, (c, w) in enumerate(zip(cells, widths)))

    lines = [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    return "\n".join(lines)


def sass_markdown(records: Sequence[dict]) -> str:
    """The report as a Markdown table."""
    headers, rows = _table_rows(records)
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" if k < 3 else "---:" for k in range(len(headers))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


SECTION_BEGIN = "<!-- fastinit-sass:begin -->"
SECTION_END = "<!-- fastinit-sass:end -->"


def update_markdown_section(path: str, body: str) -> None:
    """Write ``body`` between the SASS section markers of ``path`` (replaced if present,
    appended otherwise; the file is created if missing)."""
    block = f"{SECTION_BEGIN}\n{body.rstrip()}\n{SECTION_END}\n"
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if SECTION_BEGIN in text and SECTION_END in text:
        head, rest = text.split(SECTION_BEGIN, 1)
        tail = rest.split(SECTION_END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block
    with open(path, "w") as f:
        f.write(text)


def compare_markdown(before: Sequence[dict], after: Sequence[dict],
                     targets: dict[str, float] | None = None) -> str:
    """A before/after Markdown table (instructions per element and predicted % of the
    roofline) of two runs of the report, matched by kernel, distribution and dtype."""
    old = {(r["kernel"], r["distribution"], r["dtype"]): r for r in before}
    out = ["| kernel | distribution | dtype | instr/elem before | after | target | "
           "H100 % before | after | H200 % before | after |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in after:
        b = old.get((r["kernel"], r["distribution"], r["dtype"]))
        # the issue's targets are for float32 and bfloat16 fills
        t = (targets or {}).get(r["distribution"]) if r["dtype"] in ("float32", "bfloat16") \
            else None
        cell = (lambda key, fmt: format(b[key], fmt) if b else "-")
        out.append(f"| {r['kernel']} | {r['distribution']} | {_SHORT[r['dtype']]} | "
                   f"{cell('instructions_per_element', '.1f')} | "
                   f"{r['instructions_per_element']:.1f} | {'' if t is None else f'<= {t:g}'} | "
                   f"{cell('predicted_pct_h100', '.0f')} | {r['predicted_pct_h100']:.0f} | "
                   f"{cell('predicted_pct_h200', '.0f')} | {r['predicted_pct_h200']:.0f} |")
    return "\n".join(out)


def sass_command(args) -> int:
    """``fastinit bench --sass``: print the report; ``--json PATH`` writes the records,
    ``--markdown PATH`` the table (in its own section of the file; ``-``: stdout)."""
    try:
        records = sass_records()
    except (RuntimeError, ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    to_stdout = "-" in (getattr(args, "json", None), getattr(args, "markdown", None))
    print(format_sass_table(records), file=sys.stderr if to_stdout else sys.stdout)
    if getattr(args, "json", None):
        text = json.dumps(records, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    if getattr(args, "markdown", None):
        if args.markdown == "-":
            print(sass_markdown(records))
        else:
            update_markdown_section(args.markdown, sass_markdown(records))
    return 0


def _child() -> int:
    """``python -m fastinit.cli.sass --child``: compile the cases read as JSON on stdin."""
    payload = json.loads(sys.stdin.read())
    cases = [SassCase(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})
             for c in payload["cases"]]
    records = sass_records(cases, arch=payload["arch"], jobs=payload["jobs"])
    sys.stdout.write(json.dumps(records))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="SASS cost report (see fastinit bench --sass); --compare prints a "
                    "before/after Markdown table of two --json outputs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ns = parser.parse_args()
    if ns.child:
        sys.exit(_child())
    if ns.compare:
        with open(ns.compare[0]) as fb, open(ns.compare[1]) as fa:
            print(compare_markdown(json.load(fb), json.load(fa), TARGETS))
        sys.exit(0)
    parser.print_help()
