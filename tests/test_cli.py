"""The ``fastinit`` command line: bench, check, demo (in-process, tiny sizes).

Each command runs once per module (fixtures) and the tests look at what it wrote: the
terminal table, the JSON / CSV / Markdown files, the PNGs (signature, and matplotlib
reads them back), the statistical report's exit status with and without a deliberately
wrong distribution, the demo's fingerprint. Bad output paths, devices and flags end in one
line and exit status 2 before any work; an unstable roofline is measured again or marked.
Runtime: ~40 s on two cores.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from fastinit.cli import bench as B
from fastinit.cli import check as report
from fastinit.cli import laws, main
from fastinit.cli import parser as P
from fastinit.cli import rendering as R
from fastinit.cli import timing as T
from fastinit.cli.models import CONFIGS, LlamaShaped, fingerprint, get_config
from fastinit.materialize import materialize

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side=100):
    """``path`` is a PNG that matplotlib can decode, at least ``min_side`` pixels a side."""
    import matplotlib.image

    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, path
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), img.shape
    assert min(img.shape[:2]) >= min_side, img.shape
    assert float(img[..., :3].std()) > 0.01, "blank image"  # something was drawn


# --- bench ----------------------------------------------------------------------------------

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


@pytest.mark.parametrize("argv, message", [
    (["bench", "--sizes", "2^x"], "bad size"),
    (["bench", "--sizes", "0"], "at least 1"),
    (["bench", "--dtypes", "int8"], "unknown dtype"),
    (["bench", "--functions", "orthogonal_"], "unknown function"),
    (["bench", "--models", "13b"], "unknown model"),
    (["bench", "--repeats", "0"], "positive integer"),
    (["bench", "--device", "cuda"] if not torch.cuda.is_available() else
     ["bench", "--device", "xla"], "device"),
    (["check", "--dists", "cauchy"], "unknown distribution"),
    (["check", "--device", "tpu"], "device"),
    (["check", "--samples", "10"], "at least 1000"),
    (["demo", "--model", "huge"], "unknown model"),
    (["demo", "--dtype", "int8"], "unknown dtype"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_flags_exit_2(argv, message, capsys):
    assert exit_status(argv) == 2
    assert message in capsys.readouterr().err


def exit_status(argv) -> int:
    """``main``'s exit status, whether argparse exits (bad flags) or ``main`` returns."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "bench" in capsys.readouterr().err


def test_python_dash_m_help():
    res = subprocess.run([sys.executable, "-m", "fastinit", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for cmd in ("bench", "check", "demo"):
        assert cmd in res.stdout


# --- engine details ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, n", [("2^20", 1 << 20), ("2**4", 16), ("1<<3", 8),
                                     ("65536", 65536), ("1_000", 1000)])
def test_parse_size(text, n):
    assert P.parse_size(text) == n


@pytest.mark.parametrize("n", [1, 1000, 1024, 3 * 1024, 1 << 20, 10**6])
def test_case_shape_covers_numel(n):
    rows, cols = B.case_shape(n)
    assert rows * cols == n and cols <= 1024


