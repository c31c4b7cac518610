"""int8 w8a8 GEMMs (int8 inputs, layout NT, rowwise scales: per token x per channel, bf16 out):
DeepGen's wgmma kernels (s32 accumulation, scales in the epilogue: one kernel) against torch's
w8a8 path, torch._int_mm (cuBLASLt int8, int32 out) followed by the scaling in torch
(`(torch._int_mm(a, b) * scale_a * scale_b).to(bfloat16)`: the issue's reference, timed end to
end), in the same process, interleaved rounds.

    python benchmarks/int8_bench.py --build DIR [--shapes ...]        (CPU: compile kernels)
    python benchmarks/int8_bench.py --run DIR --out results/x.json    (GPU: time them)

--build compiles the default config and a few alternatives (VARIANTS) per shape into
DIR/<shape>/<variant>; --run loads them (no MLIR needed), checks every implementation once
against float64 of the dequantized inputs (a * scale_a) @ (b * scale_b) with C poisoned, then
times them in `--rounds` interleaved rounds (each round times every implementation once:
measure.time_ms, triton's do_bench median, inputs rotated past the L2), reporting the median
over rounds in TFLOP/s (TOPS), the per-round figures and the ratios to "torch._int_mm+scale"
(the reference) and to torch._int_mm alone (int32 out, no scaling: a bound torch's path does
not reach). deepgen.gemm (the API door, host cost included) is timed for the default.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

SHAPES = {  # name: (M, N, K, scale mode)
    "4096^3": (4096, 4096, 4096, "rowwise"),
    "4096^3-tensor": (4096, 4096, 4096, "tensor"),
    "8192^3": (8192, 8192, 8192, "rowwise"),
    "2048x4096x14336": (2048, 4096, 14336, "rowwise"),
    "32x4096x4096": (32, 4096, 4096, "rowwise"),  # torch._int_mm needs M > 16
}
COOP = {"BM": 128, "BN": 256, "consumers": 2, "mode": "cooperative", "stages": 4,
        "persistent": False}
VARIANTS = {  # name: wgmma fields over the default config (None: the default itself)
    "default": None,
    "pingpong-128x128-s7": {"mode": "pingpong", "BM": 128, "BN": 128, "consumers": 2,
                            "persistent": True, "stages": 7},
    "coop-128x256-s4": COOP,
    "coop-128x256-s4-persistent": {**COOP, "persistent": True},
}
SMALL_VARIANTS = ("default",)
REFERENCE = "torch._int_mm+scale"


def spec_of(M, N, K, scale="rowwise"):
    from deepgen.spec import GemmSpec

    return GemmSpec(M=M, N=N, K=K, dtype="int8", out_dtype="bf16", layout="NT", scale=scale)


def build(directory: Path, shapes) -> None:
    from deepgen.compiler import compile_artifact, strategies

    index = []
    for name in shapes:
        spec = spec_of(*SHAPES[name])
        variants = SMALL_VARIANTS if spec.M < 128 else VARIANTS
        seen = set()
        for vname in variants:
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
        M, N, K, scale = SHAPES[name]
        spec = spec_of(*SHAPES[name])
        entries = [e for e in index if e["shape"] == name]
        kernels = {e["variant"]: load(directory / name / e["variant"]) for e in entries}
        preload(directory / name / "default")
        per_set = M * K + N * K
        count = max(1, min(8, -(-2 * measure.L2_BYTES // per_set)))
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
        for vname, k in kernels.items():
            impls[f"deepgen:{vname}"] = (lambda k: lambda a, b: k(a, b, c, scale_a=sa1,
                                                                 scale_b=sb1))(k)
        impls["deepgen.gemm"] = lambda a, b: deepgen.gemm(a, b, out=c, scale_a=sa, scale_b=sb)
        a, b = sets[0]
        ref = (a.double() * sa.double()) @ (b.double() * sb.double())
        checks = {}
        for iname, fn in impls.items():
            c.fill_(float("nan"))
            r = fn(a, b)
            torch.cuda.synchronize()
            r = r if r is not None else c
            if r.dtype == torch.int32:  # the unscaled product: check it scaled here
                r = r.double() * sa.double() * sb.double()
            checks[iname] = measure.rel_error(r, ref)
        del ref
        times = {iname: [] for iname in impls}
        for _ in range(rounds):
            for iname, fn in impls.items():
                times[iname].append(measure.time_ms(fn, sets))
        tops = {i: [spec.flops / (ms * 1e-3) / 1e12 for ms in t] for i, t in times.items()}
        med = {i: statistics.median(v) for i, v in tops.items()}
        base = med[REFERENCE]
        raw = med["torch._int_mm (int32 out, unscaled)"]
        row = {"shape": name, "M": M, "N": N, "K": K, "scale": scale, "median_tops": med,
               "ratio_vs_reference": {i: v / base for i, v in med.items()},
               "ratio_vs_int_mm_alone": {i: v / raw for i, v in med.items()},
               "rounds_tops": tops, "rel_error": checks,
               "configs": {e["variant"]: e["config"] for e in entries}}
        results.append(row)
        best = max((i for i in med if i.startswith("deepgen:")), key=med.get)
        print(f"{name:18s} torch+scale {base:7.1f}  int_mm {raw:7.1f}  default "
              f"{med['deepgen:default']:7.1f} ({med['deepgen:default'] / base:.3f}x)  best "
              f"{best} {med[best]:7.1f} ({med[best] / base:.3f}x)", flush=True)
        del sets
        torch.cuda.empty_cache()
    doc = {"benchmark": "int8_bench", "device": torch.cuda.get_device_name(),
           "git_commit": _git_commit(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "deepgen": deepgen.__version__,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "rounds": rounds, "dtype": "int8", "layout": "NT", "out_dtype": "bf16",
           "reference": f"{REFERENCE}: (torch._int_mm(a, w.t()) * scale_a * scale_b)"
                        f".to(bfloat16), end to end",
           "timing": "median of per-round medians (measure.time_ms: triton do_bench median, "
                     "inputs rotated past L2); TOPS = 2MNK / time", "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"{'shape':18s} {'impl':38s} {'TOPS':>8s} {'x ref':>7s} {'x int_mm':>8s} "
          f"{'rel err':>9s}")
    for row in results:
        for i, v in row["median_tops"].items():
            print(f"{row['shape']:18s} {i:38s} {v:8.1f} {row['ratio_vs_reference'][i]:7.3f} "
                  f"{row['ratio_vs_int_mm_alone'][i]:8.3f} {row['rel_error'][i]:9.2e}")
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
    p.add_argument("--out", type=Path, default=Path("int8_bench.json"))
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
