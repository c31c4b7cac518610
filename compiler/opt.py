"""deepgen-opt: mlir-opt with DeepGen's dialect and passes.

    deepgen-opt input.mlir --pass-pipeline='builtin.module(deepgen-gemm-to-affine,canonicalize)'
    deepgen-opt - -p deepgen-tile-gemm,deepgen-vectorize --print-ir-after-all < input.mlir

The pipeline may mix upstream passes and DeepGen's Python-defined ones (see
`deepgen-opt --list-passes`): DeepGen splits it at top-level commas and adds each element to
one PassManager. `--split-input-file` runs each `// -----` chunk on its own, like mlir-opt.
Errors print MLIR's diagnostics on stderr and exit 1.
"""
from __future__ import annotations

import argparse
import sys

SPLIT_MARKER = "// -----"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="deepgen-opt", description=__doc__.splitlines()[0])
    p.add_argument("input", nargs="?", default="-", help="input .mlir file, or - for stdin")
    p.add_argument("-p", "--pass-pipeline", default="",
                   help="comma-separated passes, optionally wrapped in builtin.module(...)")
    p.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    p.add_argument("--print-ir-after-all", action="store_true",
                   help="print the IR after every pass to stderr")
    p.add_argument("--split-input-file", action="store_true",
                   help="process each '// -----' chunk of the input separately")
    p.add_argument("--target", default=None,
                   help="set the module's deepgen.target (sm_90a, sm_80, gfx942, ...)")
    p.add_argument("--list-passes", action="store_true", help="list DeepGen's passes and exit")
    return p.parse_args(argv)


def run_chunk(text: str, elements: list[str], args) -> tuple[str, str | None]:
    """(printed IR, error message or None) for one input chunk."""
    from mlir import ir
    from mlir.passmanager import PassManager

    from .driver import CompileError, add_stage, make_context
    from .passes.tile_gemm import TARGET_ATTR

    with make_context() as ctx:
        ctx.emit_error_diagnostics = True
        try:
            module = ir.Module.parse(text)
        except Exception as e:
            return "", str(e)
        if args.target:
            module.operation.attributes[TARGET_ATTR] = ir.StringAttr.get(args.target)
        if not elements:
            return str(module), None
        pm = PassManager()
        try:
            for element in elements:
                add_stage(pm, element)
        except CompileError as e:
            return "", str(e)
        except Exception as e:
            return "", f"invalid pass pipeline: {e}"
        if args.print_ir_after_all:
            ctx.enable_multithreading(False)  # MLIR prints module-scope IR single-threaded
            pm.enable_ir_printing(print_after_all=True, print_module_scope=True)
        try:
            pm.run(module.operation)
        except Exception as e:
            return "", str(e)
        return str(module), None


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .driver import split_pipeline
    from .passes import REGISTRY

    if args.list_passes:
        for name, info in REGISTRY.items():
            print(f"{name:28s} {info.summary}")
        return 0
    text = sys.stdin.read() if args.input == "-" else open(args.input).read()
    chunks = text.split(SPLIT_MARKER) if args.split_input_file else [text]
    elements = split_pipeline(args.pass_pipeline) if args.pass_pipeline else []
    outputs, failed = [], False
    for chunk in chunks:
        out, err = run_chunk(chunk, elements, args)
        if err is not None:
            failed = True
            sys.stderr.write(_as_diagnostic(err) + "\n")
        else:
            outputs.append(out)
    sink = sys.stdout if args.output == "-" else open(args.output, "w")
    sink.write(("\n" + SPLIT_MARKER + "\n").join(outputs))
    sink.flush()
    return 1 if failed else 0


def _as_diagnostic(message: str) -> str:
    return message if "error" in message else f"error: {message}"


if __name__ == "__main__":
    sys.exit(main())
