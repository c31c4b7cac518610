"""deepgen precompile: compile the M-range table (1-16, 17-64, 65-256, 257-2048, 2049..max)
of (N, K) shapes ahead of time, into the kernel cache or a bundle directory that a GPU host
without MLIR preloads (deepgen.aot.preload_bundles) to run every M without compiling."""
from __future__ import annotations

import argparse


def shape(text: str) -> tuple[int, int]:
    try:
        n, k = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NxK (e.g. 4096x4096), got {text!r}") from None
    return n, k


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("shapes", nargs="+", type=shape, metavar="NxK",
                   help="(N, K) of each GEMM, e.g. 4096x4096 14336x4096")
    p.add_argument("--dtype", default="bf16", help="f16, bf16, e4m3, e5m2, int8 (A and B)")
    p.add_argument("--out-dtype", default=None, help="element type of C (default: dtype)")
    p.add_argument("--layout", default="NT",
                   help="NT (nn.Linear: B stored N x K), NN, TN or TT")
    p.add_argument("--epilogue", default=None,
                   help="an epilogue chain, e.g. 'bias_col,relu' (default: alpha/beta)")
    p.add_argument("--max-m", type=int, default=None,
                   help="the last range's maximum M (default: DEEPGEN_MAX_M or 16384)")
    p.add_argument("--target", default="sm_90a")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("precompile", help="compile the M-range kernels of (N, K) shapes "
                              "ahead of time", description=__doc__)
    add_common(p)
    p.add_argument("--out", default=None,
                   help="write one bundle per range and manifest.json here (default: only "
                        "the kernel cache)")
    return p


def run(args) -> int:
    import sys

    from deepgen.aot import precompile
    from deepgen.errors import SpecError

    def progress(e):
        cfg = e["artifact"].config
        print(f"{e['name']}  M {e['range']:>11}  {cfg.get('strategy')} {cfg.get('BM')}x"
              f"{cfg.get('BN')} {cfg.get('mode', '')}"
              f"{'  -> ' + str(e['dir']) if 'dir' in e else ''}")

    try:
        precompile(args.shapes, dtype=args.dtype, layout=args.layout,
                   out_dtype=args.out_dtype, epilogue=args.epilogue, max_m=args.max_m,
                   target=args.target, out=args.out, progress=progress)
    except (SpecError, ValueError) as e:
        print(f"deepgen precompile: invalid input: {e}", file=sys.stderr)
        return 2
    return 0
