"""The compile driver: GemmSpec + TileConfig -> MLIR module -> DeepGen passes -> a backend
(backend_nvidia: NVVM, PTX, cubin; backend_amdgpu: ROCDL, hsaco) -> KernelArtifact.

The pipeline is a list of named stages (DeepGen's passes or upstream ones). When the IR is
kept (`Kernel.ir(stage)`, `deepgen compile --dump-dir`), each stage runs on its own and its
output is printed; otherwise the stages run in one PassManager and no IR is printed (printing
cost as much as the passes). Either way a failure names the stage and carries the IR that went
in: without kept IR, the stages run again one by one on a copy of their input to find them.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

from mlir import ir
from mlir.dialects import func as func_d
from mlir.passmanager import PassManager

from deepgen import dialects
from deepgen.dialects import ops
from deepgen.runtime.artifact import ArtifactError, KernelArtifact, Launch, param_for
from deepgen.spec import GemmSpec

from . import irb
from . import strategies
from .config import TileConfig
from .strategies import simt as _simt
from .passes import REGISTRY, add_to
from .passes.common import SHARED, SPEC, args_of, grid_of, kernels, spec_of
from .passes.tile_gemm import TARGET_ATTR
from .target import get_target

# DeepGen's pipeline; the backends lower its output (backend_nvidia.NVVM_LOWERING, ...).
DEEPGEN_PASSES = list(_simt.PASSES)  # the simt strategy's (each strategy has its own: pipeline())


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


# compile_artifact's contexts: creating one (every upstream dialect registered, the deepgen
# dialect loaded from IRDL) took 10-25 ms of each compile. A thread reuses its context for
# CONTEXT_REUSE compiles, then starts a fresh one (attributes and types stay uniqued in a
# context for its lifetime, so a tuner's long-lived worker must not grow without bound).
CONTEXT_REUSE = 32
_compile_contexts = threading.local()


def compile_context() -> ir.Context:
    """The calling thread's context for compile_artifact (see CONTEXT_REUSE)."""
    state = _compile_contexts
    if getattr(state, "uses", CONTEXT_REUSE) >= CONTEXT_REUSE:
        state.context, state.uses = make_context(), 0
    state.uses += 1
    return state.context


def gemm_module(spec: GemmSpec, cfg: TileConfig, target: str, epilogue=None) -> ir.Module:
    # `cfg`: the flat lowering parameters (a strategy config's lowering())
    """The starting IR: one function holding one deepgen.gemm on static memrefs (and the bias
    memref when spec.epilogue has a bias, the f32 scale memrefs when the spec has scales;
    `epilogue`, legacy, replaces a default chain)."""
    from .epilogue import chain_text, with_epilogue

    spec = with_epilogue(spec, epilogue)
    with ir.Location.unknown():
        module = ir.Module.create()
        module.operation.attributes[TARGET_ATTR] = ir.StringAttr.get(target)
        in_t, out_t = irb.element_type(spec.dtype), irb.element_type(spec.out_dtype)
        shape = lambda op: [spec.batch, *spec.stored_shape(op)]
        types = [ir.MemRefType.get(shape("A"), in_t), ir.MemRefType.get(shape("B"), in_t),
                 ir.MemRefType.get(shape("C"), out_t), ir.F32Type.get(), ir.F32Type.get()]
        named = spec.operands()  # the bias, then the scales
        types += [ir.MemRefType.get(list(spec.operand_shape(n)),
                                    irb.element_type(spec.operand_dtype(n))) for n in named]
        with ir.InsertionPoint(module.body):
            f = func_d.FuncOp("gemm", (types, []))
            with ir.InsertionPoint(f.add_entry_block()):
                args = dict(zip(named, list(f.arguments)[5:]))
                scales = (args["scale_a"], args["scale_b"]) if "scale_a" in args else None
                ops.gemm(*list(f.arguments)[:5], layout=spec.layout,
                         epilogue=chain_text(spec.epilogue), tile=cfg.to_dict(),
                         allow_tf32=spec.allow_tf32, bias=args.get("bias"), scales=scales,
                         scale=spec.scale)
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
    strategies.load_passes()  # the strategies' own passes (e.g. deepgen-mma-sync-pipeline)
    if element in REGISTRY:
        add_to(pm, element)
    elif element.startswith("deepgen-"):
        raise CompileError(element, f"unknown DeepGen pass; known: {sorted(REGISTRY)}")
    else:
        pm.add(element)


def run_stage(module: ir.Module, element: str, keep_before: bool = False,
              ir_before: str = "") -> None:
    """Run one pipeline element. On failure the CompileError carries `ir_before` (the caller's
    text of the input) or, with keep_before, the module printed before the stage ran; the
    text is printed only when asked: it costs as much as the passes themselves."""
    before = str(module) if keep_before and not ir_before else ir_before
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
    """Run `elements` in order. With a log: one stage at a time, the IR after each recorded
    (and the input of a failing stage known). Without: one PassManager for all, no text."""
    if log is None:
        run_together(module, elements)
        return
    before = str(module)
    for i, element in enumerate(elements, start=start):
        run_stage(module, element, ir_before=before)
        before = str(module)
        log.record(i, _stage_name(element), before)


