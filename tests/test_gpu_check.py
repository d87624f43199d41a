"""``tools/gpu_check.sh --dry-run``: the GPU check's stages, run on the CPU at tiny sizes.

The script is what a GPU machine runs once (see its header); the dry run exercises every
stage's command, the outputs (JSON, Markdown, the stage table) and the stop at the first
failing stage, so that the one GPU run is not spent on a broken script.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("triton")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = os.path.join(_ROOT, "tools", "gpu_check.sh")
_STAGES = ["env", "install", "compile", "tests", "memcheck", "fills", "model", "overhead", "sass",
           "tune"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def _run(out, python: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHON"] = python
    return subprocess.run(["bash", _SCRIPT, str(out), "--dry-run"], capture_output=True,
                          text=True, env=env, timeout=1800, cwd=_ROOT)


def test_dry_run_passes_and_writes_its_outputs(tmp_path):
    proc = _run(tmp_path / "out", sys.executable)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    stages = json.loads((out / "stages.json").read_text())
    assert [s["stage"] for s in stages] == _STAGES
    assert all(s["status"] == "ok" for s in stages)
    for name in ("env.json", "compile.json", "tests.xml", "bench_fills.json", "bench_model.json",
                 "host_overhead.json", "sass.json", "tune.json", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    fills = json.loads((out / "bench_fills.json").read_text())["functions"]
    assert {r["function"] for r in fills} >= {"uniform_", "normal_", "trunc_normal_"}
    summary = (out / "summary.md").read_text()
    assert "| trunc_normal_ | bfloat16 |" in summary and "| sass | ok |" in summary
    assert "| trunc_normal_wide | bfloat16 | 8192 | 8 |" in summary


def test_stops_at_the_first_failing_stage(tmp_path):
    """A stage that fails (here: pytest, through a wrapper) ends the run there, with the
    stage named on stderr and in stages.json, and no later stage run."""
    wrapper = tmp_path / "python"
    wrapper.write_text("#!/usr/bin/env bash\n"
                       'for a in "$@"; do [ "$a" = pytest ] && { echo boom; exit 3; }; done\n'
                       f'exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    proc = _run(tmp_path / "out", str(wrapper))
    assert proc.returncode == 1
    assert "FAILED at stage 'tests' (exit status 3)" in proc.stderr
    stages = json.loads((tmp_path / "out" / "stages.json").read_text())
    assert [s["stage"] for s in stages] == _STAGES[:4]
    assert stages[-1]["status"] == "FAILED" and "tests.log" in stages[-1]["note"]
    assert (tmp_path / "out" / "summary.md").exists()
