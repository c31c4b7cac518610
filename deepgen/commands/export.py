"""deepgen export: range kernels of (N, K) shapes as a C library: the cubins, a header with
one function per GEMM (any M up to --max-m), a C source that loads and launches them through
the CUDA driver API (dlopen of libcuda.so.1, no CUDA toolkit needed) and a CMakeLists.txt."""
from __future__ import annotations

import argparse

from deepgen.commands.precompile import add_common


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="write range kernels as a C library (AOT)",
                              description=__doc__)
    add_common(p)
    p.add_argument("--out", required=True, help="the directory to write")
    return p


def run(args) -> int:
    import sys

    from deepgen.aot import ExportError, export
    from deepgen.errors import SpecError

    try:
        out = export(args.out, args.shapes, dtype=args.dtype, layout=args.layout,
                     out_dtype=args.out_dtype, epilogue=args.epilogue, max_m=args.max_m,
                     target=args.target,
                     progress=lambda e: print(f"{e['name']}  M {e['range']}"))
    except (SpecError, ExportError, ValueError) as e:
        print(f"deepgen export: invalid input: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}/deepgen_gemm.h, deepgen_gemm.c, CMakeLists.txt and the cubins")
    return 0
