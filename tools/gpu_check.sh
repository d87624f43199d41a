#!/usr/bin/env bash
# The first run of fastinit on an NVIDIA H100 / H200, in one go (about 4 minutes; the stages'
# time limits add up to 475 s, so it ends within 8 minutes whatever happens).
#
#   bash tools/gpu_check.sh OUT_DIR            # on the GPU machine, from the checkout
#   bash tools/gpu_check.sh OUT_DIR --dry-run  # the same stages on this CPU, tiny sizes (CI)
#
# Needs on the GPU machine: torch, triton, numpy, numba, tqdm, pytest, (transformers),
# compute-sanitizer and ncu on PATH or under /usr/local/cuda/bin; no network. Stages, each
# with a time limit, stopping at the first failure with a message naming the stage and its
# log:
#   env       the device, driver, torch/Triton/CUDA versions             -> env.json
#   install   pip install --no-deps --no-build-isolation -e .            -> install.log
#   compile   every kernel variant for sm_90 with this Triton, the variants the tests launch
#             through Triton's launch path (its cache, in parallel), the CPU backend's loops
#             (Numba's cache)                                        -> compile.json
#   tests     GPU == CPU bitwise (tests/test_gpu.py: Philox words, every distribution x dtype,
#             offsets past 2^32, > 65535 rows, buffers past 2^31 elements) -> tests.xml
#   memcheck  compute-sanitizer --tool memcheck on small single and grouped fills
#   fills     fastinit bench at 2^28 elements, float32 and bfloat16, against zero_() and torch
#             (uniform_, normal_, trunc_normal_, kaiming_uniform_)   -> bench_fills.json/.md
#   model     Llama-shaped 8B in bfloat16: materialize vs reset_parameters vs torch
#                                                                       -> bench_model.json/.md
#   overhead  host time of one small call                              -> host_overhead.json
#   sass      the SASS cost report with this Triton (predicted % of roofline) -> sass.json
#   tune      4096 elements on 8 warps (the launchers') against 32 per thread -> tune.json
#   report    summary.md (and stages.json: every stage's status and seconds)
set -uo pipefail

usage() { echo "usage: bash tools/gpu_check.sh OUT_DIR [--dry-run]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out="$1"; shift
dry=0
for a in "$@"; do
  case "$a" in --dry-run) dry=1 ;; *) usage ;; esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
py="${PYTHON:-python}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
stages_json="$out/stages.json"
echo "[]" > "$stages_json"
t_start=$(date +%s)

record() {  # record STAGE STATUS SECONDS NOTE
  "$py" - "$stages_json" "$1" "$2" "$3" "$4" <<'EOF'
import json, sys
path, stage, status, seconds, note = sys.argv[1:]
rows = json.load(open(path))
rows.append({"stage": stage, "status": status, "seconds": int(seconds), "note": note})
json.dump(rows, open(path, "w"), indent=1)
EOF
}

report() { "$py" tools/gpu_check.py report "$out" > "$out/report.log" 2>&1 || true; }

stage() {  # stage NAME LIMIT_S COMMAND...
  local name="$1" limit="$2"; shift 2
  local log="$out/$name.log" t0 rc
  t0=$(date +%s)
  echo "== [$name] (limit ${limit} s) $*"
  timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ $rc -ne 0 ]; then
    local why="exit status $rc"
    [ $rc -eq 124 ] && why="time limit of ${limit} s reached"
    record "$name" "FAILED" "$dt" "$why; see $name.log"
    tail -n 40 "$log" | sed 's/^/   | /'
    report
    echo "FAILED at stage '$name' ($why) after $(( $(date +%s) - t_start )) s; log: $log" >&2
    echo "Outputs so far: $out (summary.md, stages.json)" >&2
    exit 1
  fi
  record "$name" "ok" "$dt" ""
  echo "   ok (${dt} s)"
}

