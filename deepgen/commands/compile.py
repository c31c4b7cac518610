"""deepgen compile: compile one GEMM; optionally dump every stage or save a portable bundle."""
from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compile", help="compile one GEMM (debug dumps, bundles)",
                              description=__doc__)
    p.add_argument("--M", type=int, required=True)
    p.add_argument("--N", type=int, required=True)
    p.add_argument("--K", type=int, required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="f32", help="f32, f16 or bf16 (A and B)")
    p.add_argument("--out-dtype", default=None, help="element type of C (default: dtype)")
    p.add_argument("--layout", default="NN", help="NN, NT, TN or TT (A then B; T = transposed)")
    p.add_argument("--allow-tf32", action="store_true",
                   help="f32 inputs may be multiplied as tf32 on tensor cores")
    p.add_argument("--epilogue", default="none", help="none or relu")
    p.add_argument("--config", default=None,
                   help="TileConfig as a JSON file (fields BM, BN, BK, TM, TN, ...); "
                        "default: the heuristic")
    p.add_argument("--target", default="sm_90a")
    p.add_argument("--dump-dir", default=None,
                   help="write the IR after every pass, LLVM IR, PTX, cubin, SASS, resources "
                        "(AMD targets: amdgcn assembly kernel.s, kernel.hsaco, kernel.notes)")
    p.add_argument("--out", default=None, help="save a portable kernel bundle here")
    return p


def run(args) -> int:
    import sys

    from deepgen.compiler.debug import dump_compile
    from deepgen.compiler.driver import CompileError, compile_artifact
    from deepgen.spec import GemmSpec, SpecError

    try:
        spec = GemmSpec(M=args.M, N=args.N, K=args.K, batch=args.batch, dtype=args.dtype,
                        out_dtype=args.out_dtype, layout=args.layout,
                        allow_tf32=args.allow_tf32)
        config = None
        if args.config:
            with open(args.config) as f:
                config = json.load(f)
        if args.dump_dir:
            art = dump_compile(spec, config, args.target, args.dump_dir, args.epilogue)
        else:
            art = compile_artifact(spec, config, args.target, epilogue=args.epilogue,
                                   keep_ir=False)
    except (SpecError, ValueError) as e:
        print(f"deepgen compile: invalid input: {e}", file=sys.stderr)
        return 2
    except CompileError as e:
        print(f"deepgen compile: {e}", file=sys.stderr)
        if args.dump_dir:
            print(f"the IR that went into {e.stage!r} is in {args.dump_dir}", file=sys.stderr)
        return 1
    if args.out:
        art.save(args.out)
    for launch in art.launches:
        res = art.resources.get(launch.entry, {})
        print(f"{launch.entry}: grid {launch.grid} block {launch.block} shared "
              f"{launch.shared_bytes} B, {res.get('registers')} registers, "
              f"{res.get('spill_stores', 0)} B spill stores")
    print(f"compiled in {art.compile_seconds:.2f} s"
          + (f"; stages in {args.dump_dir}" if args.dump_dir else "")
          + (f"; bundle in {args.out}" if args.out else ""))
    return 0