def test_timer_budget_caps_slow_cases():
    timer = T.DeviceTimer("cpu")
    secs, n = timer.median(lambda: time.sleep(0.02), repeats=50, budget=0.05)
    assert n == 3  # never fewer than 3, far fewer than 50
    assert 0.015 < secs < 0.5
    fast, n = timer.median(lambda: None, repeats=4)
    assert n == 4 and 0 < fast < 1e-3  # repeated inside a measurement, divided


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_memory_sees_a_temporary_copy():
    """The model section's peak counts memory that was freed before the block ended."""
    import gc

    timer = T.DeviceTimer("cpu")
    nbytes = 64 << 20
    for _ in range(2):  # the second time the freed memory could be reused from the heap
        gc.collect()
        with timer.peak_memory() as peak:
            keep = torch.ones(nbytes // 4)
            tmp = torch.ones(nbytes // 4)
            del tmp
        assert 1.9 * nbytes < peak["bytes"] < 2.2 * nbytes, peak["bytes"] / nbytes
        del keep


# --- check ------------------------------------------------------------------------------------


def test_check_all_distributions_and_dtypes_pass(tmp_path, capsys):
    out = tmp_path / "all"
    rc = main(["check", "--out", str(out), "--samples", "20000", "--no-figures", "--quiet"])
    text = capsys.readouterr().out
    n = len(report.CASES) * len(report.DTYPES)
    assert rc == 0, text
    assert f"{n} of {n} checks passed" in text
    md = (out / "report.md").read_text()
    assert md.count("| PASS |") == n and "FAIL" not in md
    for dt in ("float32", "bfloat16", "float16", "float64"):
        assert f"| {dt} |" in md
    assert len([c for c in report.CASES if c.dist == "trunc_normal"]) >= 10


@pytest.fixture(scope="module")
def figures_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("check")
    rc = main(["check", "--out", str(out), "--samples", "20000", "--dtypes", "fp32,bf16",
               "--dists", "normal", "--quiet"])
    return rc, out


def test_check_writes_figures_and_report(figures_run):
    rc, out = figures_run
    assert rc == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 3 * 2, pngs
    for name in pngs:
        assert_png(out / name)
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for name in pngs:  # every figure is linked from both pages
        assert f"({name})" in md and f"src='{name}'" in html
    assert "KS D" in md and "mean (SE)" in md
    assert len({report._slug(c.id) for c in report.CASES}) == len(report.CASES)


def test_check_fails_on_a_wrong_distribution(tmp_path, capsys):
    rc = main(["check", "--out", str(tmp_path), "--samples", "20000", "--dtypes", "fp32,bf16",
               "--perturb-std", "1.1", "--no-figures", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "FAIL" in text and "Deliberately perturbed" in (tmp_path / "report.md").read_text()
    # A 10 % wider spread is caught for every uniform and normal case in both dtypes.
    for case in report.CASES:
        if case.dist != "trunc_normal":
            for dt in ("float32", "bfloat16"):
                assert re.search(rf"{re.escape(case.id)}\s+{dt}\s.*FAIL$", text, re.M), \
                    (case.id, dt)


def test_check_fails_when_sampler_is_wrong(tmp_path, monkeypatch, capsys):
    """The report judges whatever ``report.sample`` returns: a normal sampler shifted by
    0.05 sigma (7 standard errors at n = 20000) is caught."""
    good = report.sample

    def shifted(case, dtype, n, *args, **kwargs):
        t = good(case, dtype, n, *args, **kwargs)
        if case.dist == "normal":
            t += 0.05 * case.params[1]
        return t

    monkeypatch.setattr(report, "sample", shifted)
    rc = main(["check", "--out", str(tmp_path), "--samples", "20000", "--dtypes", "fp32",
               "--dists", "normal", "--no-figures", "--quiet"])
    assert rc == 1
    assert "mean" in capsys.readouterr().out


def test_check_without_scipy_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy -> ImportError
    rc = main(["check", "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'torch-fastinit[test]'" in err, err


def test_reference_laws_agree_with_scipy():
    """report's own laws (used by the checks) against scipy.stats."""
    import scipy.stats as st

    for case in report.CASES:
        law = report.reference_law(case)
        ref = report._scipy_dist(case)
        lo, hi = law.support if math.isfinite(law.support[0]) else (
            case.params[0] - 6 * case.params[1], case.params[0] + 6 * case.params[1])
        grid = np.linspace(lo, hi, 501)
        np.testing.assert_allclose(law.cdf(grid), ref.cdf(grid), atol=1e-10, err_msg=case.id)
        m, v = (float(x) for x in ref.stats(moments="mv"))
        assert law.mean == pytest.approx(m, rel=1e-7, abs=1e-12), case.id
        assert law.var == pytest.approx(v, rel=1e-5), case.id
    assert float(st.kstwo.isf(laws.KS_ALPHA, 10**6)) == pytest.approx(2.69e-3, abs=1e-5)
    assert laws.ks_critical(10**6) == pytest.approx(2.69e-3, abs=1e-5)


def test_rounded_law_sums_to_one():
    law = laws.trunc_normal_law(0.0, 1.0, -2.0, 2.0)
    for dt in (torch.bfloat16, torch.float16):
        dl = laws.rounded_law(law, dt, upper_open=False)
        assert dl.support[0] == -2.0 and dl.support[-1] == 2.0
        assert dl.pmf.sum() == pytest.approx(1.0, abs=1e-12)


# --- demo ---------------------------------------------------------------------------------------


def test_demo_prints_fingerprint_and_determinism(capsys):
    t0 = time.perf_counter()
    rc = main(["demo", "--model", "tiny", "--device", "cpu", "--seed", "7"])
    elapsed = time.perf_counter() - t0
    text = capsys.readouterr().out
    assert rc == 0, text
    for label in ("device", "parameters", "torch", "fastinit", "speed-up", "fingerprint",
                  "determinism"):
        assert re.search(rf"^\s+{label}\s", text, re.M), label
    assert f"{get_config('tiny').num_parameters():,}" in text
    fp = re.search(r"fingerprint\s+([0-9a-f]{16})\b", text).group(1)
    assert "identical" in text
    # The printed fingerprint is that of the materialized weights (and depends on the seed).
    with torch.device("meta"):
        model = LlamaShaped("tiny")
    assert fingerprint(materialize(model, "cpu", seed=7, progress=False)) == fp
    with torch.device("meta"):
        other = LlamaShaped("tiny")
    assert fingerprint(materialize(other, "cpu", seed=8, progress=False)) != fp
    assert elapsed < 60


def test_models_match_their_parameter_count():
    for name in ("tiny", "125m", "8b"):
        cfg = get_config(name)
        with torch.device("meta"):
            model = LlamaShaped(cfg)
        assert sum(p.numel() for p in model.parameters()) == cfg.num_parameters()
    cfg = get_config("8b")  # Llama 3.1 8B: 8.03 B parameters
    assert (cfg.hidden, cfg.intermediate, cfg.layers, cfg.heads, cfg.kv_heads, cfg.vocab) == (
        4096, 14336, 32, 32, 8, 128256)
    assert cfg.num_parameters() == 8_030_261_248


def test_tiny_model_runs_forward():
    with torch.device("meta"):
        model = LlamaShaped("tiny")
    materialize(model, "cpu", seed=0, progress=False)
    logits = model(torch.tensor([[1, 2, 3, 4]]))
    assert logits.shape == (1, 4, get_config("tiny").vocab) and torch.isfinite(logits).all()
    for name, p in model.named_parameters():
        if name.endswith("layernorm.weight") or name == "norm.weight":
            assert bool((p == 1).all()), name


# --- errors before any work: one line, exit status 2 -------------------------------------------

QUICK_BENCH = ["bench", "--device", "cpu", "--sizes", "2^8", "--functions", "normal",
               "--dtypes", "fp32", "--repeats", "1", "--models", "none", "--quiet"]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command starts measuring or drawing anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command started its work")

    for target in (B, report):
        for name in ("bench_functions", "bench_models", "run_checks"):
            if hasattr(target, name):
                monkeypatch.setattr(target, name, refuse)


def one_line_error(capsys, command: str) -> str:
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fastinit {command}: error: "), err
    assert "Traceback" not in err + out
    return lines[0]


@pytest.mark.parametrize("flag", ["--json", "--csv", "--markdown", "--plot"])
@pytest.mark.parametrize("case", ["missing folder", "under a file", "a folder"])
def test_bench_bad_output_path_is_one_line_before_any_work(flag, case, tmp_path, capsys,
                                                           no_work, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    path = {"missing folder": "nodir/out.x", "under a file": "afile/out.x",
            "a folder": "adir"}[case]
    assert main(QUICK_BENCH + [flag, path]) == 2
    line = one_line_error(capsys, "bench")
    assert f"{flag} {path}:" in line
    assert not (tmp_path / "nodir").exists()  # no folder is made for any output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]
    assert list((tmp_path / "adir").iterdir()) == []


@pytest.mark.parametrize("extra, message", [
    (["--json", "-", "--csv", "-"], "cannot all write to stdout"),
    (["--plot", "-"], "cannot write to stdout"),
    (["--json", "r.txt", "--csv", "./r.txt"], "both write"),
    (["--json", ""], "empty path"),
])
def test_bench_conflicting_outputs(extra, message, tmp_path, capsys, no_work, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(QUICK_BENCH + extra) == 2
    assert message in one_line_error(capsys, "bench")


@pytest.mark.parametrize("case", ["an existing file", "missing parent"])
def test_check_bad_out_is_one_line_before_any_work(case, tmp_path, capsys, no_work):
    (tmp_path / "report.md").write_text("mine")
    out = str(tmp_path / ("report.md" if case == "an existing file" else "no/such/dir"))
    assert main(["check", "--out", out, "--quiet"]) == 2
    assert f"--out {out}:" in one_line_error(capsys, "check")
    assert (tmp_path / "report.md").read_text() == "mine"
    assert not (tmp_path / "no").exists()


def test_bad_output_path_from_the_console_script(tmp_path):
    """The real process: exit status 2, one line, no traceback, nothing measured."""
    res = subprocess.run([sys.executable, "-m", "fastinit", *QUICK_BENCH, "--plot",
                          str(tmp_path / "nodir" / "x.png")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "--plot" in res.stderr, res.stderr
    assert res.stdout == ""


def test_outputs_are_written_whole_into_existing_folders(tmp_path, capsys):
    paths = {f: str(tmp_path / n) for f, n in (("--json", "r.json"), ("--csv", "r.csv"),
                                                ("--markdown", "R.md"))}
    argv = QUICK_BENCH + [x for f, p in paths.items() for x in (f, p)]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R.md", "r.csv", "r.json"]
    assert (tmp_path / "R.md").stat().st_mode & 0o777 == (tmp_path / "r.json").stat().st_mode & 0o777


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_unsupported_device_names_the_command(command, capsys):
    assert main([command, "--device", "mps"]) == 2
    line = one_line_error(capsys, command)
    assert f"fastinit {command} runs on 'cpu' or 'cuda'" in line
    assert ("bench" in line) == (command == "bench")


def test_demo_dtype_lists_its_choices(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--dtype {auto,float32,bfloat16,float16,float64}" in text
    for alias in ("fp32", "bf16", "fp16", "fp64"):
        assert alias in text
    assert exit_status(["demo", "--dtype", "int8"]) == 2
    err = capsys.readouterr().err
    assert "auto, float32 (fp32), bfloat16 (bf16), float16 (fp16), float64 (fp64)" in err


# --- devices are reported with their index ------------------------------------------------------


def test_cuda_index_is_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    assert str(T.resolve_device("cuda:3")) == "cuda:3"
    assert str(T.resolve_device("cuda")) == "cuda:2"  # the current device, by index
    assert str(T.resolve_device("auto", "demo")) == "cuda:2"
    with pytest.raises(ValueError, match="4 CUDA devices"):
        T.resolve_device("cuda:4")


def fake_run(sizes=(1 << 16,), device="cuda:3", unstable=False) -> B.BenchRun:
    """A BenchRun with made-up numbers (rendering only reads records)."""
    machine = {"device": device, "device_type": device.split(":")[0],
               "device_name": "NVIDIA H100 80GB HBM3", "cpu": "AMD EPYC", "threads": 2,
               "torch": torch.__version__, "triton": "3.6.0", "numba": "0.61",
               "fastinit": "0.1.0", "date": "2026-01-01T00:00:00+00:00"}
    funcs = []
    for width, dtype in ((4, "float32"), (2, "bfloat16")):
        for n in sizes:
            nbytes = n * width
            for f, ours, theirs in (("normal_", 2e-5, 5e-5), ("uniform_", 1e-5, 3e-5)):
                funcs.append({
                    "function": f, "call": f"{f}(t)", "dtype": dtype, "numel": n,
                    "shape": [n // 1024, 1024], "bytes": nbytes, "device": device,
                    "fastinit_s": ours, "fastinit_gbps": nbytes / ours / 1e9,
                    "torch_s": theirs, "torch_gbps": nbytes / theirs / 1e9,
                    "speedup": theirs / ours, "repeats": 5, "torch_repeats": 5,
                    "torch_error": None,
                    **B._roofline_fields({"fastinit_s": ours, "torch_s": theirs},
                                         3e-5 if unstable else 8e-6, nbytes, unstable)})
    return B.BenchRun(machine, {"repeats": 5, "budget_s": 10.0}, funcs, [])


def test_renderings_name_the_cuda_device_with_its_index():
    run = fake_run()
    assert R.machine_line(run.machine).startswith("cuda:3: NVIDIA H100")
    assert R.device_text(run.machine) == "cuda:3 (NVIDIA H100 80GB HBM3)"
    assert "(cuda:3)" in R.to_markdown(run).splitlines()[0]
    assert any("(cuda:3," in t.get_text() for t in R.throughput_figure(run).texts)


# --- the plot -----------------------------------------------------------------------------------


def test_single_size_plot_shows_torch_and_the_roofline(tmp_path):
    run = fake_run(sizes=(1 << 20,))
    fig = R.throughput_figure(run)
    for ax in fig.axes:
        if not ax.get_lines():
            continue
        labels = {line.get_label(): line for line in ax.get_lines()}
        for label in ("write roofline: zero_()", "torch.nn.init.normal_", "fastinit.normal_"):
            line = labels[label]
            assert len(line.get_xdata()) == 1  # one point: visible only as a marker
            assert line.get_marker() not in (None, "", " ", "None") and line.get_markersize() > 0
            lo, hi = ax.get_xlim()
            assert lo < line.get_xdata()[0] < hi
    path = R.plot_throughput(run, str(tmp_path / "one.png"))
    assert_png(path)


# --- an unstable roofline -----------------------------------------------------------------------


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