def run_together(module: ir.Module, elements: list[str]) -> None:
    """All `elements` in one PassManager, no text printed, the IR verified once at the end
    rather than after every pass (that cost ~85 ms of a 1 s tensor-core compile). On failure
    (a pass's, or invalid IR at the end), the stages run again one by one, each verified, on a
    copy of the input taken beforehand (a few ms; printing the module before every stage cost
    ~30 ms each), so the CompileError names the failing stage and carries its input."""
    if not elements:
        return
    copy = module.operation.clone()
    pm = PassManager()
    pm.enable_verifier(False)
    try:
        for element in elements:
            add_stage(pm, element)
        pm.run(module.operation)
        module.operation.verify()
    except CompileError:
        raise
    except Exception as e:  # MLIRError carries the diagnostics
        _replay(copy, elements, e)
    finally:
        copy.erase()


def _replay(copy, elements: list[str], error: Exception) -> None:
    """Raise the CompileError of the first stage that fails on `copy` (the input of a failed
    run_together), with that stage's input as text; the original error when none fails."""
    for element in elements:
        before = str(copy)
        pm = PassManager()
        add_stage(pm, element)
        try:
            pm.run(copy)
        except Exception as e:
            raise CompileError(element, str(e), before) from None
    raise CompileError(f"{elements[0]} .. {elements[-1]}", str(error)) from None


def _stage_name(element: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", element).strip("_")[:60]


def collect_launches(module: ir.Module, spec: GemmSpec | None = None
                     ) -> tuple[list[Launch], int]:
    """Launch rules of the kernels (read before lowering drops DeepGen's attributes).

    Each kernel's `deepgen.args` names become its signature through the artifact format's
    table (`param_for`: kind, and for pointer operands dtype and shape rule from `spec`; the
    spec defaults to the one the GEMM kernel carries). Grids and the workspace size are
    static here, so they stay plain ints (size rules of the artifact format)."""
    found = kernels(module.operation)
    if spec is None:
        spec = next((spec_of(k) for k in found if SPEC in k.attributes), None)
    launches, workspace = [], 0
    for k in found:
        entry = ir.StringAttr(k.attributes["sym_name"]).value
        block = list(ir.DenseI32ArrayAttr(k.attributes["known_block_size"]))
        shared = ir.IntegerAttr(k.attributes[SHARED]).value if SHARED in k.attributes else 0
        if "deepgen.workspace_bytes" in k.attributes:
            workspace = max(workspace, ir.IntegerAttr(k.attributes["deepgen.workspace_bytes"]).value)
        try:
            params = tuple(param_for(name, spec) for name in args_of(k))
        except ArtifactError as e:
            raise CompileError("collect-launches", f"kernel {entry!r}: {e}") from None
        launches.append(Launch(entry=entry, grid=tuple(grid_of(k)), block=tuple(block),
                               shared_bytes=shared, params=params))
    return launches, workspace


def compile_artifact(spec: GemmSpec, config: TileConfig | dict | None = None,
                     target: str = "sm_90a", *, epilogue=None,
                     keep_ir: bool = True, passes: list[str] | None = None,
                     log: StageLog | None = None) -> KernelArtifact:
    """Compile one GEMM to a KernelArtifact (validation first: nothing runs on bad input).

    `log` (optional) receives the IR after every stage as it is produced, so a caller keeps
    the stages that ran even when a later one fails."""
    t0 = time.perf_counter()
    from .epilogue import with_epilogue  # `epilogue` (legacy): the chain, into the spec
    spec = with_epilogue(spec, epilogue)
    tgt = get_target(target)
    if spec.dynamic_m:  # a range of M: wgmma, planned at M = max (compiler/ranges.py)
        from .ranges import resolve as resolve_range
        cfg = resolve_range(config, spec, tgt)
    else:
        cfg = strategies.resolve(config, spec, tgt)  # the strategy's config, validated
    if log is None and keep_ir:
        log = StageLog()
    strategy = strategies.strategy_of(cfg)
    builder = getattr(strategy, "builds_kernel", False)  # emits the kernel itself (wgmma)
    with compile_context(), ir.Location.unknown():
        if builder:
            module = strategy.build_module(spec, cfg, target)
        else:
            module = gemm_module(spec, cfg.lowering(), target)
        if log is not None:
            log.record(0, "input", str(module))
        deepgen = passes if passes is not None else strategy.pipeline(cfg)
        run_pipeline(module, deepgen, log, start=1)
        if builder:
            launches = strategy.launches(spec, cfg)
            workspace = strategy.workspace_bytes(spec, cfg)
        else:
            launches, workspace = collect_launches(module, spec)
        if tgt.backend == "hip":  # AMDGPU: ROCDL -> LLVM IR -> llvmlite -> ld.lld
            from .backend_amdgpu import build_hsaco
            binary, resources, assembly = build_hsaco(module, tgt, launches, log,
                                                      start=1 + len(deepgen))
        else:  # NVIDIA: NVVM -> PTX -> ptxas (or nvJitLink)
            from .backend_nvidia import build_cubin
            binary, resources, assembly = build_cubin(
                module, tgt, log, start=1 + len(deepgen),
                extra=strategy.extra_lowering(cfg) if builder else (),
                finish=(lambda m: strategy.finish_lowered(m, cfg)) if builder else None,
                ptxas_opt=strategy.ptxas_opt_level(cfg))
            binary = strategy.finish_binary(binary, cfg)
    from deepgen.toolchain import cached_toolchain_versions as toolchain_versions
    return KernelArtifact(backend=tgt.backend, target=target, binary=binary, launches=launches,
                          spec=spec.to_dict(), config=cfg.to_dict(), workspace_bytes=workspace,
                          resources=resources, toolchain=toolchain_versions(),
                          compile_seconds=time.perf_counter() - t0, assembly=assembly,
                          ir_stages=log.stages if log else {})
