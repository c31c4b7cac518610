#!/bin/bash
# What this repository has built, as one batch for the H200 (edit the list as items land;
# session 7 ran parts tests and block after its last change: results/*-2026-12-02-s7*):
#   tests:  every GPU test (the smem_scales cases in part block) and the correctness sweep
#           (all passed in session 7: results/gpu_tests-h200-2026-12-02-s7.log)
#   decode: the whole decode suite (bf16 + f16, every point, 5 rounds) and its analysis
#           (issue 15's figures and their bandwidth bounds; defaults and their PTX unchanged
#           since session 5, so not re-run)
#   block:  block-scaled fp8 (issue 16): its GPU cases, then fp8_block_bench over DeepGEMM's 12
#           shapes (ran last in session 7: results/fp8_block_bench-h200-2026-12-02-s7-final.json)
#   tuneq:  the tuner on quantized inputs (issue 16): tuning_configs/fp8_block.json at 8
#           candidates per shape (scales drawn by the worker, checked against the dequantized
#           float64 product, timed against the bf16 matmul), its report (ran in session 6;
#           not re-run with session 7's defaults)
#
#   bash benchmarks/pending_gpu.sh build DIR        # CPU with MLIR: every bundle into DIR
#   bash benchmarks/pending_gpu.sh run DIR [PART]   # GPU: results and logs into $OUT
#
# PART (run only): tests, decode, block or tuneq, or a comma list; all when left out (keep one call
# under the device's 600 s per command by running the parts separately when the machine is
# cold). DIR must be carried to the device (run(carry=[DIR]), at most 64 MiB).
set -u
mode=${1:?build or run}
dir=${2:?bundle directory}
part=${3:-all}
cd "$(dirname "$0")/.."
day=$(date -u +%F)
PARTS="tests decode block tuneq"
build() {
  python tests/gpu/make_bundle.py "$dir/gpu" > "$dir/build.log" 2>&1
  python benchmarks/runtime_bundles.py --out "$dir/runtime" >> "$dir/build.log" 2>&1
  python benchmarks/decode_suite.py --compile-only "$dir/decode" --dtypes bf16,f16 \
    --default-only >> "$dir/build.log" 2>&1
  python benchmarks/fp8_block_bench.py --build "$dir/blockbench" >> "$dir/build.log" 2>&1
  deepgen tune tuning_configs/fp8_block.json --compile-only --max-candidates 8 \
    --out "$dir/tune_block" >> "$dir/build.log" 2>&1
  tail -3 "$dir/build.log"
  du -sh "$dir"
}

run_tests() {
  DEEPGEN_TEST_BUNDLE="$dir/gpu" DEEPGEN_GPU_BUNDLES="$dir/runtime" timeout 300 \
    python -m pytest tests/gpu -m gpu -q -rs -p no:cacheprovider -k "not sweep_case and not smem" \
    > "$OUT/gpu_tests-$day.log" 2>&1
  echo "gpu tests: $(tail -n 1 "$OUT/gpu_tests-$day.log")"
  timeout 120 python benchmarks/correctness_sweep.py --run "$dir/gpu/sweep" \
    --out "$OUT/correctness_sweep-h200-$day.json" > "$OUT/sweep.log" 2>&1
  echo "sweep: $(tail -n 2 "$OUT/sweep.log" | tr '\n' ' ')"
}

run_decode() {
  timeout 300 python benchmarks/decode_suite.py --run "$dir/decode" --budget-s 280 \
    --out "$OUT/decode_suite-h200-$day.json" > "$OUT/decode.log" 2>&1
  grep -E "geometric|M1_16|M32_128" "$OUT/decode.log"
}

run_block() {
  # smem_scales kernels in their own process: a fault there (as the rank-1 scale map's was)
  # poisons the CUDA context of every later test
  DEEPGEN_TEST_BUNDLE="$dir/gpu" DEEPGEN_FP8_BLOCK_ERRORS="$OUT/fp8_block_errors-$day.json" \
    timeout 150 python -m pytest tests/gpu/test_fp8_block_gpu.py -m gpu -q -rs \
    -p no:cacheprovider -k "not smem" > "$OUT/fp8_block_gpu-$day.log" 2>&1
  echo "block tests: $(tail -n 1 "$OUT/fp8_block_gpu-$day.log")"
  DEEPGEN_TEST_BUNDLE="$dir/gpu" timeout 100 python -m pytest tests/gpu/test_fp8_block_gpu.py \
    -m gpu -q -rs -p no:cacheprovider -k "smem" > "$OUT/fp8_block_gpu-smem-$day.log" 2>&1
  echo "smem block tests: $(tail -n 1 "$OUT/fp8_block_gpu-smem-$day.log")"
  timeout 300 python benchmarks/fp8_block_bench.py --run "$dir/blockbench" --rounds 5 \
    --out "$OUT/fp8_block_bench-h200-$day.json" > "$OUT/block_bench.log" 2>&1
  grep -E "best|geometric" "$OUT/block_bench.log"
}

run_tuneq() {
  timeout 400 deepgen bench "$dir/tune_block" --out "$OUT/tune_block" > "$OUT/tuneq.log" 2>&1
  echo "tuneq: $(tail -n 1 "$OUT/tuneq.log")"
  deepgen tune report "$OUT/tune_block" 2>&1 | tail -n 16
}

case "$mode" in
  build) mkdir -p "$dir" && build ;;
  run)
    [ "$part" = all ] && part=${PARTS// /,}
    for p in ${part//,/ }; do
      case " $PARTS " in
        *" $p "*) ;;
        *) echo "PART: one of $PARTS (or a comma list), got $p" >&2; exit 2 ;;
      esac
    done
    : "${OUT:?run writes into \$OUT (the device machine sets it)}"
    python3 -m pip install --no-build-isolation --no-deps -q -e . > "$OUT/pip.log" 2>&1
    for p in ${part//,/ }; do "run_$p"; done ;;
  *) echo "mode: build or run, got $mode" >&2; exit 2 ;;
esac
