"""Block-scaled fp8 GEMMs (DeepSeek-V3 / DeepGEMM's 1 x 128 scales of A, 128 x 128 of B;
e4m3, layout NT, bf16 out) on DeepGEMM's dense shapes: DeepGen's wgmma kernels (promotion to
f32 every K tile) against torch in the same process, interleaved rounds, next to DeepGEMM's
published figures.

    python benchmarks/fp8_block_bench.py --build DIR                  (CPU: compile kernels)
    python benchmarks/fp8_block_bench.py --run DIR --out results/x.json   (GPU: time them)

Shapes: M in (64, 128, 4096) by (N, K) in (2112, 7168), (24576, 1536), (7168, 16384),
(4096, 7168) (issue 16). torch has no block-scaled GEMM on every build, so its reference is
"torch dequant+bf16 mm": both operands dequantized (fp8 -> f32 x expanded block scales ->
bf16) then a bf16 matmul, timed end to end; "torch bf16 mm" times the matmul alone on
pre-dequantized operands (a bf16 GEMM of the same shape: cuBLAS's speed without the
dequantization). Every implementation is checked once against float64 of the dequantized
inputs, C poisoned. DEEPGEMM_H800 holds DeepGEMM's published TFLOPS for these shapes (from
its README's "Normal GEMMs for dense models" table, github.com/deepseek-ai/DeepGEMM, 2025-02:
H800 SXM5, NVCC 12.8; not measured here, a different GPU) for comparison in the JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from pathlib import Path

MS = (64, 128, 4096)
NKS = ((2112, 7168), (24576, 1536), (7168, 16384), (4096, 7168))
SHAPES = {f"{m}x{n}x{k}": (m, n, k) for m in MS for n, k in NKS}
# DeepGEMM README (2025-02), H800 SXM5: TFLOPS of its block-scaled fp8 dense GEMM (M, N, K)
DEEPGEMM_H800 = {
    (64, 2112, 7168): 206, (64, 24576, 1536): 289, (64, 7168, 16384): 336,
    (64, 4096, 7168): 287, (128, 2112, 7168): 352, (128, 24576, 1536): 535,
    (128, 7168, 16384): 645, (128, 4096, 7168): 533, (4096, 2112, 7168): 1058,
    (4096, 24576, 1536): 990, (4096, 7168, 16384): 1358, (4096, 4096, 7168): 1304,
}
VARIANTS = {  # name: wgmma fields over the block default (None: the default itself)
    "default": None,
    "nonpersistent": {"persistent": False},
    "bn64": {"BN": 64},
}
SMALL_VARIANTS = ("default", "bn64")


def spec_of(M, N, K):
    from deepgen.spec import GemmSpec

    return GemmSpec(M=M, N=N, K=K, dtype="e4m3", out_dtype="bf16", layout="NT",
                    scale="block")


def build(directory: Path, shapes) -> None:
    from deepgen.compiler import compile_artifact, strategies

    index = []
    for name in shapes:
        spec = spec_of(*SHAPES[name])
        seen = set()
        for vname in SMALL_VARIANTS if spec.M <= 128 else VARIANTS:
            fields = VARIANTS[vname]
            try:
                cfg = strategies.resolve(
                    None if fields is None else {"strategy": "wgmma", **fields}, spec, "sm_90a")
            except Exception as e:  # noqa: BLE001 - a variant that does not fit is reported
                print(f"{name} {vname}: skipped ({e})")
                continue
            if cfg in seen:
                continue
            seen.add(cfg)
            t = time.perf_counter()
            art = compile_artifact(spec, cfg, "sm_90a", keep_ir=False)
            art.save(directory / name / vname)
            res = art.resources[art.launches[0].entry]
            print(f"{name:18s} {vname:16s} {time.perf_counter() - t:5.2f} s  spills "
                  f"{res['spill_stores']}")
            index.append({"shape": name, "variant": vname, "config": cfg.to_dict()})
    (directory / "index.json").write_text(json.dumps(index, indent=1))


def _dequant(x, scales, rows_per_block: int):
    """fp8 x (R, K) times its block scales (R / rows_per_block, K / 128), as bf16."""
    import torch

    R, K = x.shape
    s = scales.repeat_interleave(rows_per_block, 0)[:R].repeat_interleave(128, 1)[:, :K]
    return (x.to(torch.float32) * s).to(torch.bfloat16)


def run(directory: Path, out: Path, rounds: int, shapes) -> dict:
    import torch

    import deepgen
    from deepgen.runtime import load, measure, preload

    index = json.loads((directory / "index.json").read_text())
    results = []
    for name in shapes:
        M, N, K = SHAPES[name]
        spec = spec_of(M, N, K)
        entries = [e for e in index if e["shape"] == name]
        kernels = {e["variant"]: load(directory / name / e["variant"]) for e in entries}
        preload(directory / name / "default")
        kb, nb = -(-K // 128), -(-N // 128)
        count = max(1, min(8, -(-2 * measure.L2_BYTES // (M * K + N * K))))
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
        for vname, k in kernels.items():
            impls[f"deepgen:{vname}"] = (lambda k: lambda a, w, sa_t, sb, i: k(
                a, w.t(), c, scale_a=sa_t, scale_b=sb))(k)
        impls["deepgen.gemm"] = lambda a, w, sa_t, sb, i: deepgen.gemm(
            a, w.t(), out=c, scale_a=sa_t.t(), scale_b=sb)
        a, w, sa_t, sb = sets[0]
        ka = sa_t.t().double().repeat_interleave(128, 1)[:, :K]
        kw = sb.double().repeat_interleave(128, 0)[:N].repeat_interleave(128, 1)[:, :K]
        ref = (a.double() * ka) @ (w.double() * kw).t()
        del ka, kw
        checks = {}
        for iname, fn in impls.items():
            c.fill_(float("nan"))
            r = fn(a, w, sa_t, sb, 0)
            torch.cuda.synchronize()
            checks[iname] = measure.rel_error(r if r is not None else c, ref)
        del ref
        # measure.time_ms rotates (a, b) pairs: here (the set's tensors and index, unused)
        indexed = [((*s, i), None) for i, s in enumerate(sets)]
        times = {iname: [] for iname in impls}
        for _ in range(rounds):
            for iname, fn in impls.items():
                times[iname].append(measure.time_ms(
                    (lambda fn: lambda x, _unused: fn(*x))(fn), indexed))
        tflops = {i: [spec.flops / (ms * 1e-3) / 1e12 for ms in t] for i, t in times.items()}
        med = {i: statistics.median(v) for i, v in tflops.items()}
        base = med["torch dequant+bf16 mm"]
        published = DEEPGEMM_H800.get((M, N, K))
        row = {"shape": name, "M": M, "N": N, "K": K, "median_tflops": med,
               "ratio_vs_torch_dequant": {i: v / base for i, v in med.items()},
               "ratio_vs_torch_bf16_mm": {i: v / med["torch bf16 mm"] for i, v in med.items()},
               "deepgemm_h800_published_tflops": published,
               "rounds_tflops": tflops, "rel_error": checks,
               "configs": {e["variant"]: e["config"] for e in entries}}
        results.append(row)
        best = max((i for i in med if i.startswith("deepgen:")), key=med.get)
        print(f"{name:18s} torch dequant {base:7.1f}  bf16 mm {med['torch bf16 mm']:7.1f}  "
              f"default {med['deepgen:default']:7.1f}  best {best} {med[best]:7.1f}  "
              f"DeepGEMM(H800, published) {published}", flush=True)
        del sets, pre
        torch.cuda.empty_cache()
    big = [r for r in results if r["M"] == 4096]
    geo = (math.exp(statistics.fmean(math.log(max(v for i, v in r["median_tflops"].items()
                                                     if i.startswith("deepgen:")))
                                    for r in big)) if big else None)
    doc = {"benchmark": "fp8_block_bench", "device": torch.cuda.get_device_name(),
           "git_commit": _git_commit(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "deepgen": deepgen.__version__,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "rounds": rounds, "dtype": "e4m3", "layout": "NT", "out_dtype": "bf16",
           "scales": "block: scale_a 1x128 (M-major), scale_b 128x128",
           "deepgemm_source": "DeepGEMM README, 'Normal GEMMs for dense models' (2025-02): "
                              "H800 SXM5, NVCC 12.8; published, not measured here",
           "geomean_best_deepgen_tflops_m4096": geo,
           "timing": "median of per-round medians (measure.time_ms: triton do_bench median, "
                     "inputs rotated past L2)", "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"{'shape':18s} {'impl':24s} {'TFLOP/s':>8s} {'x dequant':>9s} {'x bf16mm':>8s} "
          f"{'rel err':>9s}")
    for row in results:
        for i, v in row["median_tflops"].items():
            print(f"{row['shape']:18s} {i:24s} {v:8.1f} {row['ratio_vs_torch_dequant'][i]:9.3f} "
                  f"{row['ratio_vs_torch_bf16_mm'][i]:8.3f} {row['rel_error'][i]:9.2e}")
    print(f"geometric mean over M = 4096 (best DeepGen variant): {geo}")
    return doc


def _git_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", type=Path, metavar="DIR")
    p.add_argument("--run", type=Path, metavar="DIR")
    p.add_argument("--out", type=Path, default=Path("fp8_block_bench.json"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    a = p.parse_args(argv)
    if a.build:
        build(a.build, a.shapes)
    if a.run:
        run(a.run, a.out, a.rounds, a.shapes)
    if not (a.build or a.run):
        p.error("give --build DIR and/or --run DIR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
