"""Standalone debug mode: compile one GEMM and dump every stage into a directory.

    DIR/00-input.mlir, 01-deepgen-gemm-to-affine.mlir, ...   the IR after every pass
    DIR/kernel.ll, kernel.ptx, kernel.cubin, kernel.sass     LLVM IR, PTX, cubin, SASS
    DIR/kernel.ll, kernel.s, kernel.hsaco, kernel.notes      AMD: amdgcn assembly, hsaco, notes
    DIR/resources.json                                       registers, spills, shared, launches
On failure: DIR/FAILED.txt names the failing stage, and DIR/NN-<stage>.input.mlir keeps the
IR that went into it.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from deepgen.runtime.artifact import atomic_write
from deepgen.spec import GemmSpec

from .driver import CompileError, StageLog, compile_artifact


def sass_of(cubin_path: Path) -> str | None:
    """SASS through cuobjdump, or None when it is not installed."""
    from deepgen.toolchain import cuobjdump_env, find_cuobjdump

    exe = find_cuobjdump()
    if exe is None:
        return None
    proc = subprocess.run([exe, "-sass", str(cubin_path)], capture_output=True, text=True,
                          env=cuobjdump_env(exe))
    return proc.stdout if proc.returncode == 0 else None


def dump_compile(spec: GemmSpec, config, target: str, dump_dir: str | Path,
                 epilogue: str = "none"):
    """Compile with every stage written to `dump_dir`; returns the artifact or raises."""
    d = Path(dump_dir)
    d.mkdir(parents=True, exist_ok=True)
    log = StageLog(want_llvm_ir=True)

    def write_stages():
        for name, text in log.stages.items():
            atomic_write(d / f"{name}.mlir", text.encode())

    try:
        art = compile_artifact(spec, config, target, epilogue=epilogue, log=log)
    except CompileError as e:
        write_stages()
        index = len(log.stages)
        stage = e.stage.replace("/", "_")
        if e.ir_before:
            atomic_write(d / f"{index:02d}-{stage[:60]}.input.mlir", e.ir_before.encode())
        atomic_write(d / "FAILED.txt", f"stage: {e.stage}\n\n{e}\n".encode())
        raise
    write_stages()
    atomic_write(d / "kernel.ll", log.llvm_ir.encode())
    atomic_write(d / art.assembly_file, art.assembly.encode())  # kernel.ptx / kernel.s
    binary = d / ("kernel" + art.binary_suffix)  # kernel.cubin / kernel.hsaco
    atomic_write(binary, art.binary)
    extra = {}
    if art.backend == "hip":  # the hsaco's AMDGPU metadata: kernels, LDS, scratch, VGPRs
        from .backend_amdgpu import readelf_notes
        atomic_write(d / "kernel.notes", readelf_notes(art.binary).encode())
        extra["notes"] = "kernel.notes"
    else:
        sass = sass_of(binary)
        if sass is not None:
            atomic_write(d / "kernel.sass", sass.encode())
        extra["sass"] = "kernel.sass" if sass is not None else "cuobjdump not found"
    summary = {"spec": art.spec, "config": art.config, "target": target,
               "launches": [l.to_dict() for l in art.launches],
               "workspace_bytes": art.workspace_bytes, "resources": art.resources,
               "compile_seconds": round(art.compile_seconds, 4), **extra,
               "toolchain": art.toolchain}
    atomic_write(d / "resources.json", json.dumps(summary, indent=1).encode())
    return art
