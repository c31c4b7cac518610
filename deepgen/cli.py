"""The `deepgen` command line.

Each subcommand lives in its own module under deepgen/commands/ and exposes

    add_parser(subparsers) -> argparse.ArgumentParser   # adds and returns its subparser
    run(args: argparse.Namespace) -> int                # the exit code

To add a command, write the module and add its name to COMMANDS. Command modules are imported
to build the parser, so keep their top level light (argparse and the standard library only):
import MLIR, torch, numpy or llvmlite inside run(). tests/test_cli.py checks this.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = [
    "deepgen.commands.doctor",
    "deepgen.commands.compile",
    "deepgen.commands.example",
    "deepgen.commands.tune",
    "deepgen.commands.bench",
    "deepgen.commands.cache",
    "deepgen.commands.profile",
    "deepgen.commands.precompile",
    "deepgen.commands.export",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deepgen-mlir")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepgen",
        description="DeepGen: a GEMM kernel compiler and autotuner for GPUs on upstream MLIR.")
    parser.add_argument("--version", action="version", version=f"deepgen {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(name)
        sub = module.add_parser(subparsers)
        if not isinstance(sub, argparse.ArgumentParser):
            raise TypeError(f"{name}.add_parser must return the subparser it added")
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = run(args)
    except KeyboardInterrupt:
        print("deepgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `deepgen ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
