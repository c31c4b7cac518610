"""int8 w8a8 GEMMs (int8 inputs, layout NT, rowwise scales: per token x per channel, bf16 out):
DeepGen's wgmma kernels (s32 accumulation, scales in the epilogue: one kernel) against torch's
w8a8 path, torch._int_mm (cuBLASLt int8, int32 out) followed by the scaling in torch
(`(torch._int_mm(a, b) * scale_a * scale_b).to(bfloat16)`: the issue's reference, timed end to
end), in the same process, interleaved rounds.

    python benchmarks/int8_bench.py --build DIR [--shapes ...]        (CPU: compile kernels)
    python benchmarks/int8_bench.py --run DIR --out results/x.json    (GPU: time them)

--build compiles the default config and a few alternatives (VARIANTS: wgmma's, and the mma_sync
strategy's m16n8k32 kernels, the sm_80-89 path) per shape into
DIR/<shape>/<variant>; --run loads them (no MLIR needed), checks every implementation once
against float64 of the dequantized inputs (a * scale_a) @ (b * scale_b) with C poisoned, then
times them in `--rounds` interleaved rounds (each round times every implementation once:
measure.time_ms, triton's do_bench median, inputs rotated past the L2), reporting the median
over rounds in TFLOP/s (TOPS), the per-round figures and the ratios to "torch._int_mm+scale"
(the reference) and to torch._int_mm alone (int32 out, no scaling: a bound torch's path does
not reach). deepgen.gemm (the API door, host cost included) is timed for the default.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quant_bench as qb

SHAPES = {  # name: (M, N, K, scale mode)
    "4096^3": (4096, 4096, 4096, "rowwise"),
    "4096^3-tensor": (4096, 4096, 4096, "tensor"),
    "8192^3": (8192, 8192, 8192, "rowwise"),
    "2048x4096x14336": (2048, 4096, 14336, "rowwise"),
    "32x4096x4096": (32, 4096, 4096, "rowwise"),  # torch._int_mm needs M > 16
}
# the mma_sync strategy's int8 kernels (mma.sync m16n8k32: what sm_80-89 GPUs run; timed here on
# the H200 as sm_90a kernels): its default and a few tiles around it
MMA = {"strategy": "mma_sync"}
MMA_VARIANTS = {"mma_sync": MMA,
                "mma_sync-256x128x128-s3": {**MMA, "BM": 256, "BN": 128, "BK": 128, "warps_m": 4,
                                            "warps_n": 2, "shared_stages": 3},
                "mma_sync-128x256x128-s3": {**MMA, "BM": 128, "BN": 256, "BK": 128, "warps_m": 2,
                                            "warps_n": 4, "shared_stages": 3},
                "mma_sync-128x128x64-s4": {**MMA, "BM": 128, "BN": 128, "BK": 64, "warps_m": 2,
                                           "warps_n": 2, "shared_stages": 4}}
VARIANTS = {**qb.VARIANTS, **MMA_VARIANTS}
SMALL_VARIANTS = ("default", "mma_sync")
REFERENCE = "torch._int_mm+scale"


def spec_of(M, N, K, scale="rowwise"):
    from deepgen.spec import GemmSpec

    return GemmSpec(M=M, N=N, K=K, dtype="int8", out_dtype="bf16", layout="NT", scale=scale)


def _variants(spec):
    return SMALL_VARIANTS if spec.M < 128 else VARIANTS


def build(directory: Path, shapes) -> None:
    qb.build_variants(directory, shapes, SHAPES, spec_of, VARIANTS, _variants)


def _shape(directory: Path, index: list, name: str, rounds: int) -> dict:
    import torch
    from deepgen.runtime import measure

    import deepgen

    M, N, K, scale = SHAPES[name]
    spec = spec_of(*SHAPES[name])
    entries, kernels = qb.load_shape(directory, index, name)
    count = qb.set_count(M, N, K, measure.L2_BYTES)
    g = torch.Generator().manual_seed(0)
    sets = [(torch.randint(-127, 128, (M, K), generator=g, dtype=torch.int8).cuda(),
             torch.randint(-127, 128, (N, K), generator=g, dtype=torch.int8).cuda().t())
            for _ in range(count)]
    if scale == "rowwise":  # per token (M, 1) x per channel (1, N)
        sa = (0.5 + torch.rand(M, 1, device="cuda")) / 127
        sb = (0.5 + torch.rand(1, N, device="cuda")) / 127
    else:
        sa, sb = torch.tensor(0.7 / 127, device="cuda"), torch.tensor(1.3 / 127,
                                                                        device="cuda")
    sa1, sb1 = sa.reshape(-1), sb.reshape(-1)
    c = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    impls = {
        REFERENCE: lambda a, b: (torch._int_mm(a, b) * sa * sb).to(torch.bfloat16),
        "torch._int_mm (int32 out, unscaled)": lambda a, b: torch._int_mm(a, b),
    }

    def kernel_call(k):
        return lambda a, b: k(a, b, c, scale_a=sa1, scale_b=sb1)

    impls.update({f"deepgen:{vname}": kernel_call(k) for vname, k in kernels.items()})
    impls["deepgen.gemm"] = lambda a, b: deepgen.gemm(a, b, out=c, scale_a=sa, scale_b=sb)
    a, b = sets[0]
    ref = (a.double() * sa.double()) @ (b.double() * sb.double())

    def scaled(r):  # the unscaled int32 product: check it scaled here
        return r.double() * sa.double() * sb.double() if r.dtype == torch.int32 else r

    checks = qb.check_once(impls, lambda fn: fn(a, b), c, ref, measure.rel_error,
                           torch.cuda.synchronize, result=scaled)
    del ref
    tops, med = qb.interleaved(impls, sets, rounds, spec.flops, measure.time_ms)
    base = med[REFERENCE]
    raw = med["torch._int_mm (int32 out, unscaled)"]
    row = {"shape": name, "M": M, "N": N, "K": K, "scale": scale, "median_tops": med,
           "ratio_vs_reference": {i: v / base for i, v in med.items()},
           "ratio_vs_int_mm_alone": {i: v / raw for i, v in med.items()},
           "rounds_tops": tops, "rel_error": checks,
           "configs": {e["variant"]: e["config"] for e in entries}}
    best = qb.best_deepgen(med)
    print(f"{name:18s} torch+scale {base:7.1f}  int_mm {raw:7.1f}  default "
          f"{med['deepgen:default']:7.1f} ({med['deepgen:default'] / base:.3f}x)  best "
          f"{best} {med[best]:7.1f} ({med[best] / base:.3f}x)", flush=True)
    return row


def run(directory: Path, out: Path, rounds: int, shapes) -> dict:
    results = qb.run_shapes(directory, shapes,
                            lambda index, name: _shape(directory, index, name, rounds))
    doc = {**qb.doc_head("int8_bench", rounds), "dtype": "int8", "layout": "NT",
           "out_dtype": "bf16",
           "reference": f"{REFERENCE}: (torch._int_mm(a, w.t()) * scale_a * scale_b)"
                        f".to(bfloat16), end to end",
           "timing": "median of per-round medians (measure.time_ms: triton do_bench median, "
                     "inputs rotated past L2); TOPS = 2MNK / time", "results": results}
    return qb.finish(out, doc, qb.format_table(
        results, "median_tops", "TOPS", 38,
        [("ratio_vs_reference", "x ref", 7), ("ratio_vs_int_mm_alone", "x int_mm", 8)]))


def main(argv=None) -> int:
    return qb.main(__doc__, SHAPES, build, run, "int8_bench.json", argv)


if __name__ == "__main__":
    sys.exit(main())