# Triton's cache (every kernel variant, in parallel) and Numba's (the CPU reference's loops)
# filled at once, so that the tests do not wait for either.
compile_and_warm() {
  "$py" tools/gpu_check.py small-fills --device cpu > "$out/numba_warmup.log" 2>&1 &
  local w=$! c n k
  "$py" tools/triton_compile_check.py --jobs "$(nproc)" --json "$out/compile.json"; c=$?
  # the variants the tests launch, compiled through Triton's launch path, in parallel
  if [ "$warm_device" = cpu ]; then
    TRITON_INTERPRET=1 "$py" tools/gpu_check.py warm --device cpu --jobs 1; k=$?
  else
    "$py" tools/gpu_check.py warm --device "$warm_device" --jobs "$(nproc)"; k=$?
  fi
  wait $w; n=$?
  [ $n -eq 0 ] || echo "the CPU backend's warm-up failed: see numba_warmup.log"
  [ $c -eq 0 ] && [ $n -eq 0 ] && [ $k -eq 0 ]
}
export -f compile_and_warm
warm_device=cuda
[ $dry -eq 1 ] && warm_device=cpu
export py out warm_device

sanitizer=""
for c in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer; do
  if command -v "$c" > /dev/null 2>&1; then sanitizer="$(command -v "$c")"; break; fi
done

if [ $dry -eq 1 ]; then
  echo "fastinit GPU check, DRY RUN on the CPU (tiny sizes; outputs in $out)"
  stage env 60 "$py" tools/gpu_check.py env "$out/env.json"
  stage install 60 echo "dry run: would run: $py -m pip install --no-deps --no-build-isolation -e ."
  stage compile 600 bash -c compile_and_warm
  stage tests 600 "$py" -m pytest -q -x tests/test_gpu.py tests/test_kernel_math.py \
    tests/test_triton.py --junitxml "$out/tests.xml" -p no:cacheprovider
  stage memcheck 300 env TRITON_INTERPRET=1 "$py" tools/gpu_check.py small-fills --device cpu
  stage fills 300 "$py" -m fastinit bench --device cpu --sizes 2^12 --dtypes float32,bfloat16 \
    --functions uniform_,normal_,trunc_normal_,kaiming_uniform_ --repeats 1 --budget 1 \
    --models none --quiet --json "$out/bench_fills.json" --markdown "$out/bench_fills.md"
  stage model 300 "$py" -m fastinit bench --device cpu --functions uniform_ --sizes 2^10 \
    --models tiny --model-dtype bfloat16 --model-repeats 1 --no-hf --repeats 1 --quiet \
    --json "$out/bench_model.json" --markdown "$out/bench_model.md"
  stage overhead 120 "$py" tools/gpu_check.py host-overhead "$out/host_overhead.json" --device cpu
  stage sass 600 "$py" -m fastinit bench --sass --json "$out/sass.json"
  stage tune 300 env TRITON_INTERPRET=1 "$py" tools/gpu_check.py tune "$out/tune.json" \
    --device cpu --size 4096
else
  echo "fastinit GPU check on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null \
    | head -n1) (outputs in $out)"
  stage env 20 "$py" tools/gpu_check.py env "$out/env.json"
  stage install 45 "$py" -m pip install --no-deps --no-build-isolation -e .
  stage compile 75 bash -c compile_and_warm
  stage tests 100 "$py" -m pytest -q -x tests/test_gpu.py --junitxml "$out/tests.xml" \
    -p no:cacheprovider
  [ -n "$sanitizer" ] || sanitizer="compute-sanitizer-not-found-on-PATH-or-in-/usr/local/cuda/bin"
  stage memcheck 75 "$sanitizer" --tool memcheck --error-exitcode 1 --print-limit 20 \
    "$py" tools/gpu_check.py small-fills --device cuda
  stage fills 45 "$py" -m fastinit bench --device cuda --sizes 2^28 --dtypes float32,bfloat16 \
    --functions uniform_,normal_,trunc_normal_,kaiming_uniform_ --repeats 5 --budget 5 \
    --models none --quiet --json "$out/bench_fills.json" --markdown "$out/bench_fills.md"
  stage model 55 "$py" -m fastinit bench --device cuda --functions uniform_ --sizes 2^20 \
    --models 8b --model-dtype bfloat16 --model-repeats 2 --no-hf --repeats 3 --quiet \
    --json "$out/bench_model.json" --markdown "$out/bench_model.md"
  stage overhead 15 "$py" tools/gpu_check.py host-overhead "$out/host_overhead.json" --device cuda
  stage sass 20 "$py" -m fastinit bench --sass --json "$out/sass.json"
  stage tune 25 "$py" tools/gpu_check.py tune "$out/tune.json" --device cuda
fi
report
echo "all stages passed in $(( $(date +%s) - t_start )) s; summary: $out/summary.md"
