"""Block-scaled fp8 GEMMs (DeepSeek-V3 / DeepGEMM's 1 x 128 scales of A, 128 x 128 of B;
e4m3, layout NT, bf16 out) on DeepGEMM's dense shapes: DeepGen's wgmma kernels (promotion to
f32 every K tile) against torch in the same process, interleaved rounds, next to DeepGEMM's
published figures.

    python benchmarks/fp8_block_bench.py --build DIR                  (CPU: compile kernels)
    python benchmarks/fp8_block_bench.py --run DIR --out results/x.json   (GPU: time them)

Shapes: M in (64, 128, 4096) by (N, K) in (2112, 7168), (24576, 1536), (7168, 16384),
(4096, 7168) (issue 16); `--shapes` also takes the shapes of EXTRA (experiments, outside the
M = 4096 geometric mean). torch has no block-scaled GEMM on every build, so its reference is
"torch dequant+bf16 mm": both operands dequantized (fp8 -> f32 x expanded block scales ->
bf16) then a bf16 matmul, timed end to end; "torch bf16 mm" times the matmul alone on
pre-dequantized operands (a bf16 GEMM of the same shape: cuBLAS's speed without the
dequantization). Every implementation is checked once against float64 of the dequantized
inputs, C poisoned. DEEPGEMM_H800 holds DeepGEMM's published TFLOPS for these shapes (from
its README's "Normal GEMMs for dense models" table, github.com/deepseek-ai/DeepGEMM, 2025-02:
H800 SXM5, NVCC 12.8; not measured here, a different GPU) for comparison in the JSON.
"""
from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quant_bench as qb

MS = (64, 128, 4096)
NKS = ((2112, 7168), (24576, 1536), (7168, 16384), (4096, 7168))
SHAPES = {f"{m}x{n}x{k}": (m, n, k) for m in MS for n, k in NKS}
# other shapes for experiments (--shapes NAME; not in the geometric mean): few tiles per SM
EXTRA = {f"{m}x{n}x{k}": (m, n, k) for m, n, k in (
    (2048, 4096, 7168), (3072, 2112, 7168), (2048, 7168, 16384), (4096, 2112, 1536),
    (8192, 2112, 7168))}
TABLE = {**SHAPES, **EXTRA}
# DeepGEMM README (2025-02), H800 SXM5: TFLOPS of its block-scaled fp8 dense GEMM (M, N, K)
DEEPGEMM_H800 = {
    (64, 2112, 7168): 206, (64, 24576, 1536): 289, (64, 7168, 16384): 336,
    (64, 4096, 7168): 287, (128, 2112, 7168): 352, (128, 24576, 1536): 535,
    (128, 7168, 16384): 645, (128, 4096, 7168): 533, (4096, 2112, 7168): 1058,
    (4096, 24576, 1536): 990, (4096, 7168, 16384): 1358, (4096, 4096, 7168): 1304,
}
VARIANTS = {  # name: wgmma fields over the block default (None: the default itself)
    # the default: scale_a staged in shared memory by the producer (a TMA box per stage;
    # smem_scales, M % 4 == 0); above M = 128 persistent 2x1 clusters (a cluster walks pairs
    # of tile rows, B multicast to both)
    "default": None,
    # the per-thread stores the default had before the TMA epilogue (session 6)
    "direct": {"epilogue": "direct"},
    "no_smem": {"smem_scales": False},  # scale_a loaded per consumer thread
    "bn128": {"BN": 128},  # at M <= 128, where the default has BN 64
    # one K slice where the default splits K in two (tiles filling at most half the SMs)
    "split1": {"split_k": 1},
    # where N is not a multiple of 128 (2112): 256 x 64 tiles (each consumer 128 x 64: two
    # slabs), 4096 x 2112 in 16 x 33 = 528 tiles, 4.0 waves of 132 (128 x 128: 544, 4.1)
    "bm256_bn64": {"BM": 256, "BN": 64, "stages": 5},
    # the last round of pairs on whole tiles (the default splits it in halves of K where at
    # most half the clusters would work: tail_split)
    "tail_off": {"tail_split": False},
    # where N's last tile column is at most half full (2112 = 16.5 x 128): the default walks
    # it 64 wide in the clusters a pair short (narrow_column); off, the 17 columns' last
    # round split in halves of K (tail_split) as before
    "narrow_off": {"narrow_column": False},
    # consumer 1 starts a K tile behind consumer 0: their wgmma groups take turns (the
    # default on the wide tiles walked in at most 3 rounds: config.BLOCK_STAGGER_MAX_ROUNDS)
    "stagger": {"stagger": True},
    "stagger_off": {"stagger": False},
    # yield hints on every other promotion FFMA where ptxas left a run without any
    # (compiler/sass_yield.py); and without them where the default has them
    "ffma_yield": {"ffma_yield": True},
    "ffma_plain": {"ffma_yield": False},
    # session 5's K loop: a wait after every K tile (the default issues the next first)
    "ahead_off": {"issue_ahead": False},
    # M > 128: 128 x 128 tiles with two temporaries (the default until session 9), and
    # 128 x 192 with one (config.BLOCK_WIDE: the default where those make a wave)
    "tile128": {"BN": 128, "temporaries": 2, "issue_ahead": True, "stages": 6},
    "wide": {"BN": 192, "temporaries": 1, "issue_ahead": False, "stages": 5},
    # each tile's scale_b row prefetched into L1 at the tile's start (the K loop's loads of
    # it then hit L1; at M <= 128 a K tile's wgmma is too short to hide an L2 load)
    "prefetch": {"prefetch_scales": True},
    # 128 x 256 tiles, the temporary in two 128-column parts (temp_parts): 4 stages of 48 KiB
    "wide256": {"BN": 256, "temporaries": 1, "temp_parts": 2, "issue_ahead": False,
                "stages": 4},
    # M <= 128 with two consumers: the tuner's winner at three of the four M = 128 shapes
    # (results/tune_fp8_block-h200-2026-12-02-s6): one tile per CTA, 7 stages, staggered
    "np_s7_stagger": {"persistent": False, "stages": 7, "stagger": True, "group_m": 1},
    "np_s7": {"persistent": False, "stages": 7, "group_m": 1},
}
SMALL_VARIANTS = ("default", "split1", "direct", "ahead_off", "bn128", "no_smem", "ffma_yield",
                  "ffma_plain", "prefetch")
