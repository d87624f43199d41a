"""Helpers the command-line tests share (``tests/test_cli*.py``): a PNG check, ``main``'s
exit status, the one-line error, a quick bench command line and a made-up bench run."""
from __future__ import annotations

import torch

from fastinit.cli import bench as B
from fastinit.cli import main


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


def exit_status(argv) -> int:
    """``main``'s exit status, whether argparse exits (bad flags) or ``main`` returns."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


QUICK_BENCH = ["bench", "--device", "cpu", "--sizes", "2^8", "--functions", "normal",
               "--dtypes", "fp32", "--repeats", "1", "--models", "none", "--quiet"]


def one_line_error(capsys, command: str) -> str:
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fastinit {command}: error: "), err
    assert "Traceback" not in err + out
    return lines[0]


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
