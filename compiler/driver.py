"""The compile driver: GemmSpec + TileConfig -> MLIR module -> DeepGen passes -> upstream
lowering -> PTX -> cubin (ptxas) -> KernelArtifact.

The pipeline is a list of named stages; each stage is one pass (DeepGen's or upstream's) run
on its own so that the IR after every stage can be kept (`Kernel.ir(stage)`), dumped
(`deepgen compile --dump-dir`), and a failure names the stage and keeps the IR that went in.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlir import ir
from mlir.dialects import func as func_d
from mlir.passmanager import PassManager

from deepgen import dialects
from deepgen.dialects import ops
from deepgen.runtime.artifact import KernelArtifact, Launch
from deepgen.spec import GemmSpec

from . import irb
from .config import TileConfig, as_config, validate
from .passes import REGISTRY, add_to
from .passes.common import SHARED, args_of, grid_of, kernels
from .passes.tile_gemm import TARGET_ATTR
from .target import Target, get_target

# DeepGen's SIMT pipeline, then upstream MLIR down to the LLVM dialect.
DEEPGEN_PASSES = [
    "deepgen-gemm-to-affine",
    "deepgen-tile-gemm",
    "deepgen-split-k",
    "deepgen-promote-shared",
    "deepgen-pipeline",
    "deepgen-block-swizzle",
    "deepgen-vectorize",
]
NVVM_LOWERING = [
    "canonicalize",
    "cse",
    "expand-strided-metadata",
    "lower-affine",
    "convert-scf-to-cf",
    "convert-nvgpu-to-nvvm",
    "gpu.module(convert-gpu-to-nvvm{use-bare-ptr-memref-call-conv=1})",
    "gpu.module(convert-vector-to-llvm,convert-ub-to-llvm)",
    "reconcile-unrealized-casts",
    "gpu.module(canonicalize,cse)",
]


class CompileError(RuntimeError):
    """A stage of the pipeline failed; `stage` names it and `ir_before` is its input."""

    def __init__(self, stage: str, message: str, ir_before: str = ""):
        super().__init__(f"stage {stage!r} failed: {message}")
        self.stage = stage
        self.ir_before = ir_before


def make_context() -> ir.Context:
    """A context with every upstream dialect and the deepgen dialect loaded."""
    ctx = ir.Context()
    dialects.load_into(ctx)
    return ctx


def gemm_module(spec: GemmSpec, cfg: TileConfig, target: str, epilogue: str = "none") -> ir.Module:
    """The starting IR: one function holding one deepgen.gemm on static memrefs."""
    with ir.Location.unknown():
        module = ir.Module.create()
        module.operation.attributes[TARGET_ATTR] = ir.StringAttr.get(target)
        in_t, out_t = irb.element_type(spec.dtype), irb.element_type(spec.out_dtype)
        shape = lambda op: [spec.batch, *spec.stored_shape(op)]
        types = [ir.MemRefType.get(shape("A"), in_t), ir.MemRefType.get(shape("B"), in_t),
                 ir.MemRefType.get(shape("C"), out_t), ir.F32Type.get(), ir.F32Type.get()]
        with ir.InsertionPoint(module.body):
            f = func_d.FuncOp("gemm", (types, []))
            with ir.InsertionPoint(f.add_entry_block()):
                ops.gemm(*f.arguments, layout=spec.layout, epilogue=epilogue,
                         tile=cfg.to_dict(), allow_tf32=spec.allow_tf32)
                func_d.return_([])
    return module


def split_pipeline(text: str) -> list[str]:
    """Split a pipeline string at top-level commas: 'a,gpu.module(b,c),d' -> 3 elements."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    if text.strip().startswith("builtin.module(") and len(parts) == 1:
        return split_pipeline(text.strip()[len("builtin.module("):-1])
    return parts


def add_stage(pm: PassManager, element: str) -> None:
    """Add one pipeline element: a DeepGen pass by name, or anything upstream parses."""
    if element in REGISTRY:
        add_to(pm, element)
    elif element.startswith("deepgen-"):
        raise CompileError(element, f"unknown DeepGen pass; known: {sorted(REGISTRY)}")
    else:
        pm.add(element)


def run_stage(module: ir.Module, element: str, keep_before: bool = True) -> None:
    before = str(module) if keep_before else ""
    pm = PassManager()
    try:
        add_stage(pm, element)
        pm.run(module.operation)
    except CompileError:
        raise
    except Exception as e:  # MLIRError carries the diagnostics
        raise CompileError(element, str(e), before) from None


@dataclass
class StageLog:
    """IR after each stage, in order."""
    stages: dict = field(default_factory=dict)
    want_llvm_ir: bool = False  # also translate the kernels to LLVM IR (debug dumps)
    llvm_ir: str = ""

    def record(self, index: int, name: str, text: str) -> None:
        self.stages[f"{index:02d}-{name}"] = text


def run_pipeline(module: ir.Module, elements: list[str], log: StageLog | None = None,
                 start: int = 0) -> None:
    for i, element in enumerate(elements, start=start):
        run_stage(module, element)
        if log is not None:
            log.record(i, _stage_name(element), str(module))


def _stage_name(element: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", element).strip("_")[:60]


def collect_launches(module: ir.Module) -> tuple[list[Launch], int]:
    """Launch rules of the kernels (read before lowering drops DeepGen's attributes)."""
    launches, workspace = [], 0
    for k in kernels(module.operation):
        block = list(ir.DenseI32ArrayAttr(k.attributes["known_block_size"]))
        shared = ir.IntegerAttr(k.attributes[SHARED]).value if SHARED in k.attributes else 0
        if "deepgen.workspace_bytes" in k.attributes:
            workspace = max(workspace, ir.IntegerAttr(k.attributes["deepgen.workspace_bytes"]).value)
        launches.append(Launch(entry=ir.StringAttr(k.attributes["sym_name"]).value,
                               grid=tuple(grid_of(k)), block=tuple(block), shared_bytes=shared,
                               args=tuple(args_of(k))))
    return launches, workspace


def serialize(module: ir.Module, fmt: str) -> bytes:
    """Run gpu-module-to-binary{format=fmt} on `module` (in place) and return the object."""
    from mlir.dialects import gpu

    run_stage(module, f"gpu-module-to-binary{{format={fmt}}}", keep_before=False)
    for op in module.body.operations:
        if op.operation.name == "gpu.binary":
            return gpu.ObjectAttr(ir.ArrayAttr(op.attributes["objects"])[0]).object
    raise CompileError("gpu-module-to-binary", "no gpu.binary in the module")


def llvm_ir(module: ir.Module) -> str:
    """The kernels as LLVM IR text (bitcode from a copy of the module, read by llvmlite)."""
    import llvmlite.binding as llvm

    return str(llvm.parse_bitcode(serialize(ir.Module.parse(str(module)), "llvm")))


def to_ptx(module: ir.Module) -> str:
    return serialize(module, "isa").decode()


def ptxas(ptx: str, target: Target) -> tuple[bytes, dict]:
    """Assemble PTX to a cubin; returns (cubin, resources per entry from `ptxas -v`)."""
    from deepgen.toolchain import find_ptxas

    exe = find_ptxas()
    if exe is None:
        raise CompileError("ptxas", "ptxas not found: pip install nvidia-cuda-nvcc "
                                    "(or set DEEPGEN_PTXAS); `deepgen doctor` checks the toolchain")
    with tempfile.TemporaryDirectory(prefix="deepgen-ptxas-") as tmp:
        src, out = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        src.write_text(ptx)
        proc = subprocess.run([str(exe), f"-arch={target.name}", "-O3", "-v", str(src), "-o", str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError("ptxas", proc.stderr.strip()[-4000:])
        cubin = out.read_bytes()
    return cubin, parse_ptxas_resources(proc.stderr)


def parse_ptxas_resources(log: str) -> dict:
    res, entry = {}, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line) or \
            re.search(r"Function properties for (\S+)", line)
        if m:
            entry = m.group(1)
            res.setdefault(entry, {"registers": 0, "spill_stores": 0, "spill_loads": 0,
                                   "stack_bytes": 0, "static_shared": 0})
            continue
        if entry is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            res[entry].update(stack_bytes=int(m.group(1)), spill_stores=int(m.group(2)),
                              spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            res[entry]["registers"] = int(m.group(1))
        m = re.search(r"(\d+) bytes smem", line)
        if m:
            res[entry]["static_shared"] = int(m.group(1))
    return res


def compile_artifact(spec: GemmSpec, config: TileConfig | dict | None = None,
                     target: str = "sm_90a", *, epilogue: str = "none",
                     keep_ir: bool = True, passes: list[str] | None = None,
                     log: StageLog | None = None) -> KernelArtifact:
    """Compile one GEMM to a KernelArtifact (validation first: nothing runs on bad input).

    `log` (optional) receives the IR after every stage as it is produced, so a caller keeps
    the stages that ran even when a later one fails."""
    t0 = time.perf_counter()
    tgt = get_target(target)
    cfg = as_config(config, spec, tgt)
    validate(cfg, spec, tgt)
    if log is None and keep_ir:
        log = StageLog()
    with make_context(), ir.Location.unknown():
        module = gemm_module(spec, cfg, target, epilogue)
        if log is not None:
            log.record(0, "input", str(module))
        deepgen = passes if passes is not None else DEEPGEN_PASSES
        run_pipeline(module, deepgen, log, start=1)
        launches, workspace = collect_launches(module)
        if tgt.backend == "hip":  # AMDGPU: ROCDL -> LLVM IR -> llvmlite -> ld.lld
            from .backend_amdgpu import build_hsaco
            binary, resources, assembly = build_hsaco(module, tgt, launches, log,
                                                      start=1 + len(deepgen))
        else:
            run_pipeline(module, NVVM_LOWERING, log, start=1 + len(deepgen))
            if log is not None and log.want_llvm_ir:
                log.llvm_ir = llvm_ir(module)
            assembly = to_ptx(module)
    if tgt.backend == "cuda":
        binary, resources = ptxas(assembly, tgt)
    from deepgen.toolchain import toolchain_versions
    return KernelArtifact(backend=tgt.backend, target=target, binary=binary, launches=launches,
                          spec=spec.to_dict(), config=cfg.to_dict(), workspace_bytes=workspace,
                          resources=resources, toolchain=toolchain_versions(),
                          compile_seconds=time.perf_counter() - t0, assembly=assembly,
                          ir_stages=log.stages if log else {})
