"""deepgen profile: an op profiling table of a Python script, GEMM shapes grouped, and files.

    deepgen profile [--out DIR] [--repeat N] script.py [ARGS...]   ARGS: the script's argv[1:]
    deepgen profile [OPTIONS] -m package.module [ARGS...]

What runs under the profiler: when the script (or module) defines a function named by
--function (default `main`), it is loaded without running its `if __name__ == "__main__"`
block, then that function is called with no arguments (sys.argv set to the script and ARGS),
--warmup times untimed and --repeat times under torch.profiler. A script without that
function runs whole, as `python script.py ARGS` would, once, under the profiler (model set-up
included). Prints the op table and the GEMMs by shape; writes profile.json, gemms.csv, ops.csv
and gemms.png into --out (each file atomically). Feed profile.json to
`deepgen tune --from-profile`.
Exit status: 0 done, 1 the script failed, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("profile", help="profile a script: op table, GEMM shapes",
                              description=__doc__.split("\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", dest="module", metavar="MODULE", help="profile a module (python -m)")
    p.add_argument("--out", default="out/profile",
                   help="directory for profile.json, gemms.csv, ops.csv, gemms.png "
                        "(default out/profile)")
    p.add_argument("--function", default="main",
                   help="the function to call (default main); without it the script runs "
                        "whole")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--repeat", type=int, default=1, help="profiled calls (default 1)")
    p.add_argument("--top", type=int, default=25, help="rows printed per table (default 25)")
    p.add_argument("script", nargs="?", help="the Python script (unless -m)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    return p


def run(args) -> int:
    import importlib.util
    import os
    import runpy

    if not args.module and not args.script:
        print("deepgen profile: give a script, or -m MODULE", file=sys.stderr)
        return 2
    rest = list(args.args)
    if args.module and args.script:  # `-m mod ARG ...`: the first ARG landed in script
        rest = [args.script, *rest]
    for name in ("warmup", "repeat", "top"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            print(f"deepgen profile: --{name} must be >= {0 if name == 'warmup' else 1}",
                  file=sys.stderr)
            return 2
    target = args.module or args.script
    if not args.module and not os.path.isfile(target):
        print(f"deepgen profile: {target}: no such file", file=sys.stderr)
        return 2
    if args.module and importlib.util.find_spec(args.module) is None:
        print(f"deepgen profile: {args.module}: no such module", file=sys.stderr)
        return 2
    from deepgen import profiler

    saved_argv, saved_path = list(sys.argv), list(sys.path)
    sys.argv = [target, *rest]
    if not args.module:
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
    try:
        load = (lambda name: runpy.run_module(args.module, run_name=name, alter_sys=True)) \
            if args.module else (lambda name: runpy.run_path(target, run_name=name))
        space = load("__deepgen_profile__")
        fn = space.get(args.function)
        label = f"{os.path.basename(target)}:{args.function}"
        if callable(fn):
            profiler.profile(fn, warmup=args.warmup, repeat=args.repeat, out=args.out,
                             name=label, top=args.top)
        else:
            print(f"deepgen profile: {target} defines no {args.function}(): profiling the "
                  f"whole script once", file=sys.stderr)
            profiler.profile(load, "__main__", warmup=0, repeat=1, out=args.out,
                             name=os.path.basename(target), top=args.top)
    except SystemExit as e:  # the script's own sys.exit
        if e.code not in (0, None):
            print(f"deepgen profile: {target} exited with {e.code}", file=sys.stderr)
            return 1
    except Exception as e:  # noqa: BLE001  (the script's error: reported, not a traceback)
        import traceback

        traceback.print_exc()
        print(f"deepgen profile: {target} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0
