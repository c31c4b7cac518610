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

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

SHAPES = {  # name: (M, N, K[, scale mode]); per-tensor scales unless named
    "4096^3": (4096, 4096, 4096),
    "8192^3": (8192, 8192, 8192),
    "2048x4096x14336": (2048, 4096, 14336),
    "16x4096x4096": (16, 4096, 4096),
    "4096^3-rowwise": (4096, 4096, 4096, "rowwise"),
}
COOP = {"BM": 128, "BN": 256, "consumers": 2, "mode": "cooperative", "stages": 4,
        "persistent": False}
VARIANTS = {  # name: wgmma fields over the default config (None: the default itself)
    "default": None,
    "pingpong-128x128-s7": {"mode": "pingpong", "BM": 128, "BN": 128, "consumers": 2,
                            "persistent": True, "stages": 7},
    "coop-128x256-s4": COOP,
    "coop-128x256-s4-persistent": {**COOP, "persistent": True},
    "coop-256x128-s4": {**COOP, "BM": 256, "BN": 128},
}
SMALL_VARIANTS = ("default",)  # at M = 16: the swap_ab default only


def spec_of(M, N, K, scale="tensor"):
    from deepgen.spec import GemmSpec

    return GemmSpec(M=M, N=N, K=K, dtype="e4m3", out_dtype="bf16", layout="NT", scale=scale)


def build(directory: Path, shapes) -> None:
    from deepgen.compiler import compile_artifact, strategies

    index = []
    for name in shapes:
        spec = spec_of(*SHAPES[name])
        variants = SMALL_VARIANTS if spec.M < 128 or spec.scale == "rowwise" else VARIANTS
        seen = set()
        for vname in variants:
            fields = VARIANTS[vname]
            try:
                cfg = strategies.resolve(
                    None if fields is None else {"strategy": "wgmma", **fields}, spec, "sm_90a")
            except Exception as e:  # noqa: BLE001 - a variant that does not fit is reported
                print(f"{name} {vname}: skipped ({e})")
                continue
            if cfg in seen:  # the same kernel as an earlier variant (e.g. the default)
                continue
            seen.add(cfg)
            t = time.perf_counter()
            art = compile_artifact(spec, cfg, "sm_90a", keep_ir=False)
            art.save(directory / name / vname)
            res = art.resources[art.launches[0].entry]
            print(f"{name:18s} {vname:28s} {time.perf_counter() - t:5.2f} s  regs "
                  f"{res['registers']} spills {res['spill_stores']}")
            index.append({"shape": name, "variant": vname, "config": cfg.to_dict()})
    (directory / "index.json").write_text(json.dumps(index, indent=1))


def run(directory: Path, out: Path, rounds: int, shapes) -> dict:
    import torch

    import deepgen
    from deepgen.runtime import load, measure, preload

    index = json.loads((directory / "index.json").read_text())
    results = []
    for name in shapes:
        M, N, K = SHAPES[name][:3]
        spec = spec_of(*SHAPES[name])
        entries = [e for e in index if e["shape"] == name]
        kernels = {e["variant"]: load(directory / name / e["variant"]) for e in entries}
        preload(directory / name / "default")
        per_set = (M * K + N * K)
        count = max(1, min(8, -(-2 * measure.L2_BYTES // per_set)))
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
        for vname, k in kernels.items():
            impls[f"deepgen:{vname}"] = (lambda k: lambda a, b: k(a, b, c, scale_a=sa1,
                                                                 scale_b=sb1))(k)
        impls["deepgen.gemm"] = lambda a, b: deepgen.gemm(a, b, out=c, scale_a=sa, scale_b=sb)
        # correctness once: float64 of the dequantized inputs, C poisoned
        a, b = sets[0]
        ref = (a.double() * sa.double()) @ (b.double() * sb.double())
        checks = {}
        for iname, fn in impls.items():
            c.fill_(float("nan"))
            r = fn(a, b)
            torch.cuda.synchronize()
            checks[iname] = measure.rel_error(r if r is not None else c, ref)
        del ref
        times = {iname: [] for iname in impls}
        for _ in range(rounds):
            for iname, fn in impls.items():
                times[iname].append(measure.time_ms(fn, sets))
        tflops = {i: [spec.flops / (ms * 1e-3) / 1e12 for ms in t] for i, t in times.items()}
        med = {i: statistics.median(v) for i, v in tflops.items()}
        base = med["torch._scaled_mm"]
        row = {"shape": name, "M": M, "N": N, "K": K, "median_tflops": med,
               "ratio_vs_torch": {i: v / base for i, v in med.items()},
               "rounds_tflops": tflops, "rel_error": checks,
               "configs": {e["variant"]: e["config"] for e in entries}}
        results.append(row)
        best = max((i for i in med if i.startswith("deepgen:")), key=med.get)
        print(f"{name:18s} torch {base:7.1f}  default {med['deepgen:default']:7.1f} "
              f"({med['deepgen:default'] / base:.3f}x)  best {best} {med[best]:7.1f} "
              f"({med[best] / base:.3f}x)  deepgen.gemm {med['deepgen.gemm']:7.1f}", flush=True)
        del sets
        torch.cuda.empty_cache()
    doc = {"benchmark": "fp8_bench", "device": torch.cuda.get_device_name(),
           "git_commit": _git_commit(),
           "torch": torch.__version__, "cuda": torch.version.cuda,
           "deepgen": deepgen.__version__,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "rounds": rounds, "dtype": "e4m3", "layout": "NT",
           "scales": "per-tensor unless the shape says rowwise",
           "out_dtype": "bf16", "timing": "median of per-round medians (measure.time_ms: "
           "triton do_bench median, inputs rotated past L2)", "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"{'shape':18s} {'impl':34s} {'TFLOP/s':>8s} {'x torch':>8s} {'rel err':>9s}")
    for row in results:
        for i, v in row["median_tflops"].items():
            print(f"{row['shape']:18s} {i:34s} {v:8.1f} {row['ratio_vs_torch'][i]:8.3f} "
                  f"{row['rel_error'][i]:9.2e}")
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
    p.add_argument("--out", type=Path, default=Path("fp8_bench.json"))
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