LARGE_VARIANTS = ("default", "tile128", "wide", "tail_off", "direct", "no_smem", "stagger",
                  "stagger_off", "ffma_yield", "ffma_plain", "prefetch")
ODD_N_VARIANTS = ("bm256_bn64", "narrow_off")


def spec_of(M, N, K):
    """What deepgen.gemm compiles for these calls (alpha 1, beta 0): the chain without
    alpha_beta (deepgen/scaled.py; session 13: 1-6% over the chain with it)."""
    from deepgen.epilogue import EpilogueSpec
    from deepgen.spec import GemmSpec

    return GemmSpec(M=M, N=N, K=K, dtype="e4m3", out_dtype="bf16", layout="NT",
                    scale="block", epilogue=EpilogueSpec(()))


def _line(name: str, vname: str, seconds: float, res: dict) -> str:
    return f"{name:18s} {vname:16s} {seconds:5.2f} s  spills {res['spill_stores']}"


def variants_for(spec) -> tuple:
    """The variants a shape is built in: SMALL_VARIANTS at M <= 128 (and the staggered and
    non-persistent ones where the default has two consumers, M > 64), else LARGE_VARIANTS
    (and ODD_N_VARIANTS where N is not a multiple of 128)."""
    if spec.M <= 128:
        return SMALL_VARIANTS + (("stagger", "np_s7_stagger", "np_s7") if spec.M > 64 else ())
    return LARGE_VARIANTS + (ODD_N_VARIANTS if spec.N % 128 else ())


def build(directory: Path, shapes) -> None:
    qb.build_variants(directory, shapes, TABLE, spec_of, VARIANTS, variants_for, line=_line)


PER_TENSOR = "torch._scaled_mm per-tensor (no block scales)"


def _dequant(x, scales, rows_per_block: int):
    """fp8 x (R, K) times its block scales (R / rows_per_block, K / 128), as bf16."""
    import torch

    R, K = x.shape
    s = scales.repeat_interleave(rows_per_block, 0)[:R].repeat_interleave(128, 1)[:, :K]
    return (x.to(torch.float32) * s).to(torch.bfloat16)


