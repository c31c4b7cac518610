"""GPU correctness sweep of the SIMT path: random shapes (M, N or K in {1, 7, 33, 127, 1000,
4097}), every layout, every dtype (f32, f16, bf16, tf32), batch > 1, split-K > 1, the
config options and the epilogue chain (bias per row/column, activations, output casts).

    python benchmarks/correctness_sweep.py --compile-only BUNDLE_DIR   # CPU machine (MLIR)
    python benchmarks/correctness_sweep.py --run BUNDLE_DIR [--out r.json]  # GPU host

Every result is checked against a float64 reference with DESIGN.md's tolerances, on random
data, with C poisoned (NaN) before the launch, so an unwritten element fails.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_suite import add_bundle_modes  # noqa: E402


SHAPES = [(1, 1, 1), (7, 33, 127), (33, 127, 1000), (127, 1000, 33), (1000, 7, 4097),
          (4097, 33, 7), (1, 4097, 1000), (256, 256, 256), (1000, 1000, 127)]


def cases():
    """(name, spec dict, config overrides or None, alpha, beta)."""
    out = []
    for dtype in ("f32", "f16", "bf16", "tf32"):
        for layout in ("NN", "NT", "TN", "TT"):
            for (m, n, k) in SHAPES if dtype != "tf32" else SHAPES[1:6]:
                fields = dict(M=m, N=n, K=k, dtype="f32", allow_tf32=True) if dtype == "tf32" \
                    else dict(M=m, N=n, K=k, dtype=dtype)
                out.append((f"{dtype}-{layout}-{m}x{n}x{k}", dict(fields, layout=layout), None,
                            1.0, 0.0))
    base = dict(M=300, N=260, K=520, dtype="f32", layout="NN")
    out += [
        ("batch4-NT", dict(M=129, N=64, K=77, batch=4, dtype="f32", layout="NT"), None, 1.0, 0.0),
        ("batch3-bf16-TT", dict(M=64, N=200, K=96, batch=3, dtype="bf16", layout="TT"), None, 1.0, 0.0),
        ("alpha-beta", base, None, 1.5, -0.5),
        ("alpha-beta-f16out", dict(base, dtype="f16"), None, 0.5, 2.0),
        ("splitk4", base, {"split_k": 4}, 1.0, 0.0),
        ("splitk3-beta-batch2", dict(base, batch=2, layout="TN"), {"split_k": 3}, 2.0, 1.0),
        ("single-stage", base, {"shared_stages": 1}, 1.0, 0.0),
        ("reg-prefetch", base, {"register_prefetch": True}, 1.0, 0.0),
        ("kk-unroll2", base, {"kk_unroll": 2}, 1.0, 0.0),
        ("swizzle4", dict(base, M=1024, N=1024), {"block_swizzle": 4}, 1.0, 0.0),
        ("strided-fetch", base, {"fetch_contiguous": False}, 1.0, 0.0),
        ("smem-pad4", base, {"smem_pad": 4}, 1.0, 0.0),
        ("bf16-out-f32", dict(base, dtype="bf16", out_dtype="f32"), None, 1.0, 0.0),
    ]
    # Tensor-core options: swizzled shared tiles, C through shared memory, fragments
    # prefetched across K tiles (where the registers allow: not with the guards of large
    # partial tiles); partial tiles, narrow vectors (N = 33), every layout.
    tc = {"smem_swizzle": True, "smem_pad": 0, "epilogue_smem": True}
    for i, layout in enumerate(("NN", "NT", "TN", "TT")):
        dtype = ("bf16", "f16")[i % 2]
        for (m, n, k), extra in (((127, 1000, 1000), dict(store_width=8, register_prefetch=True)),
                                 ((200, 136, 72), dict(store_width=8)),
                                 ((33, 33, 33), dict(store_width=1, register_prefetch=True))):
            out.append((f"tc-opts-{dtype}-{layout}-{m}x{n}x{k}",
                        dict(M=m, N=n, K=k, dtype=dtype, layout=layout), dict(tc, **extra),
                        1.0, 0.0))
    big = dict(tc, BM=128, BN=256, warps_m=2, warps_n=4, BK=64, shared_stages=4, store_width=8,
               register_prefetch=True)
    out += [
        ("tc-opts-128x256x64-beta", dict(M=512, N=768, K=520, dtype="bf16"), big, 1.5, -0.5),
        ("tc-opts-splitk3-beta-TN", dict(M=300, N=264, K=1040, dtype="bf16", layout="TN"),
         dict(tc, split_k=3, store_width=8, register_prefetch=False), 2.0, 1.0),
        ("tc-opts-batch3-TT-f32out", dict(M=64, N=200, K=96, batch=3, dtype="f16", out_dtype="f32",
                                          layout="TT"), dict(tc, store_width=4), 1.0, 0.5),
    ]
    out += epilogue_cases(tc)
    return out


def _epi(bias=None, activation=None, bias_dtype=None) -> dict:
    from deepgen.epilogue import EpilogueSpec
    return EpilogueSpec.of(bias=bias, activation=activation, bias_dtype=bias_dtype).to_dict()


def epilogue_cases(tc: dict) -> list:
    """The epilogue chain (deepgen.epilogue): bias per row and per column, each activation,
    output casts, with alpha/beta and split-K; SIMT f32 and tensor-core bf16/f16 kernels,
    partial tiles. The sweep passes a random bias and checks against the chain's reference."""
    f32 = dict(M=300, N=260, K=520, dtype="f32", layout="NN")
    return [
        # SIMT f32 (the default heuristic splits K for these), partial tiles
        ("epi-f32-biascol-relu", dict(f32, epilogue=_epi("col", "relu")), {"split_k": 1},
         1.5, -0.5),
        ("epi-f32-biasrow-gelu-beta", dict(f32, layout="TN", epilogue=_epi("row", "gelu_tanh")),
         {"split_k": 1}, 0.5, 1.0),
        ("epi-f32-silu-nobias", dict(f32, M=127, N=33, K=1000, epilogue=_epi(None, "silu")),
         None, 1.0, 0.0),
        ("epi-f32-biascol-silu-splitk3-beta", dict(f32, epilogue=_epi("col", "silu", "bf16")),
         {"split_k": 3}, 2.0, 1.0),
        ("epi-f32-biasrow-gelu-splitk2-N33", dict(f32, N=33, epilogue=_epi("row", "gelu_tanh")),
         {"split_k": 2}, 1.0, 0.0),
        ("epi-f32-biascol-f16out", dict(f32, out_dtype="f16", epilogue=_epi("col", None)),
         {"split_k": 1}, 1.0, 0.5),
        ("epi-batch3-biascol-gelu-NT", dict(M=129, N=64, K=77, batch=3, dtype="f32", layout="NT",
                                            epilogue=_epi("col", "gelu_tanh")), None, 1.0, 0.0),
        ("epi-tf32-biasrow-relu", dict(f32, allow_tf32=True, epilogue=_epi("row", "relu")),
         None, 1.0, 0.0),
        # tensor cores (mma.sync): default tiles, the staged (epilogue_smem) store, split-K
        ("epi-bf16-biascol-gelu-f32out", dict(M=200, N=136, K=72, dtype="bf16", out_dtype="f32",
                                              epilogue=_epi("col", "gelu_tanh", "f32")),
         None, 1.0, 0.0),
        ("epi-f16-biasrow-silu-beta", dict(M=127, N=1000, K=1000, dtype="f16", layout="NT",
                                           epilogue=_epi("row", "silu")), None, 1.5, -0.5),
        ("epi-bf16-biascol-relu-staged-TT", dict(M=200, N=136, K=72, dtype="bf16", layout="TT",
                                                 epilogue=_epi("col", "relu")),
         dict(tc, store_width=8), 1.0, 0.0),
        ("epi-f16-biasrow-gelu-staged-bf16out", dict(M=33, N=40, K=33, dtype="f16",
                                                     out_dtype="bf16",
                                                     epilogue=_epi("row", "gelu_tanh", "f32")),
         dict(tc, store_width=8), 1.0, 0.0),
        ("epi-bf16-biascol-silu-splitk3-beta-TN", dict(M=300, N=264, K=1040, dtype="bf16",
                                                       layout="TN",
                                                       epilogue=_epi("col", "silu")),
         dict(tc, split_k=3, store_width=8, register_prefetch=False), 2.0, 1.0),
        ("epi-f16-biasrow-relu-splitk2-f32out", dict(M=300, N=260, K=1040, dtype="f16",
                                                     out_dtype="f32",
                                                     epilogue=_epi("row", "relu", "f16")),
         {"split_k": 2}, 1.0, 0.5),
    ]


