"""The CPU backend's host side (``fastinit/backends/cpu.py``) as a process sees it: fork
safety and errors of the thread pool, and the one-line notice a fill that compiles prints.

The notice cases run fresh Python processes with their own ``NUMBA_CACHE_DIR`` (the helpers
of ``tests/test_cpu_jit.py``), so that the kernels really compile.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.test_cpu_jit import NOTICE, ROOT, run

_FORK = textwrap.dedent("""
    import os, sys, torch, fastinit
    from fastinit.backends import cpu
    big = 4 * cpu.PARALLEL_THRESHOLD          # a parallel fill: the pool starts
    a = fastinit.normal_(torch.empty(big), seed=1)
    pid = os.fork()
    if pid == 0:                               # the child fills in parallel too
        b = fastinit.normal_(torch.empty(big), seed=1)
        os._exit(0 if torch.equal(a, b) else 3)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_fills_after_the_parent_did():
    """After a parallel CPU fill in the parent, a forked child (DataLoader workers,
    launchers) fills and gets the same values; it used to hang on the dead pool."""
    proc = subprocess.Popen([sys.executable, "-c", _FORK], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and the hung child
        proc.communicate()
        pytest.fail("a fill in a forked child did not finish within 120 s")
    assert proc.returncode == 0, output


def test_an_error_in_the_calling_thread_waits_for_the_pool_threads():
    """A job failing (or a KeyboardInterrupt) on the calling thread must not unwind while a
    pool thread still writes: the caller may free that memory right after."""
    import threading
    import time

    from fastinit.backends import cpu as cpu_backend

    finished = []

    def kernel(*args):
        if threading.current_thread() is threading.main_thread():
            time.sleep(0.05)  # the pool thread is inside its job by now
            raise RuntimeError("a job failed")
        time.sleep(0.3)
        finished.append(True)

    # (kernel, dtype, args, touch); args[6:8] = the elements a job writes
    n = cpu_backend.PARALLEL_THRESHOLD
    jobs = [(kernel, None, (None,) * 6 + (0, n), None) for _ in range(2)]
    with pytest.raises(RuntimeError, match="a job failed"):
        cpu_backend._run(jobs, threads=2)
    assert finished == [True]


def test_another_dtype_is_announced_with_its_name(tmp_path):
    _, err = run(tmp_path, dtype="bfloat16", fn="trunc_normal_")
    assert "trunc_normal bfloat16" in err, err


def test_a_new_region_count_is_announced_as_a_truncated_normal(tmp_path):
    """A truncated normal far in the tail needs more inverse-CDF regions: another kernel."""
    script = ("import torch, fastinit\n"
              "fastinit.trunc_normal_(torch.empty(64), 0, 1, -2, 2, seed=0)\n"
              "import sys; print('---', file=sys.stderr)\n"
              "fastinit.trunc_normal_(torch.empty(64), 0, 1, 8, 9, seed=0)\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    first, second = res.stderr.split("---")
    assert first.count(NOTICE) == 1 and second.count(NOTICE) == 1, res.stderr
    assert "(trunc_normal float32)" in second
