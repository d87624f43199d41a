"""fastinit.cli.timing: the timer's budget, the peak memory of a block, the device a
command runs on (with its index; an unsupported one names the command)."""
from __future__ import annotations

import sys
import time

import pytest
import torch

from fastinit.cli import main
from fastinit.cli import timing as T
from tests.cli_helpers import one_line_error


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


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_unsupported_device_names_the_command(command, capsys):
    assert main([command, "--device", "mps"]) == 2
    line = one_line_error(capsys, command)
    assert f"fastinit {command} runs on 'cpu' or 'cuda'" in line
    assert ("bench" in line) == (command == "bench")


def test_cuda_index_is_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    assert str(T.resolve_device("cuda:3")) == "cuda:3"
    assert str(T.resolve_device("cuda")) == "cuda:2"  # the current device, by index
    assert str(T.resolve_device("auto", "demo")) == "cuda:2"
    with pytest.raises(ValueError, match="4 CUDA devices"):
        T.resolve_device("cuda:4")
