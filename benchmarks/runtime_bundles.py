"""Compile the kernels the runtime's GPU checks use, as bundles (on a machine with MLIR).

    python benchmarks/runtime_bundles.py --out .carry/runtime_bundles

writes one bundle directory per kernel: `overhead_16x16x16_f32` for
benchmarks/launch_overhead.py, and a few more (layouts, batch, low precision, split-K with a
workspace) that tests/gpu/test_runtime_gpu.py runs when DEEPGEN_GPU_BUNDLES names the folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepgen.spec import GemmSpec

BUNDLES = {  # name -> (spec, config overrides of the default heuristic)
    "overhead_16x16x16_f32": (GemmSpec(M=16, N=16, K=16), None),
    "f32_NN_256x192x128": (GemmSpec(M=256, N=192, K=128), None),
    "f32_TN_b3_100x70x36": (GemmSpec(M=100, N=70, K=36, batch=3, layout="TN"), None),
    "f16_NT_128x128x64": (GemmSpec(M=128, N=128, K=64, dtype="f16", layout="NT"), None),
    "bf16_TT_f32out_64x96x80": (GemmSpec(M=64, N=96, K=80, dtype="bf16", out_dtype="f32",
                                         layout="TT"), None),
    "f32_NN_splitk3_64x64x768": (GemmSpec(M=64, N=64, K=768), {"split_k": 3}),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".carry/runtime_bundles"))
    parser.add_argument("--target", default="sm_90a")
    args = parser.parse_args(argv)

    from deepgen.compiler import compile_artifact, default_config

    failed = 0
    for name, (spec, overrides) in BUNDLES.items():
        config = default_config(spec, args.target).replace(**(overrides or {}))
        try:
            art = compile_artifact(spec, config, args.target)
        except Exception as e:  # report every kernel, then fail
            failed += 1
            print(f"FAILED {name}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        art.save(args.out / name)
        print(f"{name}: {len(art.launches)} launch(es), workspace {art.workspace_bytes} B, "
              f"{art.compile_seconds:.2f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
