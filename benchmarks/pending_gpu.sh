#!/bin/bash
# What this repository has built but not yet run on the H200, as one batch (left by the
# 2026-12-02 session; edit the list as items land):
#   issue 16: int8 w8a8 and block-scaled fp8 (GPU tests, int8_bench, fp8_block_bench)
#   issue 17: range kernels (GPU tests, dynamic_m_bench: range vs exact, host cost per call)
#   issue 14: 8192^3 against wave quantization (wgmma_bench's q8k_ cases)
#   issue 15: M = 64/128 decode points against wave quantization without swap_ab: 128-row
#             tiles as narrow as N / 128 (BN 32-80: one wave of about 128 CTAs, no split)
#   issue 18: the model GPU tests (autograd, optimize) and model_e2e end to end
#
#   bash benchmarks/pending_gpu.sh build DIR        # CPU with MLIR: every bundle into DIR
#   bash benchmarks/pending_gpu.sh run DIR [PART]   # GPU: results and logs into $OUT
#
# PART (run only): int8, dynm, q8k, dec or e2e, or a comma list; all five when left out (about 6-8 minutes of device
# time; keep one call under the device's 600 s per command by running the parts separately
# when the machine is cold). DIR must be carried to the device (run(carry=[DIR])).
set -u
mode=${1:?build or run}
dir=${2:?bundle directory}
part=${3:-all}
cd "$(dirname "$0")/.."
day=$(date -u +%F)

build() {
  python tests/gpu/make_bundle.py "$dir/gpu" --only '^(int8|block)-' > "$dir/build.log" 2>&1
  python benchmarks/int8_bench.py --build "$dir/int8_bench" >> "$dir/build.log" 2>&1
  python benchmarks/fp8_block_bench.py --build "$dir/block_bench" >> "$dir/build.log" 2>&1
  python benchmarks/dynamic_m_bench.py --compile "$dir/dynm" >> "$dir/build.log" 2>&1
  python benchmarks/wgmma_bench.py --compile-only "$dir/q8k" --only '^q8k_' >> "$dir/build.log" 2>&1
  local extra=()
  for bn in 32 48 64 80; do
    extra+=(--extra "ns$bn={\"strategy\": \"wgmma\", \"swap_ab\": false, \"BM\": 128, \"BN\": $bn, \"consumers\": 1, \"split_k\": 1, \"stages\": 6}")
  done
  python benchmarks/decode_suite.py --compile-only "$dir/dec" --dtypes bf16 --ms 64,128 \
    --nk 4096x4096,6144x4096,8192x8192,10240x8192,4096x14336 --default-only "${extra[@]}" \
    >> "$dir/build.log" 2>&1
  python tests/gpu/model_cases.py "$dir/gpu" >> "$dir/build.log" 2>&1
  python benchmarks/model_e2e.py --compile "$dir/e2e" >> "$dir/build.log" 2>&1
  tail -3 "$dir/build.log"
  du -sh "$dir"
}

run_int8() {
  DEEPGEN_TEST_BUNDLE="$dir/gpu" DEEPGEN_INT8_ERRORS="$OUT/int8_errors.json" \
    DEEPGEN_FP8_BLOCK_ERRORS="$OUT/fp8_block_errors.json" \
    timeout 240 python -m pytest tests/gpu/test_int8_gpu.py tests/gpu/test_fp8_block_gpu.py \
    -m gpu -q -p no:cacheprovider > "$OUT/gpu_tests-int8-block.log" 2>&1
  tail -3 "$OUT/gpu_tests-int8-block.log"
  timeout 200 python benchmarks/int8_bench.py --run "$dir/int8_bench" --rounds 5 \
    --out "$OUT/int8_bench-h200-$day.json" 2>&1 | tail -12
  timeout 300 python benchmarks/fp8_block_bench.py --run "$dir/block_bench" --rounds 5 \
    --out "$OUT/fp8_block_bench-h200-$day.json" 2>&1 | tail -16
}

run_dynm() {
  DEEPGEN_DYNAMIC_DIR="$dir/dynm" timeout 200 python -m pytest tests/gpu/test_dynamic_m_gpu.py \
    -m gpu -q -rs -p no:cacheprovider > "$OUT/gpu_tests-dynamic_m.log" 2>&1
  tail -3 "$OUT/gpu_tests-dynamic_m.log"
  timeout 150 python benchmarks/dynamic_m_bench.py --run "$dir/dynm" --rounds 7 \
    --out "$OUT/dynamic_m_bench-h200-$day.json" 2>&1 | tail -10
}

run_dec() {
  timeout 120 python benchmarks/decode_suite.py --run "$dir/dec" \
    --out "$OUT/decode_narrow-h200-$day.json" 2>&1 | tail -14
}

run_q8k() {
  timeout 300 python benchmarks/wgmma_bench.py --run "$dir/q8k" --rounds 5 \
    --out "$OUT/wgmma_bench-h200-$day-q8k.json" > "$OUT/q8k.log" 2>&1
  tail -14 "$OUT/q8k.log"
}

run_e2e() {
  DEEPGEN_TEST_BUNDLE="$dir/gpu" timeout 200 python -m pytest tests/gpu/test_model_gpu.py \
    -m gpu -q -rs -p no:cacheprovider > "$OUT/gpu_tests-model.log" 2>&1
  tail -3 "$OUT/gpu_tests-model.log"
  timeout 300 python benchmarks/model_e2e.py --bundle "$dir/e2e" \
    --out "$OUT/model_e2e-h200-$day.json" --png "$OUT/model_e2e-h200-$day-prefill-gemms.png" \
    > "$OUT/model_e2e.log" 2>&1
  tail -16 "$OUT/model_e2e.log"
}

case "$mode" in
  build) mkdir -p "$dir" && build ;;
  run)
    [ "$part" = all ] && part=int8,dynm,q8k,dec,e2e
    for p in ${part//,/ }; do
      case "$p" in
        int8|dynm|q8k|dec|e2e) ;;
        *) echo "PART: int8, dynm, q8k, dec or e2e (or a comma list), got $p" >&2; exit 2 ;;
      esac
    done
    : "${OUT:?run writes into \$OUT (the device machine sets it)}"
    python3 -m pip install --no-build-isolation --no-deps -q -e . > "$OUT/pip.log" 2>&1
    for p in ${part//,/ }; do "run_$p"; done ;;
  *) echo "mode: build or run, got $mode" >&2; exit 2 ;;
esac
