"""fp8 e4m3 GEMMs, layout NT, per-tensor scales, bf16 out: DeepGen's wgmma kernels against
torch._scaled_mm (cuBLASLt) in the same process, interleaved rounds.

    python benchmarks/fp8_bench.py --build DIR [--shapes ...]        (CPU: compile kernels)
    python benchmarks/fp8_bench.py --run DIR --out results/x.json    (GPU: time them)

For each shape, --build compiles the default config (the default heuristic's) and a few
alternatives (VARIANTS) into DIR/<shape>/<variant>; --run loads them (no MLIR needed), checks
every kernel and torch once against float64 of the dequantized inputs (a * scale_a) @
(b * scale_b) with C poisoned, then times them in `--rounds` interleaved rounds (each round
times every implementation once: CUDA-event median of triton's do_bench, inputs rotated
through enough sets to exceed the L2), reporting the median over rounds in TFLOP/s, the
per-round figures, and the ratio to torch._scaled_mm. deepgen.gemm (the API door, host cost
included) is timed for the default as "deepgen.gemm".
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quant_bench as qb

SHAPES = {  # name: (M, N, K[, scale mode]); per-tensor scales unless named
    "4096^3": (4096, 4096, 4096),
    "8192^3": (8192, 8192, 8192),
    "2048x4096x14336": (2048, 4096, 14336),
    "16x4096x4096": (16, 4096, 4096),
    "4096^3-rowwise": (4096, 4096, 4096, "rowwise"),
}
VARIANTS = {**qb.VARIANTS, "coop-256x128-s4": {**qb.COOP, "BM": 256, "BN": 128}}
SMALL_VARIANTS = ("default",)  # at M = 16: the swap_ab default only


def spec_of(M, N, K, scale="tensor"):
    from deepgen.spec import GemmSpec

    return GemmSpec(M=M, N=N, K=K, dtype="e4m3", out_dtype="bf16", layout="NT", scale=scale)


def _variants(spec):
    return SMALL_VARIANTS if spec.M < 128 or spec.scale == "rowwise" else VARIANTS


def build(directory: Path, shapes) -> None:
    qb.build_variants(directory, shapes, SHAPES, spec_of, VARIANTS, _variants)


def _shape(directory: Path, index: list, name: str, rounds: int) -> dict:
    import torch
    from deepgen.runtime import measure

    import deepgen

    M, N, K = SHAPES[name][:3]
    spec = spec_of(*SHAPES[name])
    entries, kernels = qb.load_shape(directory, index, name)
    count = qb.set_count(M, N, K, measure.L2_BYTES)
    torch.manual_seed(0)
    sets = [(torch.randn(M, K, device="cuda").to(torch.float8_e4m3fn),
             torch.randn(N, K, device="cuda").to(torch.float8_e4m3fn).t())
            for _ in range(count)]
    if spec.scale == "rowwise":  # torch._scaled_mm's rowwise form: (M, 1) and (1, N)
        sa = 0.5 + torch.rand(M, 1, device="cuda")
        sb = 0.5 + torch.rand(1, N, device="cuda")
    else:
        sa, sb = torch.tensor(0.7, device="cuda"), torch.tensor(1.3, device="cuda")
    sa1, sb1 = sa.reshape(-1), sb.reshape(-1)
    c = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    impls = {"torch._scaled_mm": lambda a, b: torch._scaled_mm(
        a, b, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)}

    def kernel_call(k):
        return lambda a, b: k(a, b, c, scale_a=sa1, scale_b=sb1)

    impls.update({f"deepgen:{vname}": kernel_call(k) for vname, k in kernels.items()})
    impls["deepgen.gemm"] = lambda a, b: deepgen.gemm(a, b, out=c, scale_a=sa, scale_b=sb)
    # correctness once: float64 of the dequantized inputs, C poisoned
    a, b = sets[0]
    ref = (a.double() * sa.double()) @ (b.double() * sb.double())
    checks = qb.check_once(impls, lambda fn: fn(a, b), c, ref, measure.rel_error,
                           torch.cuda.synchronize)
    del ref
    tflops, med = qb.interleaved(impls, sets, rounds, spec.flops, measure.time_ms)
    base = med["torch._scaled_mm"]
    row = {"shape": name, "M": M, "N": N, "K": K, "median_tflops": med,
           "ratio_vs_torch": {i: v / base for i, v in med.items()},
           "rounds_tflops": tflops, "rel_error": checks,
           "configs": {e["variant"]: e["config"] for e in entries}}
    best = qb.best_deepgen(med)
    print(f"{name:18s} torch {base:7.1f}  default {med['deepgen:default']:7.1f} "
          f"({med['deepgen:default'] / base:.3f}x)  best {best} {med[best]:7.1f} "
          f"({med[best] / base:.3f}x)  deepgen.gemm {med['deepgen.gemm']:7.1f}", flush=True)
    return row


def run(directory: Path, out: Path, rounds: int, shapes) -> dict:
    results = qb.run_shapes(directory, shapes,
                            lambda index, name: _shape(directory, index, name, rounds))
    doc = {**qb.doc_head("fp8_bench", rounds), "dtype": "e4m3", "layout": "NT",
           "scales": "per-tensor unless the shape says rowwise",
           "out_dtype": "bf16", "timing": "median of per-round medians (measure.time_ms: "
           "triton do_bench median, inputs rotated past L2)", "results": results}
    return qb.finish(out, doc, qb.format_table(results, "median_tflops", "TFLOP/s", 34,
                                               [("ratio_vs_torch", "x torch", 8)]))


def main(argv=None) -> int:
    return qb.main(__doc__, SHAPES, build, run, "fp8_bench.json", argv)


if __name__ == "__main__":
    sys.exit(main())
