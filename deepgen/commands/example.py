"""deepgen example: DeepGen's main job on built-in GEMMs.

Compiles the examples (f32 2048^3 and an odd-shaped bf16 GEMM with transposed A); on a machine
with an NVIDIA GPU it also runs each one, checks it against a float64 reference and times it
against torch.matmul in the same process. Without MLIR (a GPU host), `--bundle DIR` runs
examples compiled elsewhere with `deepgen example --save DIR`.
"""
from __future__ import annotations

import argparse

EXAMPLES = [
    ("f32 2048^3", dict(M=2048, N=2048, K=2048, dtype="f32", layout="NN")),
    ("bf16 1000x1234x777 TN", dict(M=1000, N=1234, K=777, dtype="bf16", layout="TN")),
]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("example", help="compile (and on a GPU run, check, time) examples",
                              description=__doc__)
    p.add_argument("--save", default=None, help="also save each kernel as a bundle under DIR")
    p.add_argument("--bundle", default=None,
                   help="run bundles saved by --save instead of compiling (no MLIR needed)")
    return p


def _gpu_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def run(args) -> int:
    from pathlib import Path

    from deepgen.spec import GemmSpec

    kernels = []
    for i, (title, fields) in enumerate(EXAMPLES):
        spec = GemmSpec(**fields)
        if args.bundle:
            from deepgen.runtime.kernel import load
            kernel = load(Path(args.bundle) / f"example{i}")
        else:
            from deepgen import compile_gemm
            kernel = compile_gemm(**fields)
            if args.save:
                kernel.save(Path(args.save) / f"example{i}")
        res = kernel.artifact.resources.get(kernel.artifact.launches[0].entry, {})  # main kernel
        print(f"[{title}] compiled in {kernel.artifact.compile_seconds:.2f} s: "
              f"{len(kernel.artifact.launches)} launch(es), {res.get('registers')} registers, "
              f"{res.get('spill_stores', 0)} B spilled, {kernel.shared_bytes} B shared memory; "
              f"config BM={kernel.config['BM']} BN={kernel.config['BN']} BK={kernel.config['BK']} "
              f"split_k={kernel.config['split_k']}")
        kernels.append((title, spec, kernel))
    if not _gpu_available():
        print("no NVIDIA GPU here: compiled only. On a GPU host, run bundles saved with "
              "`deepgen example --save DIR` through `deepgen example --bundle DIR`.")
        return 0
    return _run_on_gpu(kernels)


def _run_on_gpu(kernels) -> int:
    import torch

    from deepgen.runtime import measure

    failed = 0
    rows = []
    for title, spec, kernel in kernels:
        err = measure.check(kernel, spec)
        ok = err <= measure.tolerance(spec)
        failed += not ok
        sets = measure.input_sets(spec)
        c = torch.empty_like(measure.operand(spec, "C"))
        ms = measure.time_ms(lambda a, b: kernel(a, b, c), sets)
        ms_torch = measure.time_ms(measure.torch_baseline(spec), sets)
        rows.append((title, err, ok, measure.tflops(spec, ms), measure.tflops(spec, ms_torch)))
    print(f"\n{'example':24s} {'rel.err':>9s} {'check':>5s} {'DeepGen':>9s} {'torch':>9s} {'ratio':>6s}"
          f"   (TFLOP/s, {torch.cuda.get_device_name()})")
    for title, err, ok, t, tt in rows:
        print(f"{title:24s} {err:9.1e} {'ok' if ok else 'FAIL':>5s} {t:9.1f} {tt:9.1f} {t / tt:6.2f}")
    return 1 if failed else 0
