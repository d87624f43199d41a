"""The ``fastinit`` command line: bench, check, demo (in-process, tiny sizes).

Each command runs once per module (fixtures) and the tests look at what it wrote: the
terminal table, the JSON / CSV / Markdown files, the PNGs (signature, and matplotlib
reads them back), the statistical report's exit status with and without a deliberately
wrong distribution, the demo's fingerprint. Runtime: ~30 s on two cores.
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
from fastinit.cli import main
from fastinit.materialize import materialize
from fastinit.cli.models import CONFIGS, LlamaShaped, fingerprint, get_config

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
    assert "AMD" in text or B.cpu_name() in text  # the machine is named
    assert "fastinit: meta + materialize" in text


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
        assert r["pct_roofline"] == pytest.approx(100 * r["roofline_s"] / r["fastinit_s"])
    models = data["models"]
    assert [r["method"] for r in models] == ["torch_construct", "torch_to_empty",
                                             "fastinit_materialize"]
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
    assert sum(r["section"] == "models" for r in rows) == 3
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
    B.update_markdown_file(path, run, "first")
    other = B.BenchRun(dict(data["machine"], device_type="cuda", device_name="NVIDIA H100"),
                       data["settings"])
    B.update_markdown_file(path, other, "gpu section")
    B.update_markdown_file(path, run, "second")  # same machine: replaced, not appended
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
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


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
    assert B.parse_size(text) == n


@pytest.mark.parametrize("n", [1, 1000, 1024, 3 * 1024, 1 << 20, 10**6])
def test_case_shape_covers_numel(n):
    rows, cols = B.case_shape(n)
    assert rows * cols == n and cols <= 1024


def test_timer_budget_caps_slow_cases():
    timer = B.DeviceTimer("cpu")
    secs, n = timer.median(lambda: time.sleep(0.02), repeats=50, budget=0.05)
    assert n == 3  # never fewer than 3, far fewer than 50
    assert 0.015 < secs < 0.5
    fast, n = timer.median(lambda: None, repeats=4)
    assert n == 4 and 0 < fast < 1e-3  # repeated inside a measurement, divided


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_memory_sees_a_temporary_copy():
    """The model section's peak counts memory that was freed before the block ended."""
    import gc

    timer = B.DeviceTimer("cpu")
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
    assert "pip install 'fastinit[test]'" in capsys.readouterr().err


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
    assert float(st.kstwo.isf(report.KS_ALPHA, 10**6)) == pytest.approx(2.69e-3, abs=1e-5)


def test_rounded_law_sums_to_one():
    law = report.trunc_normal_law(0.0, 1.0, -2.0, 2.0)
    for dt in (torch.bfloat16, torch.float16):
        dl = report.rounded_law(law, dt, upper_open=False)
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
