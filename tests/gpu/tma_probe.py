"""A TMA probe kernel: one CTA per box copies its box of a 2-D tensor A through
`cp.async.bulk.tensor` into shared memory, waits on an mbarrier, and writes it to `out`.

Test code, not a DeepGen strategy: it checks the by-value TMA descriptor path end to end
(the compiler's NVIDIA backend, the artifact's `tma` param, the launcher's
cuTensorMapEncodeTiled and cuLaunchKernelEx) with a result that must equal the input.

The kernel (block of 128 threads, static shared memory: the box, 1024-byte aligned, and one
mbarrier):

    thread 0: mbarrier.init(bar, 1); fence.mbarrier_init; fence.proxy.async.shared::cta
    barrier0
    thread 0: mbarrier.arrive.expect_tx(bar, box bytes)
              cp.async.bulk.tensor.2d [tile], [A, {col0, row0}], [bar]   (innermost first)
    all:      mbarrier.try_wait.parity(bar, 0)   (NVVM emits the retry loop)
    all:      16-byte chunks tile -> out at (row0 + r, col0 + c); with swizzle 128 the chunk
              of row r sits at (chunk ^ (r % 8)) in shared memory

`out` is the tensor padded to whole boxes (grid * box, row-major): the test compares its
in-bounds part with A and the rest with 0 (TMA fills out-of-bounds elements with zeros).
The descriptor is the kernel's first parameter, `!llvm.ptr {llvm.byval = !llvm.array<128 x i8>,
llvm.align = 64, nvvm.grid_constant}` (set on the llvm.func after convert-gpu-to-nvvm: a
gpu.func may not carry nvvm.grid_constant, and the lowering drops llvm.byval).

This module imports MLIR only inside the functions that build IR: the GPU test imports it
on a host without MLIR for `VARIANTS` and `plan_inputs`.

    python tests/gpu/tma_probe.py DIR      # the probe bundles (make_bundle.py writes DIR/tma)
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENTRY = "tma_probe_TP"  # after the last "_", its params as tests/fake_cuda spells them
THREADS = 128
CHUNK = 16  # bytes per thread per copy step
ELEMENT_BYTES = {"bf16": 2, "f16": 2, "f32": 4}
DESCRIPTOR_BYTES = 128
# After the backend's NVVM_LOWERING: nvvm.mbarrier.try_wait.parity is an inline-PTX op (its
# retry loop) that LLVM translation rejects until convert-nvvm-to-llvm has expanded it.
EXTRA_LOWERING = ["convert-nvvm-to-llvm"]


@dataclass(frozen=True)
class Variant:
    name: str
    dtype: str
    box: tuple[int, int]  # rows, cols (outermost first, as the artifact's tma param)
    swizzle: int  # 0 or 128 bytes
    cluster: tuple[int, int, int] | None = None

    @property
    def row_bytes(self) -> int:
        return self.box[1] * ELEMENT_BYTES[self.dtype]

    @property
    def box_bytes(self) -> int:
        return self.box[0] * self.row_bytes

    @property
    def grid(self) -> tuple:
        """Size rules: x over the columns (a multiple of the cluster's x), y over the rows."""
        rows, cols = self.box
        cx = self.cluster[0] if self.cluster else 1
        gx = f"cdiv(N, {cols})" if cx == 1 else f"cdiv(N, {cols * cx}) * {cx}"
        return (gx, f"cdiv(M, {rows})", 1)

    @property
    def out_shape(self) -> tuple:
        """`out`: the tensor padded to the grid's boxes (size rules)."""
        gx, gy, _ = self.grid
        return (f"{gy} * {self.box[0]}", f"{gx} * {self.box[1]}")

    def check(self) -> None:
        if self.row_bytes % CHUNK or (self.box_bytes // CHUNK) % THREADS:
            raise ValueError(f"{self.name}: box rows of {self.row_bytes} bytes, "
                             f"{self.box_bytes // CHUNK} chunks of {CHUNK} bytes: the copy "
                             f"needs whole chunks, a multiple of {THREADS}")
        if self.swizzle not in (0, 128) or (self.swizzle and self.row_bytes != 128):
            raise ValueError(f"{self.name}: the copy un-swizzles only 128-byte rows with "
                             f"swizzle 128 (or swizzle 0)")


VARIANTS = {v.name: v for v in (
    Variant("bf16_sw0", "bf16", (64, 64), 0),
    Variant("bf16_sw128", "bf16", (32, 64), 128),
    Variant("f32_sw0", "f32", (16, 32), 0),
    Variant("bf16_sw128_cluster2", "bf16", (32, 64), 128, cluster=(2, 1, 1)),
)}


# -- the artifact's signature (no MLIR) --------------------------------------------------------

def params(v: Variant) -> tuple:
    from deepgen.runtime.artifact import Param

    return (Param("A", "tma", dtype=v.dtype, shape=("M", "N"), operand="A", box=v.box,
                  swizzle=v.swizzle, l2_promotion=128, oob_fill="none"),
            Param("out", "ptr", dtype=v.dtype, shape=v.out_shape))


def launch(v: Variant):
    from deepgen.runtime.artifact import Launch

    return Launch(entry=ENTRY, grid=v.grid, block=(THREADS, 1, 1), shared_bytes=0,
                  params=params(v), cluster=v.cluster)


def plan_inputs(artifact, sizes: dict):
    """(launches, tma, pointer names) for `_launcher.LaunchPlan(backend, binary, device,
    launches, tma)` at `sizes` ({"M", "N"}; K and batch are 1), and `launch_args` takes the
    pointers in the order of the names. What runtime/kernel.py's Kernel does for a GEMM's
    signature, for any signature of ptr and tma params (packed row-major operands)."""
    from deepgen.runtime.artifact import eval_rule

    sizes = {"K": 1, "batch": 1, **sizes}
    pointers: list[str] = []
    descs, tma = [], []

    def slot(name: str) -> int:
        if name not in pointers:
            pointers.append(name)
        return pointers.index(name)

    for l in artifact.launches:
        refs = []
        for p in l.params:
            if p.kind == "ptr":
                refs.append(("ptr", slot(p.name)))
            elif p.kind == "tma":
                dims = [eval_rule(r, sizes, f"param {p.name!r}") for r in p.shape]
                strides = [1] * len(dims)
                for i in range(len(dims) - 2, -1, -1):
                    strides[i] = strides[i + 1] * dims[i + 1]
                refs.append(("tma", len(tma)))
                tma.append({"name": p.name, "pointer": slot(p.operand), "dtype": p.dtype,
                            "dims": dims, "strides": strides, "box": list(p.box),
                            "element_strides": list(p.element_strides),
                            "swizzle": p.swizzle, "interleave": p.interleave,
                            "l2_promotion": p.l2_promotion, "oob_fill": p.oob_fill})
            else:
                raise ValueError(f"param {p.name!r}: kind {p.kind} is not used by the probe")
        descs.append((l.entry, l.grid_for(sizes), l.block, l.shared_bytes, refs, l.cluster))
    return descs, tma, pointers


def out_shape(v: Variant, sizes: dict) -> tuple[int, int]:
    from deepgen.runtime.artifact import eval_rule

    sizes = {"K": 1, "batch": 1, **sizes}
    return tuple(eval_rule(r, sizes, "out") for r in v.out_shape)


# -- the kernel (MLIR) -------------------------------------------------------------------------

def _i32(x):
    from mlir import ir
    from mlir.dialects import arith

    return arith.index_cast(ir.IntegerType.get_signless(32), x)


def _i64(x):
    from mlir import ir
    from mlir.dialects import arith

    from deepgen.compiler import irb

    return arith.index_cast(ir.IntegerType.get_signless(64), irb.val(x))


def _shared_global(name: str, ty, alignment: int):
    """An uninitialised `llvm.mlir.global` in shared memory (address space 3)."""
    from mlir import ir
    from mlir.dialects import llvm

    return llvm.GlobalOp(ty, name, ir.Attribute.parse("#llvm.linkage<internal>"),
                         alignment=alignment, addr_space=3)


def _gep(base, offset):
    """`base` + `offset` bytes (offset: an i32/i64 Value)."""
    from mlir import ir
    from mlir.dialects import llvm

    dynamic = -2**31  # GEPOp's marker of a dynamic index
    return llvm.getelementptr(base.type, base, [offset], [dynamic],
                              ir.IntegerType.get_signless(8), 0)


def _if_thread0(tid):
    """An scf.if on tid == 0 (no results); use its then_block as insertion point."""
    from mlir.dialects import arith, scf

    from deepgen.compiler import irb

    return scf.IfOp(arith.cmpi(arith.CmpIPredicate.eq, tid, irb.const_index(0)))


def build_kernel(gm, v: Variant) -> None:
    """The probe kernel as a gpu.func in the gpu.module `gm` (insertion points explicit)."""
    from mlir import ir
    from mlir.dialects import gpu, llvm, nvvm, scf

    from deepgen.compiler import irb

    v.check()
    rows, cols = v.box
    i32, i64 = ir.IntegerType.get_signless(32), ir.IntegerType.get_signless(64)
    ptr, ptr_shared = llvm.PointerType.get(), llvm.PointerType.get(3)
    ptr_cluster = llvm.PointerType.get(7)  # shared::cluster
    chunk_t = ir.VectorType.get([CHUNK // 4], i32)
    with ir.InsertionPoint(gm.bodyRegion.blocks[0]):
        # (the bindings have no builder for !llvm.array: its spelling is parsed)
        _shared_global("tile", ir.Type.parse(f"!llvm.array<{v.box_bytes} x i8>"), 1024)
        _shared_global("bar", i64, 8)
        kernel = gpu.GPUFuncOp(ir.FunctionType.get([ptr, ptr], []), sym_name=ENTRY,
                               kernel=True, known_block_size=[THREADS, 1, 1])
        block = kernel.add_entry_block()
    desc, out = block.arguments
    with ir.InsertionPoint(block):
        tid = gpu.thread_id(gpu.Dimension.x)
        bx, by = gpu.block_id(gpu.Dimension.x), gpu.block_id(gpu.Dimension.y)
        col0, row0 = irb.mul(bx, cols), irb.mul(by, rows)
        tile = llvm.AddressOfOp(ptr_shared, "tile").result
        bar = llvm.AddressOfOp(ptr_shared, "bar").result

        init = _if_thread0(tid)
        with ir.InsertionPoint(init.then_block):
            nvvm.mbarrier_init(bar, irb.const_i32(1))
            nvvm.fence_mbarrier_init()
            nvvm.fence_proxy(nvvm.ProxyKind.async_shared, space=nvvm.SharedSpace.shared_cta)
            scf.yield_([])
        nvvm.barrier0()

        issue = _if_thread0(tid)
        with ir.InsertionPoint(issue.then_block):
            nvvm.mbarrier_arrive_expect_tx(None, bar, irb.const_i32(v.box_bytes))
            dst = llvm.AddrSpaceCastOp(ptr_cluster, tile).result
            # coordinates innermost first: (column, row)
            nvvm.cp_async_bulk_tensor_shared_cluster_global(
                dst, desc, [_i32(col0), _i32(row0)], bar, [])
            scf.yield_([])
        nvvm.mbarrier_try_wait_parity(bar, irb.const_i32(0), irb.const_i32(1_000_000))

        # tile (box_rows x row_bytes, maybe swizzled) -> out, 16 bytes per thread and step
        per_row = v.row_bytes // CHUNK
        out_cols = irb.mul(gpu.grid_dim(gpu.Dimension.x), cols)  # out is padded to the grid
        ebytes = ELEMENT_BYTES[v.dtype]
        for step in range(v.box_bytes // CHUNK // THREADS):
            q = irb.add(tid, step * THREADS)
            r, c = irb.div(q, per_row), irb.rem(q, per_row)
            sc = irb.xor(c, irb.rem(r, 8)) if v.swizzle == 128 else c
            src = _gep(tile, _i32(irb.mul(irb.add(irb.mul(r, per_row), sc), CHUNK)))
            data = llvm.LoadOp(chunk_t, src, alignment=CHUNK).result
            elem = irb.add(irb.mul(irb.add(row0, r), out_cols),
                           irb.add(col0, irb.mul(c, CHUNK // ebytes)))
            dst = _gep(out, _i64(irb.mul(elem, ebytes)))
            llvm.StoreOp(data, dst, alignment=CHUNK)
        gpu.return_([])


def make_grid_constant(module, entry: str = ENTRY, index: int = 0) -> None:
    """Mark parameter `index` of the lowered kernel (an llvm.func) as a by-value 128-byte
    `__grid_constant__`, with the wgmma strategy's builder."""
    from deepgen.compiler.strategies.wgmma import builders

    builders.mark_grid_constants(builders.lowered_kernel(module, entry), [index])


def probe_module(v: Variant, target: str = "sm_90a"):
    """The module holding the probe's gpu.module (in the current context)."""
    from mlir import ir

    from deepgen.compiler.passes.tile_gemm import kernel_module

    module = ir.Module.create()
    gm = kernel_module(module.operation, target)
    build_kernel(gm, v)
    module.operation.verify()
    return module


def compile_probe(v: Variant, target: str = "sm_90a"):
    """The probe's KernelArtifact (cubin for `target`, PTX kept as its assembly)."""
    from mlir import ir

    from deepgen.compiler.backend_nvidia import NVVM_LOWERING, assemble, to_ptx
    from deepgen.compiler.driver import make_context, run_pipeline
    from deepgen.compiler.target import get_target
    from deepgen.runtime.artifact import KernelArtifact
    from deepgen.toolchain import cached_toolchain_versions

    t0 = time.perf_counter()
    tgt = get_target(target)
    with make_context(), ir.Location.unknown():
        module = probe_module(v, target)
        run_pipeline(module, NVVM_LOWERING + EXTRA_LOWERING)
        make_grid_constant(module)
        module.operation.verify()
        ptx = to_ptx(module)
    cubin, resources = assemble(ptx, tgt)
    return KernelArtifact(
        backend="cuda", target=target, binary=cubin, launches=[launch(v)], spec={},
        config={"probe": "tma", "variant": v.name, "dtype": v.dtype, "box": list(v.box),
                "swizzle": v.swizzle, "cluster": list(v.cluster) if v.cluster else None},
        resources=resources, toolchain=cached_toolchain_versions(),
        compile_seconds=time.perf_counter() - t0, assembly=ptx)


def make_bundles(directory, only: str | None = None, log=print) -> list[str]:
    """Write DIRECTORY/<variant>/ (KernelArtifact.save) for each variant matching `only`."""
    import re

    directory = Path(directory)
    made = []
    for name, v in VARIANTS.items():
        if only and not re.search(only, name) and not re.search(only, "tma/" + name):
            continue
        t = time.perf_counter()
        compile_probe(v).save(directory / name)
        made.append(name)
        log(f"tma/{name:29s} {time.perf_counter() - t:5.2f} s")
    return made


if __name__ == "__main__":
    sys.exit(0 if make_bundles(sys.argv[1] if len(sys.argv) > 1 else "tma_bundles") else 1)
