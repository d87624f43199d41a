#!/usr/bin/env bash
# Every fill-kernel variant compiles for sm_90 with Triton 3.6, the Triton of torch 2.11 (what
# GPU machines commonly carry), in a virtual environment of its own beside the CPU torch wheel.
# Usage: bash tools/ci_triton36.sh [VENV_DIR]   (default: $TMPDIR/fastinit-triton36; reused)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-${TMPDIR:-/tmp}/fastinit-triton36}"
echo "== Triton 3.6 compile check (venv: $venv)"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c \
    "import triton, sys; sys.exit(triton.__version__ != '3.6.0')" 2>/dev/null; then
  python -m venv "$venv"
  "$venv/bin/pip" install -q "triton==3.6.0" "torch==2.13.0" numpy
fi
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$root"
cd "$root"
"$venv/bin/python" tools/triton_compile_check.py --jobs "$(nproc 2>/dev/null || echo 2)"
