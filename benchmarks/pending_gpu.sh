#!/bin/bash
# What this repository has built but not yet run on the H200, as one batch (left by the
# 2026-12-02 session 4; edit the list as items land):
#   tests:  every GPU test and the correctness sweep under session 4's defaults (the TMA-store
#           epilogue, ping-pong 128x192, the decode rules; each was checked where measured,
#           the whole set was not re-run)
#   sanit:  compute-sanitizer (racecheck, synccheck, memcheck) on TMA-store epilogue kernels
#           (issue 14: its stores, named barriers and bulk wait_group were not sanitizer-run)
#   decode: the whole decode suite (bf16 + f16, every point, 5 rounds) with the two decode
#           rules added after the last full run (2x1-cluster narrow tiles at M > 64, two CTAs
#           per SM for swap_ab at M <= 32 against N = 28672): issue 15's figures
#   block:  block-scaled fp8's opt-in smem_scales (scale_a staged by the producer) and
#           persistent 2x1 clusters (issue 16), built CPU-only: their GPU cases (in the tests
#           part's bundle) and fp8_block_bench at M = 4096 against the default
#   c12:    1x2 clusters (cluster_n 2, A multicast; issue 14), built CPU-only: the cl12-* GPU
#           cases (in the tests part's bundle), wgmma_bench's c12_ cases (4096^3, 8192^3), a
#           sanitizer pass on one
#
#   bash benchmarks/pending_gpu.sh build DIR        # CPU with MLIR: every bundle into DIR
#   bash benchmarks/pending_gpu.sh run DIR [PART]   # GPU: results and logs into $OUT
#
# PART (run only): tests, sanit, decode, block or c12, or a comma list; all when left out (10-12
# minutes of device time; keep one call under the device's 600 s per command by running the
# parts separately when the machine is cold). DIR must be carried to the device
# (run(carry=[DIR]), at most 64 MiB).
set -u
mode=${1:?build or run}
dir=${2:?bundle directory}
part=${3:-all}
cd "$(dirname "$0")/.."
day=$(date -u +%F)
PARTS="tests sanit decode block c12"
# the sanitizer's kernels: tests/gpu/wgmma_cases.py's TMA-store cases (cooperative partial
# tiles, ping-pong odd tiles, persistent two CTAs per SM)
SANIT_CASES="wgmma-tmast-NT-partial-c1-n32 wgmma-tmast-NT-pingpong-odd-tiles wgmma-tmast-NT-persistent-2cta"

build() {
  python tests/gpu/make_bundle.py "$dir/gpu" > "$dir/build.log" 2>&1
  python benchmarks/runtime_bundles.py --out "$dir/runtime" >> "$dir/build.log" 2>&1
  python benchmarks/decode_suite.py --compile-only "$dir/decode" --dtypes bf16,f16 \
    --default-only >> "$dir/build.log" 2>&1
  python benchmarks/fp8_block_bench.py --build "$dir/blockbench" >> "$dir/build.log" 2>&1
  python benchmarks/wgmma_bench.py --compile-only "$dir/c12" --only '^c12_' >> "$dir/build.log" 2>&1
  tail -3 "$dir/build.log"
  du -sh "$dir"
}

run_tests() {
  DEEPGEN_TEST_BUNDLE="$dir/gpu" DEEPGEN_GPU_BUNDLES="$dir/runtime" timeout 200 \
    python -m pytest tests/gpu -m gpu -q -rs -p no:cacheprovider -k "not sweep_case" \
    > "$OUT/gpu_tests-$day.log" 2>&1
  echo "gpu tests: $(tail -n 1 "$OUT/gpu_tests-$day.log")"
  timeout 120 python benchmarks/correctness_sweep.py --run "$dir/gpu/sweep" \
    --out "$OUT/correctness_sweep-h200-$day.json" > "$OUT/sweep.log" 2>&1
  echo "sweep: $(tail -n 2 "$OUT/sweep.log" | tr '\n' ' ')"
}

run_sanit() {
  for k in $SANIT_CASES; do
    for t in racecheck synccheck memcheck; do
      timeout 90 compute-sanitizer --tool "$t" python benchmarks/wgmma_bench.py \
        --launch "$dir/gpu/wgmma/$k" --iters 1 2>&1 | tail -n 2 | sed "s/^/$k $t: /"
    done
  done > "$OUT/sanitizer-tma-epilogue-h200-$day.log" 2>&1
  grep -E "SUMMARY" "$OUT/sanitizer-tma-epilogue-h200-$day.log"
}

run_decode() {
  timeout 300 python benchmarks/decode_suite.py --run "$dir/decode" --budget-s 280 \
    --out "$OUT/decode_suite-h200-$day.json" > "$OUT/decode.log" 2>&1
  grep -E "geometric" "$OUT/decode.log"
}

run_block() {
  DEEPGEN_TEST_BUNDLE="$dir/gpu" DEEPGEN_FP8_BLOCK_ERRORS="$OUT/fp8_block_errors-$day.json" \
    timeout 240 python -m pytest tests/gpu/test_fp8_block_gpu.py -m gpu -q -rs \
    -p no:cacheprovider > "$OUT/fp8_block_gpu-$day.log" 2>&1
  echo "block tests: $(tail -n 1 "$OUT/fp8_block_gpu-$day.log")"
  timeout 300 python benchmarks/fp8_block_bench.py --run "$dir/blockbench" --rounds 5 \
    --shapes 4096x2112x7168 4096x24576x1536 4096x7168x16384 4096x4096x7168 \
    --out "$OUT/fp8_block_bench-h200-$day-smem-cpers.json" > "$OUT/block_bench.log" 2>&1
  tail -n 12 "$OUT/block_bench.log"
}

run_c12() {
  DEEPGEN_TEST_BUNDLE="$dir/gpu" timeout 240 python -m pytest tests/gpu/test_wgmma_gpu.py -m gpu \
    -q -rs -p no:cacheprovider -k cl12 > "$OUT/cl12_gpu_tests-$day.log" 2>&1
  echo "cl12 tests: $(tail -n 1 "$OUT/cl12_gpu_tests-$day.log")"
  for t in racecheck synccheck; do
    timeout 90 compute-sanitizer --tool "$t" python benchmarks/wgmma_bench.py \
      --launch "$dir/gpu/wgmma/cl12-bf16-NT-odd-cols-partial" --iters 1 2>&1 | tail -n 2
  done > "$OUT/cl12-sanit-$day.log"
  grep -E "SUMMARY" "$OUT/cl12-sanit-$day.log"
  timeout 300 python benchmarks/wgmma_bench.py --run "$dir/c12" --rounds 5 \
    --out "$OUT/wgmma_bench-h200-$day-c12.json" > "$OUT/c12_bench-$day.log" 2>&1
  tail -n 16 "$OUT/c12_bench-$day.log"
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
