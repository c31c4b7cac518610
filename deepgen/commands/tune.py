"""deepgen tune: search tile configurations per GEMM shape; report and install the results.

    deepgen tune CONFIG.json [--out DIR] [--compile-only] [--resume] ...   run a tuning config
    deepgen tune report DIR [--plot FILE]     table of results.json, plot (matplotlib)
    deepgen tune install DIR                  winners into the tuned database deepgen.gemm reads
    deepgen tune --from-profile PROFILE.json [--top-shapes K | --cover 0.9] [--out DIR]
                                              tune the GEMMs that cover most of a profile's
                                              GEMM time (`deepgen profile` writes it), install

--from-profile writes one tuning config per (dtype, layout, search space) of the chosen
shapes into DIR/configs/ (default DIR out/tune-<profile dir name>), then tunes each into
DIR/<config name> and installs the winners (their times and torch's, for deepgen.optimize)
into the tuned database, as `deepgen tune install` does; --write-only stops after writing the
configs, --compile-only after compiling, --no-install before installing. (--top keeps its
meaning: candidates kept per shape; --top-shapes K picks the K slowest shapes.)

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
    p.add_argument("config", nargs="?", metavar="CONFIG|report|install",
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
    g = p.add_argument_group("from a profile")
    g.add_argument("--from-profile", metavar="PROFILE.json",
                   help="tune the shapes of a `deepgen profile` report")
    g.add_argument("--top-shapes", type=int, metavar="K", help="the K slowest GEMM shapes")
    g.add_argument("--cover", type=float, metavar="F",
                   help="the slowest shapes that cover fraction F of the GEMM time "
                        "(default 0.9)")
    g.add_argument("--write-only", action="store_true",
                   help="write the tuning configs only (no compiling, no GPU)")
    g.add_argument("--no-install", action="store_true",
                   help="tune, but leave the tuned database alone")
    return p


def run(args) -> int:
    from deepgen.spec import SpecError
    from deepgen.tuner.configfile import TuningConfigError
    from deepgen.tuner.manifest import BundleError
    from deepgen.tuner.run import RunError

    try:
        if getattr(args, "from_profile", None):
            if args.config:
                print(f"deepgen tune: --from-profile takes no config (got {args.config!r})",
                      file=sys.stderr)
                return 2
            return _from_profile(args)
        if args.config is None:
            print("deepgen tune: missing CONFIG (a tuning config file, report DIR, install "
                  "DIR, or --from-profile PROFILE.json)", file=sys.stderr)
            return 2
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


def _from_profile(args) -> int:
    from pathlib import Path

    from deepgen.tuner import configfile, from_profile

    try:
        profile = from_profile.load_profile(args.from_profile)
        chosen, summary = from_profile.select(profile, args.top_shapes, args.cover)
    except from_profile.ProfileError as e:
        print(f"deepgen tune: {e}", file=sys.stderr)
        return 2
    target = args.target or "sm_90a"
    source = Path(args.from_profile).resolve()
    name = source.parent.name if source.name == "profile.json" else source.stem
    out = Path(args.out or os.path.join("out", f"tune-{name}"))
    cfgs = from_profile.configs(chosen, name=name, target=target,
                                max_candidates=args.max_candidates)
    paths = from_profile.write_configs(cfgs, out / "configs")
    for path in paths:
        configfile.load(path)  # the schema and the target: a bad config never runs
    print(f"{summary['chosen']} of {summary['shapes']} GEMM shapes cover "
          f"{100 * summary['covered']:.1f}% of the profiled GEMM time"
          + (f" ({summary['skipped']} not tunable: {', '.join(summary['skipped_dtypes'])})"
             if summary["skipped"] else ""))
    for path, cfg in zip(paths, cfgs):
        print(f"  {path}: {len(cfg['shapes'])} shapes")
    if args.write_only:
        return 0
    for path, cfg in zip(paths, cfgs):
        run_args = argparse.Namespace(**{**vars(args), "config": str(path),
                                         "out": str(out / cfg["name"])})
        code = _tune(run_args)
        if code:
            return code
        if args.compile_only or args.dry_run or args.no_install:
            continue
        from deepgen.tuner.database import install

        added, replaced, db = install(out / cfg["name"], args.db)
        print(f"installed {added + replaced} tuned configs into {db} "
              f"({added} new, {replaced} replaced)")
    return 0


def _action(args) -> int:
    if args.config == "report":
        from deepgen.tuner.run import report

        return report(args.dir, args.plot)
    from deepgen.tuner.database import install

    added, replaced, path = install(args.dir, args.db)
    print(f"installed {added + replaced} tuned configs into {path} "
          f"({added} new, {replaced} replaced)")
    return 0
