"""From a model to its GEMMs and back: profile a Llama-style model, time DeepGen against torch on
its GEMM shapes, build the tuned database from those times, optimize the model, time it end
to end against torch. One run, one GPU; torch timed in the same run, interleaved rounds.

    python benchmarks/model_e2e.py --compile DIR [--size 8b]   (CPU, MLIR: the kernels,
                                                                default configs, a bundle)
    python benchmarks/model_e2e.py --bundle DIR [--size 8b] --out results.json [--png gemms.png]

The model (random weights, bf16, built in plain torch, no download; widths from SIZES):
embedding, `layers` decoder layers (RMSNorm, q/k/v/o projections hidden x hidden, SDPA
attention with `heads` heads, a SiLU-gated MLP hidden -> inter -> hidden), RMSNorm and an
lm_head to `vocab` logits; no biases. Steps: a prefill of batch x seq tokens and a
decode-shaped step of batch x 1 token (no KV cache: the GEMMs have the decode's M = batch).

1. deepgen.profile of the torch model at both steps (op table, GEMMs by shape);
2. per GEMM shape of the profiles: DeepGen's kernel (the bundle's, default config: this is not
   a tuned result) checked against float64 (C poisoned), then DeepGen and torch.matmul timed
   with deepgen.runtime.measure.time_ms (L2-cold input sets, as `deepgen tune` times them),
   alternating, ROUNDS rounds, medians;
3. those times as a tuned database (ms and baseline_ms per shape, this device), then
   deepgen.optimize(model): DeepGen only where it measured faster;
4. logits of the optimized and the torch model against a float64 copy of the model;
5. end to end, torch vs optimized, per step: CUDA events around CALLS forwards, ROUNDS
   interleaved rounds, medians; and what the GEMMs' gain predicts (GEMM share x speed-up).
Writes one JSON (device, versions, date, every figure, both profiles) and prints a table last.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# --size: "small" (examples/llama.py's widths), "8b" (Llama-3-8B's widths: hidden 4096, MLP
# 14336, vocab 128256; every projection hidden x hidden, as in the example), 2 layers each
SIZES = {"small": {"hidden": 2048, "heads": 16, "inter": 5632, "layers": 2, "vocab": 32000,
                   "batch": 4, "seq": 512},
         "8b": {"hidden": 4096, "heads": 32, "inter": 14336, "layers": 2, "vocab": 128256,
                "batch": 4, "seq": 512}}


def shapes(size: dict) -> list[tuple[int, int, int]]:
    """(M, N, K) of every linear layer at both steps (layout NT: weights stored (N, K))."""
    h, i, v = size["hidden"], size["inter"], size["vocab"]
    out = []
    for M in (size["batch"] * size["seq"], size["batch"]):
        out += [(M, h, h), (M, i, h), (M, h, i), (M, v, h)]
    return out


def spec_of(M, N, K):
    from deepgen.spec import GemmSpec

    return GemmSpec(M=M, N=N, K=K, dtype="bf16", layout="NT")


def compile_bundle(d: Path, size: dict) -> int:
    from deepgen.compiler import compile_artifact

    for M, N, K in shapes(size):
        t0 = time.time()
        art = compile_artifact(spec_of(M, N, K), None, "sm_90a")
        art.save(d / f"bf16-{M}x{N}x{K}-NT")
        print(f"{M}x{N}x{K}: {art.config.get('strategy')} {time.time() - t0:.1f} s", flush=True)
    return 0


@functools.cache
def example():
    """examples/llama.py (its model and its timer), loaded from its path."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "llama.py"
    spec = importlib.util.spec_from_file_location("deepgen_example_llama", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model(torch, size: dict):
    """examples/llama.py's Llama-style model at `size`, random weights (seeded; 2-D
    parameters normal with std 0.02)."""
    torch.manual_seed(0)
    model = example().Llama(size["hidden"], size["layers"], size["heads"], size["inter"],
                            size["vocab"])
    for p in model.parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.02)
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--compile", type=Path, metavar="DIR", help="compile the kernels (CPU)")
    p.add_argument("--bundle", type=Path, help="the kernels (from --compile)")
    p.add_argument("--out", type=Path, default=Path("model_e2e.json"))
    p.add_argument("--png", type=Path, help="the prefill profile's GEMM chart")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--size", choices=sorted(SIZES), default="small",
                   help="the model's widths (the bundle must be compiled for the same)")
    args = p.parse_args(argv)
    size = SIZES[args.size]
    if args.compile:
        return compile_bundle(args.compile, size)

    import torch
    from deepgen.runtime import cache, measure

    import deepgen
    from deepgen import api, profiler, routing

    if not torch.cuda.is_available():
        print("model_e2e: needs an NVIDIA GPU (none found)", file=sys.stderr)
        return 2
    os.environ["DEEPGEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="deepgen-e2e-")
    for k in sorted(args.bundle.iterdir()):
        cache.preload(k)
    device = torch.cuda.get_device_name(0)
    target = api.target_of(0)
    model = build_model(torch, size).cuda().to(torch.bfloat16).eval()
    batch, seq, vocab = size["batch"], size["seq"], size["vocab"]
    steps = {"prefill": torch.randint(0, vocab, (batch, seq), device="cuda"),
             "decode": torch.randint(0, vocab, (batch, 1), device="cuda")}
    result = {"benchmark": "model_e2e", "date": datetime.datetime.now().isoformat(),
              "device": device, "target": target, "torch": torch.__version__,
              "cuda": torch.version.cuda, "python": platform.python_version(),
              "deepgen": deepgen.__version__, "model": {
                  **size, "name": args.size, "dtype": "bf16"},
              "rounds": args.rounds,
              "calls": args.calls, "note": "DeepGen kernels use default configs (not tuned)"}

    # 1. profiles of the torch model
    profiles = {}
    with torch.no_grad():
        for step, tokens in steps.items():
            profiles[step] = profiler.profile(model, tokens, warmup=2, repeat=3, quiet=True,
                                              name=f"llama-like {step}")
            print(profiler.format_report(profiles[step], top=12), "\n", flush=True)
    if args.png:
        profiler.plot(profiles["prefill"], args.png)
    result["profiles"] = profiles

    # 2. DeepGen vs torch per GEMM shape, interleaved rounds
    per_shape = []
    for M, N, K in shapes(size):
        spec = spec_of(M, N, K)
        kernel = api.kernel_for(spec, None, target)
        err = measure.check(kernel, spec)
        sets = measure.input_sets(spec)
        out = measure.operand(spec, "C")
        dg_run = lambda a, b, k=kernel, c=out: k(a, b, c)
        th_run = measure.torch_baseline(spec)
        dg, th = [], []
        for _ in range(args.rounds):
            dg.append(measure.time_ms(dg_run, sets))
            th.append(measure.time_ms(th_run, sets))
        row = {"M": M, "N": N, "K": K, "strategy": kernel.config.get("strategy"),
               "rel_err": err, "tolerance": measure.tolerance(spec), "deepgen_ms": dg,
               "torch_ms": th, "deepgen_median_ms": statistics.median(dg),
               "torch_median_ms": statistics.median(th)}
        row["speedup"] = row["torch_median_ms"] / row["deepgen_median_ms"]
        per_shape.append(row)
        sets = out = None  # freed before the next shape's
        print(f"{M}x{N}x{K}: err {err:.2e} deepgen {row['deepgen_median_ms']:.4f} ms torch "
              f"{row['torch_median_ms']:.4f} ms ({row['speedup']:.3f}x)", flush=True)
    result["gemms"] = per_shape

    # 3. the tuned database from those times; optimize
    entries = [{"spec": spec_of(r["M"], r["N"], r["K"]).to_dict(), "target": target,
                "config": kernel_config(api, spec_of(r["M"], r["N"], r["K"]), target),
                "ms": r["deepgen_median_ms"], "baseline_ms": r["torch_median_ms"],
                "device": device, "source": "benchmarks/model_e2e.py"} for r in per_shape]
    from deepgen.runtime import tuned

    tuned.tuned_path().write_text(json.dumps({"format": "deepgen-tuned/1",
                                              "entries": entries}))
    optimized = deepgen.optimize(copy.deepcopy(model))
    routing.reset()
    api._by_spec.clear()  # from here on, _by_spec holds what the optimized model runs
    api._by_call.clear()

    # 4. logits against float64
    ref_model = copy.deepcopy(model).double()
    checks = {}
    with torch.no_grad():
        for step, tokens in steps.items():
            ref = ref_model(tokens)
            rel = lambda x, r=ref: float((x.double() - r).norm() / r.norm())
            checks[step] = {"torch_rel_err": rel(model(tokens)),
                            "optimized_rel_err": rel(optimized(tokens))}
    del ref_model
    routed = sorted({(k.spec.M, k.spec.N, k.spec.K) for k in api._by_spec.values()
                     if k is not api._NO_KERNEL})
    result["routed"] = [list(s) for s in routed]
    result["logits"] = checks
    print("routed to DeepGen:", routed, "\nlogits:", checks, flush=True)

    # 5. end to end, interleaved
    e2e = {}
    with torch.no_grad():
        for step, tokens in steps.items():
            for m in (model, optimized):
                for _ in range(3):
                    m(tokens)
            t, o = [], []
            for _ in range(args.rounds):
                t.append(example().time_ms(lambda x=tokens: model(x), True, args.calls))
                o.append(example().time_ms(lambda x=tokens: optimized(x), True, args.calls))
            prof = profiles[step]
            share = prof["gemm_percent"] / 100
            times = {(g["M"], g["N"], g["K"]): g for g in per_shape}
            gemm_t = sum(g["total_us"] for g in prof["gemms"])
            routed_gain = 0.0
            for g in prof["gemms"]:
                r = times.get((g["M"], g["N"], g["K"]))
                if r and (g["M"], g["N"], g["K"]) in routed:
                    routed_gain += g["total_us"] * (1 - 1 / r["speedup"])
            predicted = 1 / (1 - share * routed_gain / gemm_t) if gemm_t else 1.0
            e2e[step] = {"torch_ms": t, "optimized_ms": o, "torch_median_ms":
                         statistics.median(t), "optimized_median_ms": statistics.median(o),
                         "gemm_share": share, "predicted_speedup": predicted}
            e2e[step]["speedup"] = e2e[step]["torch_median_ms"] / e2e[step][
                "optimized_median_ms"]
    result["end_to_end"] = e2e
    with torch.no_grad():
        result["optimized_profile_prefill"] = profiler.profile(
            optimized, steps["prefill"], warmup=1, repeat=2, quiet=True,
            name="llama-like prefill, optimized")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, args.out)

    print(f"\n{device} ({target}), torch {torch.__version__}; medians of {args.rounds} "
          f"interleaved rounds")
    print(f"{'M x N x K':>20} {'strategy':>9} {'rel_err':>9} {'DeepGen ms':>11} "
          f"{'torch ms':>9} {'speed-up':>8}")
    for r in per_shape:
        print(f"{r['M']:>6}x{r['N']:>6}x{r['K']:>6} {r['strategy']!s:>9} "
              f"{r['rel_err']:9.2e} {r['deepgen_median_ms']:11.4f} {r['torch_median_ms']:9.4f} "
              f"{r['speedup']:8.3f}")
    for step, e in e2e.items():
        print(f"{step}: torch {e['torch_median_ms']:.3f} ms, optimized "
              f"{e['optimized_median_ms']:.3f} ms ({e['speedup']:.3f}x; predicted "
              f"{e['predicted_speedup']:.3f}x from GEMM share {100 * e['gemm_share']:.1f}%); "
              f"logits rel err torch {checks[step]['torch_rel_err']:.2e} optimized "
              f"{checks[step]['optimized_rel_err']:.2e}")
    return 0


def kernel_config(api, spec, target) -> dict:
    return dict(api.kernel_for(spec, None, target).config)


if __name__ == "__main__":
    sys.exit(main())
