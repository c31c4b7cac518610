"""deepgen bench: check and time every candidate of a tune bundle on this host's GPUs.

    deepgen bench BUNDLE [--out DIR] [--resume] [--top K] [--gpus N] [--timeout S]

BUNDLE is what `deepgen tune CONFIG --compile-only --out BUNDLE` wrote. This needs the runtime
alone (torch, the built launcher, a GPU), never MLIR. One worker process per GPU checks each
candidate against a float64 reference, then times it against torch.matmul (cuBLAS) on the same
inputs; a candidate that crashes or hangs its worker is recorded as failed and the worker is
restarted. Results go to DIR (default: BUNDLE): journal.jsonl, results.json; print them again
with `deepgen tune report DIR`. Exit status: 0 done, 1 the run failed, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="benchmark a compiled tune bundle on GPUs",
                              description=__doc__.split("\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", metavar="BUNDLE", help="a bundle written by deepgen tune")
    p.add_argument("--out", help="results directory (default: BUNDLE)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out, skipping benchmarked candidates")
    p.add_argument("--top", type=int, default=5, help="candidates kept per shape (default 5)")
    p.add_argument("--gpus", type=int, help="GPUs to use (default: every visible one)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds per candidate before its worker is killed (default 120)")
    p.add_argument("--ray", metavar="ADDRESS|local", help="benchmark on Ray GPU actors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from pathlib import Path

    from deepgen.tuner.manifest import BundleError
    from deepgen.tuner.run import Options, RunError, bench

    out = Path(args.out or args.bundle)
    opts = Options(out=out, resume=args.resume, top=args.top, gpus=args.gpus,
                   bench_timeout=args.timeout, ray=args.ray, progress=not args.no_progress)
    try:
        return bench(args.bundle, out, opts)
    except BundleError as e:
        print(f"deepgen bench: {e}", file=sys.stderr)
        return 2
    except (RunError, RuntimeError, OSError) as e:
        print(f"deepgen bench: {e}", file=sys.stderr)
        return 1
