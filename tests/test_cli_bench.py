"""``fastinit bench`` (fastinit.cli.bench), in-process at tiny sizes.

The command runs once for the module (``bench_run``) and the tests look at what it wrote:
the terminal table, the JSON / CSV / Markdown files and the PNG; the JSON to stdout alone,
the progress bar, the case shapes; an unstable roofline is measured again or marked.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import sys

import pytest
import torch

from fastinit.cli import bench as B
from fastinit.cli import main
from fastinit.cli import rendering as R
from fastinit.cli import timing as T
from fastinit.cli.models import CONFIGS
from tests.cli_helpers import assert_png, fake_run


BENCH_ARGS = ["bench", "--device", "cpu", "--sizes", "2^10,2^12", "--dtypes", "fp32,bf16",
              "--repeats", "2", "--models", "tiny", "--model-repeats", "1", "--no-hf",
              "--quiet"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    paths = {k: str(out / n) for k, n in (("json", "r.json"), ("csv", "r.csv"),
                                          ("markdown", "RESULTS.md"), ("plot", "tp.png"))}
    argv = BENCH_ARGS + [f"--{k}={v}" for k, v in paths.items()]
    buf = io.StringIO()
    stdout, sys.stdout = sys.stdout, buf
    try:
        rc = main(argv)
    finally:
        sys.stdout = stdout
    return rc, buf.getvalue(), paths


def test_bench_exit_status_and_table(bench_run):
    rc, text, _ = bench_run
    assert rc == 0
    for col in ("function", "dtype", "elements", "fastinit ms", "fastinit GB/s", "% roofline",
                "torch ms", "torch GB/s", "speed-up", "zero_ GB/s", "model", "params",
                "peak mem / params", "materialize speed-up"):
        assert col in text, col
    for fn in B.FUNCTIONS:
        assert len(re.findall(rf"^{fn}\s+(float32|bfloat16)\s+2\^1[02]\s", text, re.M)) == 4, fn
    assert "AMD" in text or T.cpu_name() in text  # the machine is named
    assert "fastinit: meta + materialize" in text
    assert "limit: torch.empty(n).zero_()" in text  # the first-touch limit, beside it
    assert "fastinit: empty_init + materialize" in text  # the host cost per tensor


def test_bench_json_schema(bench_run):
    data = json.loads(open(bench_run[2]["json"]).read())
    assert data["schema"] == B.JSON_SCHEMA
    assert set(data) == {"schema", "machine", "settings", "functions", "models"}
    m = data["machine"]
    for key in ("device", "device_name", "cpu", "threads", "torch", "triton", "numba",
                "fastinit", "date"):
        assert key in m, key
    assert m["device"] == "cpu" and m["torch"] == torch.__version__
    assert data["settings"]["sizes"] == [1024, 4096]
    assert data["settings"]["command"].startswith("fastinit bench")
    funcs = data["functions"]
    assert len(funcs) == len(B.FUNCTIONS) * 2 * 2
    for r in funcs:
        assert r["bytes"] == r["numel"] * (4 if r["dtype"] == "float32" else 2)
        assert r["numel"] == math.prod(r["shape"])
        for k in ("fastinit_s", "torch_s", "roofline_s"):
            assert r[k] > 0, (k, r)
        assert r["fastinit_gbps"] == pytest.approx(r["bytes"] / r["fastinit_s"] / 1e9)
        assert r["speedup"] == pytest.approx(r["torch_s"] / r["fastinit_s"])
        if r["roofline_unstable"]:  # a busy machine: no percentage, never a wrong one
            assert r["pct_roofline"] is None and r["roofline_s"] > r["fastinit_s"]
        else:
            assert r["pct_roofline"] == pytest.approx(100 * r["roofline_s"] / r["fastinit_s"])
    models = [r for r in data["models"] if r["model"] == "tiny"]
    assert [r["method"] for r in models] == ["torch_construct", "torch_to_empty",
                                             "fastinit_materialize", "fresh_zero",
                                             "fresh_uniform"]
    small = [r for r in data["models"] if r["model"] != "tiny"]
    assert [r["method"] for r in small] == [k for k, _, _ in B.SMALL_METHODS]
    count, numel = B.SMALL_TENSORS
    for r in small:  # the host cost per tensor, relative to empty_init + materialize
        assert r["model"] == f"{count}x{numel}" and r["params"] == count * numel
        assert r["seconds"] > 0
    assert next(r for r in small if r["method"] == "small_empty_init")[
        "materialize_speedup"] == 1.0
    for r in models:
        assert r["params"] == CONFIGS["tiny"].num_parameters()
        assert r["seconds"] > 0 and r["bytes"] == 4 * r["params"]
        # the parameters themselves are resident at the peak: >= 1x (Linux VmHWM)
        if r["peak_x_params"] is not None:
            assert r["peak_x_params"] >= 0.95, r
    assert next(r for r in models if r["method"] == "fastinit_materialize")[
        "materialize_speedup"] == 1.0


def test_bench_csv(bench_run):
    rows = list(csv.DictReader(open(bench_run[2]["csv"])))
    header = rows[0].keys()
    for col in ("section", "function", "dtype", "numel", "fastinit_gbps", "pct_roofline",
                "speedup", "model", "method", "seconds", "machine_device_name", "machine_torch",
                "machine_date"):
        assert col in header, col
    assert sum(r["section"] == "functions" for r in rows) == len(B.FUNCTIONS) * 4
    assert sum(r["section"] == "models" for r in rows) == 5 + len(B.SMALL_METHODS)
    assert all(r["machine_torch"] == torch.__version__ for r in rows)


def test_bench_markdown(bench_run):
    md = open(bench_run[2]["markdown"]).read()
    assert md.count("<!-- fastinit-bench: ") == 1 and md.count("<!-- /fastinit-bench: ") == 1
    assert "| function | dtype | elements | fastinit ms |" in md
    assert "| model | dtype | params | method |" in md
    assert "![throughput vs size](tp.png)" in md  # relative to the Markdown file
    assert "Produced by `fastinit bench" in md
    table = [line for line in md.splitlines() if line.startswith("| normal_ | float32 |")]
    assert len(table) == 2 and all(line.count("|") == 11 for line in table)


def test_bench_plot(bench_run):
    assert_png(bench_run[2]["plot"])


def test_markdown_file_keeps_one_section_per_machine(bench_run, tmp_path):
    data = json.loads(open(bench_run[2]["json"]).read())
    run = B.BenchRun(data["machine"], data["settings"], data["functions"], data["models"])
    path = str(tmp_path / "R.md")
    with open(path, "w") as f:
        f.write("# Results\n\nintro\n")
    R.update_markdown_file(path, run, "first")
    other = B.BenchRun(dict(data["machine"], device_type="cuda", device_name="NVIDIA H100"),
                       data["settings"])
    R.update_markdown_file(path, other, "gpu section")
    R.update_markdown_file(path, run, "second")  # same machine: replaced, not appended
    text = open(path).read()
    assert text.startswith("# Results\n\nintro\n")
    assert "first" not in text and text.count("second") == 1 and "gpu section" in text
    assert text.index("second") < text.index("gpu section")  # replaced in place


def test_bench_json_to_stdout_only(capsys):
    state = torch.random.get_rng_state()
    rc = main(["bench", "--device", "cpu", "--sizes", "2^8", "--functions", "normal",
               "--dtypes", "fp32", "--repeats", "1", "--models", "none", "--quiet",
               "--json", "-"])
    out, err = capsys.readouterr()
    assert rc == 0
    data = json.loads(out)  # stdout holds nothing but the JSON
    assert data["models"] == [] and len(data["functions"]) == 1
    assert "fastinit ms" in err  # the table went to stderr
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched


def test_bench_shows_progress(capsys):
    rc = main(["bench", "--device", "cpu", "--sizes", "2^8", "--functions", "normal",
               "--dtypes", "fp32", "--repeats", "1", "--models", "none"])
    assert rc == 0
    assert "functions" in capsys.readouterr().err  # the tqdm bar (stderr)


@pytest.mark.parametrize("n", [1, 1000, 1024, 3 * 1024, 1 << 20, 10**6])
def test_case_shape_covers_numel(n):
    rows, cols = B.case_shape(n)
    assert rows * cols == n and cols <= 1024


class ScriptedTimer:
    """Times nothing: ``zero_()`` takes the next of ``zero_times``, every fill ``fill_s``."""

    def __init__(self, zero_times, fill_s=1e-3):
        self.zero_times = list(zero_times)
        self.fill_s = fill_s
        self.zero_calls = 0

    def median(self, fn, repeats=5, *, budget=None, stat=None, **kwargs):
        if getattr(fn, "__name__", "") == "zero_":
            self.zero_calls += 1
            return self.zero_times.pop(0), repeats
        return self.fill_s, repeats


def test_roofline_slower_than_a_fill_is_measured_again():
    timer = ScriptedTimer([2e-3, 0.5e-3])  # slowed the first time, fine the second
    recs = B.bench_functions(torch.device("cpu"), ["normal_"], [torch.float32], [256],
                             repeats=3, quiet=True, timer=timer)
    assert timer.zero_calls == 2
    (r,) = recs
    assert not r["roofline_unstable"] and r["roofline_s"] == 0.5e-3
    assert r["pct_roofline"] == pytest.approx(50.0)


def test_roofline_that_stays_slow_is_marked_not_printed():
    timer = ScriptedTimer([2e-3, 1.5e-3])
    recs = B.bench_functions(torch.device("cpu"), ["normal_", "uniform_"], [torch.float32],
                             [256], repeats=3, quiet=True, timer=timer)
    assert timer.zero_calls == 2
    for r in recs:
        assert r["roofline_unstable"] and r["pct_roofline"] is None
        assert r["torch_pct_roofline"] is None and r["roofline_s"] == 1.5e-3
    run = B.BenchRun({"device": "cpu", "device_type": "cpu", "device_name": "AMD EPYC",
                      "cpu": "AMD EPYC", "threads": 2, "torch": "2", "date": "2026-01-01"},
                     {"repeats": 3}, recs, [])
    table = R.format_table(run)
    assert "unstable" in table and R.UNSTABLE_NOTE in table
    assert not re.search(r"\d%", table)  # no percentage printed as a fact
    md = R.to_markdown(run)
    assert "| unstable |" in md and "Unstable: zero_()" in md
    assert json.loads(R.to_json(run))["functions"][0]["pct_roofline"] is None
    labels = [line.get_label() for line in R.throughput_figure(run).axes[0].get_lines()]
    assert "write roofline: zero_() (hollow: unstable)" in labels


def test_stable_roofline_is_measured_once():
    timer = ScriptedTimer([0.5e-3])
    (r,) = B.bench_functions(torch.device("cpu"), ["normal_"], [torch.float32], [256],
                             repeats=3, quiet=True, timer=timer)
    assert timer.zero_calls == 1 and r["pct_roofline"] == pytest.approx(50.0)
    assert "50%" in R.format_table(B.BenchRun(fake_run().machine, {}, [r], []))
