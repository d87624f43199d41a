"""fastinit.report and ``fastinit inspect``: the terminal table (flagged rows first), the
JSON, the HTML page rendered in headless Chromium (the screenshot must show the plots and
the tables; the same check fails on the page without them), the command line on a built-in
shape, a Hugging Face config file and a ``module:function`` entry point with two recipes
side by side, its errors; the law part where ``fastinit.provenance`` is present (planted
defects it must flag). The 125M-shape timing is a ``slow`` test. Runtime: ~35 s on two
cores (without the slow test).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import fastinit
from fastinit.cli import main
from fastinit.report import Report, report, write_html
from tests.signal_models import GPT

HAS_PROVENANCE = importlib.util.find_spec("fastinit.provenance") is not None
needs_provenance = pytest.mark.skipif(not HAS_PROVENANCE,
                                      reason="fastinit.provenance is not in this tree")


@pytest.fixture(scope="module")
def flagged() -> Report:
    torch.manual_seed(0)
    return report(GPT(scaled=False), title="GPT without scaled residual")


@pytest.fixture(scope="module")
def healthy() -> Report:
    torch.manual_seed(0)
    return report(GPT(scaled=True), title="GPT with scaled residual")


# --- table and JSON ---------------------------------------------------------------------------


def test_table_puts_findings_and_flagged_rows_first(flagged, healthy):
    text = flagged.table(max_rows=None)
    assert text.index("FINDINGS") < text.index("MODULES") < text.index("TENSORS")
    assert "residual-growth" in text
    mod_lines = text[text.index("MODULES"):text.index("TENSORS")].splitlines()[3:]
    marks = [line.startswith("!") for line in mod_lines if line.strip()]
    assert marks[0] and any(not m for m in marks)
    assert marks == sorted(marks, reverse=True)  # every flagged row before every other
    assert "0 finding(s)" in healthy.table() and "FINDINGS" not in healthy.table()
    capped = flagged.table(max_rows=5)
    assert re.search(r"MODULES .*: 5 of \d+ rows", capped)


def test_json_round_trip(flagged):
    data = json.loads(flagged.to_json())
    assert data["title"] == "GPT without scaled residual"
    assert [f["check"] for f in data["findings"]] == [f.check for f in flagged.findings]
    assert len(data["propagation"]["modules"]) == len(flagged.propagation.modules)
    assert {"name", "shape", "observed_std", "expected_std_shape"} <= set(data["tensors"][0])


def test_html_is_self_contained_and_written_whole(flagged, tmp_path):
    path = tmp_path / "r.html"
    flagged.to_html(str(path))
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 1 and "<table>" in page
    assert "src='http" not in page and "<script" not in page
    assert sorted(os.listdir(tmp_path)) == ["r.html"]  # no temporary left behind
    with pytest.raises(FileNotFoundError):
        flagged.to_html(str(tmp_path / "missing" / "r.html"))
    assert sorted(os.listdir(tmp_path)) == ["r.html"]


# --- the page in a real browser ----------------------------------------------------------------

WIDTH, HEIGHT = 1200, 1600
HEADER, FLAG = (0xDB, 0xE4, 0xF0), (0xF8, 0xD7, 0xD3)
PLOT_BLUE, PLOT_ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium (.ci/run installs Debian's chromium package)")


def screenshot(html_path, png_path) -> np.ndarray:
    import matplotlib.image

    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={png_path}",
                    f"--window-size={WIDTH},{HEIGHT}", f"file://{html_path}"],
                   check=True, capture_output=True, timeout=120)
    img = matplotlib.image.imread(str(png_path))
    return np.round(img[..., :3] * 255).astype(int)


def count(img: np.ndarray, rgb, tol: int = 8) -> int:
    return int((np.abs(img - np.array(rgb)).max(axis=2) <= tol).sum())


def page_problems(img: np.ndarray) -> list[str]:
    """What the screenshot lacks of a report page: its size, content, the table header and
    flagged rows, the plots' lines (matplotlib's first two colours) in the plot band."""
    problems = []
    if img.shape[:2] != (HEIGHT, WIDTH):
        problems.append(f"size {img.shape[:2]}")
    if img.std() < 10:
        problems.append("blank")
    if count(img, HEADER) < 2000:
        problems.append("no table header")
    if count(img, FLAG) < 5000:
        problems.append("no flagged rows")
    if count(img, PLOT_BLUE) < 500 or count(img, PLOT_ORANGE) < 300:
        problems.append("no plot lines")
    # the plots: a band of rows with axis frames (long dark horizontal runs) and colour
    dark = (img.max(axis=2) < 80).sum(axis=1)
    if (dark > 250).sum() < 4:
        problems.append("no plot axes")
    return problems


def test_html_renders_in_chromium(flagged, healthy, tmp_path):
    html_path = tmp_path / "page.html"
    write_html(str(html_path), {"own init": flagged, "scaled residual": healthy})
    img = screenshot(html_path, tmp_path / "page.png")
    assert page_problems(img) == []
    # the same check on the page without its plots, and without its tables, fails
    page = html_path.read_text()
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<img [^>]*>", "", page))
    assert "no plot lines" in page_problems(screenshot(bare, tmp_path / "bare.png"))
    plain = tmp_path / "plain.html"
    plain.write_text(re.sub(r"<table>.*?</table>", "", page, flags=re.S))
    got = page_problems(screenshot(plain, tmp_path / "plain.png"))
    assert "no table header" in got and "no flagged rows" in got


# --- the command line ---------------------------------------------------------------------------

MLP_MODULE = """
import fastinit.recipes as R
from torch import nn