def compile_all(bundle: Path) -> None:
    from deepgen.compiler import compile_artifact, default_config
    from deepgen.spec import GemmSpec

    bundle.mkdir(parents=True, exist_ok=True)
    index = []
    for name, spec_d, overrides, alpha, beta in cases():
        spec = GemmSpec(**spec_d)
        cfg = default_config(spec)
        if overrides:
            cfg = cfg.replace(**overrides)
        t = time.perf_counter()
        art = compile_artifact(spec, cfg, keep_ir=False)
        art.save(bundle / name)
        index.append({"name": name, "alpha": alpha, "beta": beta})
        print(f"{name:32s} {time.perf_counter() - t:5.2f} s  regs "
              f"{[r.get('registers') for r in art.resources.values()]}", flush=True)
    (bundle / "index.json").write_text(json.dumps(index, indent=1))


def run_all(bundle: Path, out: Path | None) -> int:
    import torch
    from deepgen.runtime import load, measure

    torch.manual_seed(0)
    results, failures = [], 0
    for entry in json.loads((bundle / "index.json").read_text()):
        k = load(bundle / entry["name"])
        s = k.spec
        try:  # random data, C poisoned when beta == 0; NaN/inf anywhere gives rel_err inf
            err = measure.check(k, s, alpha=entry["alpha"], beta=entry["beta"])
            ok = err <= measure.tolerance(s)
            msg = f"rel_err {err:.2e}"
        except Exception as e:  # report, keep going
            ok, err, msg = False, None, f"{type(e).__name__}: {e}"
        failures += not ok
        results.append({"name": entry["name"], "ok": ok, "rel_err": err,
                        "spec": s.to_dict(), "config": k.config})
        print(f"{'PASS' if ok else 'FAIL'} {entry['name']:32s} {msg}", flush=True)
    print(f"{len(results) - failures}/{len(results)} passed")
    if out:
        out.write_text(json.dumps({"device": torch.cuda.get_device_name(),
                                   "torch": torch.__version__,
                                   "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                   "results": results}, indent=1))
    return 1 if failures else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_modes(p, required=True)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.compile_only:
        compile_all(a.compile_only)
        return 0
    return run_all(a.run, a.out)


if __name__ == "__main__":
    sys.exit(main())
