"""deepgen tune: search tile configurations per GEMM shape; report and install the results.

    deepgen tune CONFIG.json [--out DIR] [--compile-only] [--resume] ...   run a tuning config
    deepgen tune report DIR [--plot FILE]     table of results.json, plot (matplotlib)
    deepgen tune install DIR                  winners into the tuned database deepgen.gemm reads

CONFIG.json is a tuning config (tuning_configs/README.md: format deepgen-tuning/1, or a
legacy DeepGen file). Candidates are compiled in worker processes into DIR (a portable
bundle: kernels/<id>/ + index.json), then checked and timed on the local GPUs. With
--compile-only no GPU is needed: carry DIR to a GPU host and run `deepgen bench DIR` there.
Every finished candidate goes to DIR/journal.jsonl, so --resume continues a stopped run.
Exit status: 0 done, 1 the run failed, 2 invalid config or arguments.
"""
from __future__ import annotations

import argparse
import os
import sys

ACTIONS = ("report", "install")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune", help="autotune tile configs (report, install results)",
                              description=__doc__.split("\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG|report|install",
                   help="a tuning config file, or an action on a results directory")
    p.add_argument("dir", nargs="?", metavar="DIR", help="results directory (report, install)")
    p.add_argument("--out", help="run directory (default: out/tune-<config name>)")
    p.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8),
                   help="compile processes (default: the CPU count, at most 8)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out, skipping finished candidates")
    p.add_argument("--top", type=int, default=5, help="candidates kept per shape (default 5)")
    p.add_argument("--compile-only", action="store_true",
                   help="compile into a portable bundle; benchmark later with `deepgen bench`")
    p.add_argument("--max-candidates", type=int, metavar="N",
                   help="at most N candidates per shape (a seeded uniform sample)")
    p.add_argument("--ray", metavar="ADDRESS|local",
                   help="run on Ray: 'local' starts a private instance, else a cluster address")
    p.add_argument("--target", help="compile target, overriding the config's (e.g. sm_90a)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds per compile before its worker is killed (default 300)")
    p.add_argument("--bench-timeout", type=float, default=120.0,
                   help="seconds per benchmarked candidate before its worker is killed")
    p.add_argument("--keep-ptx", action="store_true", help="keep each kernel's PTX in the bundle")
    p.add_argument("--dry-run", action="store_true",
                   help="print the space sizes and pruning counts; compile nothing")
    p.add_argument("--plot", help="report: where to write the plot (default DIR/results.png)")
    p.add_argument("--db", help="install: database file (default $DEEPGEN_CACHE_DIR/tuned.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    from deepgen.spec import SpecError
    from deepgen.tuner.configfile import TuningConfigError
    from deepgen.tuner.manifest import BundleError
    from deepgen.tuner.run import RunError

    try:
        if args.config in ACTIONS and (args.dir or not os.path.exists(args.config)):
            if not args.dir:
                print(f"deepgen tune {args.config}: missing DIR", file=sys.stderr)
                return 2
            return _action(args)
        if args.dir:
            print(f"deepgen tune: unexpected argument {args.dir!r} after the config file",
                  file=sys.stderr)
            return 2
        return _tune(args)
    except (TuningConfigError, SpecError, BundleError) as e:
        print(f"deepgen tune: {e}", file=sys.stderr)
        return 2
    except (RunError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"deepgen tune: {e}", file=sys.stderr)
        return 1


def _tune(args) -> int:
    from pathlib import Path

    from deepgen.tuner.run import Options, tune

    for name in ("workers", "top", "max_candidates"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"deepgen tune: --{name.replace('_', '-')} must be >= 1, got {value}",
                  file=sys.stderr)
            return 2
    out = args.out or os.path.join("out", f"tune-{Path(args.config).stem}")
    opts = Options(out=Path(out), workers=args.workers, resume=args.resume, top=args.top,
                   compile_only=args.compile_only, max_candidates=args.max_candidates,
                   ray=args.ray, target=args.target, compile_timeout=args.timeout,
                   bench_timeout=args.bench_timeout, keep_ptx=args.keep_ptx,
                   dry_run=args.dry_run, progress=not args.no_progress)
    return tune(args.config, opts)


def _action(args) -> int:
    if args.config == "report":
        from deepgen.tuner.run import report

        return report(args.dir, args.plot)
    from deepgen.tuner.database import install

    added, replaced, path = install(args.dir, args.db)
    print(f"installed {added + replaced} tuned configs into {path} "
          f"({added} new, {replaced} replaced)")
    return 0