def mlp():
    layers = []
    for _ in range(12):
        layers += [nn.Linear(128, 128), nn.ReLU()]
    return nn.Sequential(*layers)

HE = {"*.weight": R.kaiming_normal(nonlinearity="relu"), "*.bias": R.zeros()}
XAVIER = {"*.weight": R.xavier_normal(), "*.bias": R.zeros()}
"""


def test_inspect_entry_point_two_recipes(tmp_path, monkeypatch, capsys):
    (tmp_path / "deep_mlp.py").write_text(textwrap.dedent(MLP_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    html = tmp_path / "cmp.html"
    rc = main(["inspect", "deep_mlp:mlp", "--recipe", "deep_mlp:HE", "--recipe",
               "deep_mlp:XAVIER", "--json", "-", "--html", str(html), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = json.loads(out)
    he, xavier = (data["variants"][f"recipe deep_mlp:{k}"] for k in ("HE", "XAVIER"))
    assert "activation-shrink" in {f["check"] for f in xavier["findings"]}
    assert not {f["check"] for f in he["findings"]} & {"activation-shrink", "activation-growth"}
    assert "comparison:" in err and "built and materialized" in err
    assert html.read_text().count("data:image/png;base64,") == 2


def test_inspect_builtin_shape(tmp_path, capsys):
    path = tmp_path / "r.json"
    rc = main(["inspect", "tiny", "--json", str(path), "--rows", "5", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "fastinit report: LlamaShaped tiny" in out
    data = json.loads(path.read_text())
    assert data["propagation"]["inputs"].startswith("token ids")
    assert any(s["kind"] == "residual" for s in data["propagation"]["series"])


def test_inspect_hugging_face_config(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=500, n_embd=32, n_layer=4, n_head=4,
                                  n_positions=128)
    cfg.save_pretrained(tmp_path)
    from fastinit.cli.inspect import _hf_config

    assert type(_hf_config(str(tmp_path))) is type(_hf_config(str(tmp_path / "config.json")))
    rc = main(["inspect", str(tmp_path / "config.json"), "--recipe", "gpt2", "--rows", "3",
               "--device", "cpu", "--strict"])
    out = capsys.readouterr().out
    assert "GPT2LMHeadModel" in out and "recipe gpt2" in out and "own init" in out
    assert rc in (0, 1)


@pytest.mark.parametrize("argv, message", [
    (["inspect", "no-such-model"], "not a built-in shape"),
    (["inspect", "tiny", "--recipe", "no-such-recipe"], "unknown recipe"),
    (["inspect", "tiny", "--html", "/no/such/folder/r.html"], "does not exist"),
    (["inspect", "no_such_module_xyz:f"], "cannot import"),
    (["inspect", "tiny", "--recipe", "gpt2", "--recipe", "llama", "--recipe", "bert"],
     "at most two"),
])
def test_inspect_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("fastinit inspect")


def test_inspect_strict_exit_status(tmp_path, monkeypatch, capsys):
    (tmp_path / "deep_mlp2.py").write_text(textwrap.dedent(MLP_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["inspect", "deep_mlp2:mlp", "--recipe", "deep_mlp2:XAVIER", "--recipe",
                 "deep_mlp2:XAVIER", "--strict", "--rows", "1"]) == 1
    capsys.readouterr()


@pytest.mark.slow
def test_inspect_125m_under_30_seconds(capsys):
    start = time.perf_counter()
    assert main(["inspect", "125m", "--device", "cpu", "--rows", "5"]) == 0
    took = time.perf_counter() - start
    assert "fastinit report: LlamaShaped 125m" in capsys.readouterr().out
    assert took < 30, f"fastinit inspect 125m took {took:.1f} s"


# --- the law part (fastinit.provenance) --------------------------------------------------------


def _gpt2(**kw):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=500, n_embd=64, n_layer=4, n_head=4,
                                  n_positions=128)
    with fastinit.empty_init():
        model = transformers.GPT2LMHeadModel(cfg)
    return fastinit.materialize(model, "cpu", seed=0, progress=False, **kw)


@needs_provenance
def test_law_part_is_quiet_on_the_model_as_built():
    r = report(_gpt2())
    assert r.laws_note is None and r.law_findings == [], r.law_findings
    assert {t["law"] for t in r.tensors} - {None}  # law_table's rows, with their laws


@needs_provenance
def test_law_part_flags_an_embedding_at_std_one():
    r = report(_gpt2(recipe={"transformer.wte.weight": fastinit.recipes.normal(0.0, 1.0)}))
    assert any(f.name == "transformer.wte.weight" for f in r.law_findings), r.law_findings
    assert r.findings[:len(r.law_findings)] == r.law_findings


@needs_provenance
def test_law_part_flags_values_written_behind_its_back():
    model = _gpt2()
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.weight.uniform_(-1.0, 1.0)
    r = report(model)
    assert any(f.name == "transformer.h.1.mlp.c_fc.weight" for f in r.law_findings)


@needs_provenance
def test_law_part_flags_a_rule_that_matched_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _gpt2(recipe={"no.such.layer.*": fastinit.recipes.normal(0.0, 0.02)})
    r = report(model)
    assert any(f.check == "unmatched-rule" for f in r.law_findings), r.law_findings


def test_without_provenance_the_report_says_why():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    r = report(model)
    assert r.laws_note and r.law_findings == []
    assert r.tensors[0]["expected_std_shape"]["he"] == pytest.approx((2 / 8) ** 0.5)
    assert report(model, laws=False).laws_note == "not requested"
