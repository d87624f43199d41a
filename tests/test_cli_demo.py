"""``fastinit demo`` (fastinit.cli.demo): the printed fingerprint is that of the
materialized weights, and ``--dtype`` lists its choices."""
from __future__ import annotations

import re
import time

import pytest
import torch

from fastinit.cli import main
from fastinit.cli.models import LlamaShaped, fingerprint, get_config
from fastinit.materialize import materialize
from tests.cli_helpers import exit_status


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