def _shape(directory: Path, index: list, name: str, rounds: int) -> dict:
    import torch
    from deepgen.runtime import measure

    import deepgen

    M, N, K = TABLE[name]
    spec = spec_of(M, N, K)
    entries, kernels = qb.load_shape(directory, index, name)
    kb, nb = -(-K // 128), -(-N // 128)
    count = qb.set_count(M, N, K, measure.L2_BYTES)
    torch.manual_seed(0)
    sets = []
    for _ in range(count):
        a = torch.randn(M, K, device="cuda").to(torch.float8_e4m3fn)
        w = torch.randn(N, K, device="cuda").to(torch.float8_e4m3fn)
        sa_t = 0.5 + torch.rand(kb, M, device="cuda")  # M-major (M, K/128)
        sb = 0.5 + torch.rand(nb, kb, device="cuda")
        sets.append((a, w, sa_t, sb))
    c = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    pre = [(_dequant(a, sa_t.t(), 1), _dequant(w, sb, 128)) for a, w, sa_t, sb in sets]
    impls = {
        "torch dequant+bf16 mm": lambda a, w, sa_t, sb, i: _dequant(a, sa_t.t(), 1)
        @ _dequant(w, sb, 128).t(),
        "torch bf16 mm": lambda a, w, sa_t, sb, i: pre[i][0] @ pre[i][1].t(),
    }

    def kernel_call(k):
        return lambda a, w, sa_t, sb, i: k(a, w.t(), c, scale_a=sa_t, scale_b=sb)

    impls.update({f"deepgen:{vname}": kernel_call(k) for vname, k in kernels.items()})
    impls["deepgen.gemm"] = lambda a, w, sa_t, sb, i: deepgen.gemm(
        a, w.t(), out=c, scale_a=sa_t.t(), scale_b=sb)
    a, w, sa_t, sb = sets[0]
    a64, b64 = measure.dequantized(spec, a, w.t(), {"scale_a": sa_t, "scale_b": sb})
    ref = a64 @ b64
    del a64, b64
    checks = qb.check_once(impls, lambda fn: fn(a, w, sa_t, sb, 0), c, ref,
                           measure.rel_error, torch.cuda.synchronize)
    del ref
    # timed, not checked (no block scales): the vendor's fp8 product of the same shape without
    # the per-K-tile promotion, the card's ceiling for this kernel family under its power limit
    one = torch.ones((), device="cuda")
    impls[PER_TENSOR] = lambda a, w, sa_t, sb, i: torch._scaled_mm(
        a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    checks[PER_TENSOR] = float("nan")  # another product: no reference to hold it to
    # measure.time_ms rotates (a, b) pairs: here (the set's tensors and index, unused)
    indexed = [((*s, i), None) for i, s in enumerate(sets)]

    def unpacked(fn):
        return lambda x, _unused: fn(*x)

    tflops, med = qb.interleaved({iname: unpacked(fn) for iname, fn in impls.items()},
                                 indexed, rounds, spec.flops, measure.time_ms)
    base = med["torch dequant+bf16 mm"]
    published = DEEPGEMM_H800.get((M, N, K))
    row = {"shape": name, "M": M, "N": N, "K": K, "median_tflops": med,
           "ratio_vs_torch_dequant": {i: v / base for i, v in med.items()},
           "ratio_vs_torch_bf16_mm": {i: v / med["torch bf16 mm"] for i, v in med.items()},
           "ratio_vs_per_tensor_scaled_mm": {i: v / med[PER_TENSOR] for i, v in med.items()},
           "deepgemm_h800_published_tflops": published,
           "rounds_tflops": tflops, "rel_error": checks,
           "configs": {e["variant"]: e["config"] for e in entries}}
    best = qb.best_deepgen(med)
    print(f"{name:18s} torch dequant {base:7.1f}  bf16 mm {med['torch bf16 mm']:7.1f}  "
          f"per-tensor _scaled_mm {med[PER_TENSOR]:7.1f}  "
          f"default {med['deepgen:default']:7.1f}  best {best} {med[best]:7.1f}  "
          f"DeepGEMM(H800, published) {published}", flush=True)
    return row


def run(directory: Path, out: Path, rounds: int, shapes) -> dict:
    results = qb.run_shapes(directory, shapes,
                            lambda index, name: _shape(directory, index, name, rounds))
    big = [r for r in results if r["M"] == 4096 and r["shape"] in SHAPES]
    geo = (math.exp(statistics.fmean(math.log(max(v for i, v in r["median_tflops"].items()
                                                     if i.startswith("deepgen:")))
                                    for r in big)) if big else None)
    doc = {**qb.doc_head("fp8_block_bench", rounds), "dtype": "e4m3", "layout": "NT",
           "out_dtype": "bf16",
           "scales": "block: scale_a 1x128 (M-major), scale_b 128x128",
           "deepgemm_source": "DeepGEMM README, 'Normal GEMMs for dense models' (2025-02): "
                              "H800 SXM5, NVCC 12.8; published, not measured here",
           "geomean_best_deepgen_tflops_m4096": geo,
           "timing": "median of per-round medians (measure.time_ms: triton do_bench median, "
                     "inputs rotated past L2)", "results": results}
    qb.finish(out, doc, qb.format_table(
        results, "median_tflops", "TFLOP/s", 24,
        [("ratio_vs_torch_dequant", "x dequant", 9), ("ratio_vs_torch_bf16_mm", "x bf16mm", 8),
         ("ratio_vs_per_tensor_scaled_mm", "x pt-fp8", 8)]))
    print(f"geometric mean over M = 4096 (best DeepGen variant): {geo}")
    return doc


def main(argv=None) -> int:
    return qb.main(__doc__, SHAPES, build, run, "fp8_block_bench.json", argv, extra=EXTRA)


if __name__ == "__main__":
    sys.exit(main())
