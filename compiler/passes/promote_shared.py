"""deepgen-promote-shared: stage the A and B tiles of each K step in shared memory.

Before: the main loop's fragment loads (`deepgen.load_frag`) read global memory, so every
thread re-reads what its neighbours read. After: at the top of each K step the block copies
the BM x BK tile of A and the BN x BK tile of B cooperatively into shared memory
(`deepgen.tile_fetch` global -> registers, `deepgen.tile_stash` registers -> shared, both
lowered to vectorized, coalesced accesses by deepgen-vectorize), a barrier publishes them, the
fragment loads read the K-major shared tiles at tile-local indices, and a barrier at the end
of the step guards the tiles before the next copy overwrites them.

Shared memory is the kernel's dynamic shared memory (`gpu.dynamic_shared_memory` + `memref.view`),
laid out as config.tile_shapes says (K-major [BK][BM + smem_pad] for SIMT); its size is recorded in
the kernel's deepgen.shared_bytes attribute for the launcher.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import arith, gpu, memref

from deepgen.dialects import ops
from deepgen.spec import DTYPE_BYTES

from .. import irb
from ..config import k_contiguous, tile_shapes
from . import PassError, register
from .common import ROLE, SHARED, gemm_kernel, k_loop, spec_of, str_attr, tile_of

WORKGROUP = "#gpu.address_space<workgroup>"


def workgroup_space() -> ir.Attribute:
    return ir.Attribute.parse(WORKGROUP)


def shared_view(smem, byte_offset: int, shape: list[int], elem: ir.Type) -> ir.Value:
    t = ir.MemRefType.get(shape, elem, memory_space=workgroup_space())
    return memref.view(t, smem, irb.const_index(byte_offset), [])


def dynamic_shared(kernel) -> ir.Value:
    """The kernel's dynamic shared memory as bytes (one op at the top of the kernel)."""
    for op in kernel.regions[0].blocks[0].operations:
        if op.operation.name == "gpu.dynamic_shared_memory":
            return op.results[0]
    entry = kernel.regions[0].blocks[0]
    with ir.InsertionPoint.at_block_begin(entry), kernel.location:
        t = ir.MemRefType.get([ir.ShapedType.get_dynamic_size()], ir.IntegerType.get_signless(8),
                              memory_space=workgroup_space())
        return gpu.dynamic_shared_memory(t)


def find_role(kernel, role: str) -> ir.Value:
    for op in irb.walk_ops(kernel):
        if ROLE in op.attributes and str_attr(op, ROLE) == role:
            return op.results[0]
    raise PassError(kernel, f"no op marked {ROLE} = {role!r} (run deepgen-tile-gemm first)")


def distribution(cfg, spec, operand: str) -> dict:
    contig_k = k_contiguous(spec, operand)
    return {"tile_mn": cfg.BM if operand == "A" else cfg.BN, "tile_k": cfg.BK,
            "width": cfg.load_width_a if operand == "A" else cfg.load_width_b,
            "threads": cfg.threads, "contiguous": cfg.fetch_contiguous,
            "contig_k": contig_k,
            # SIMT keeps shared tiles K-major; the tensor-core path keeps global orientation
            "transpose": contig_k and cfg.mma == "none"}


def offset_from(value: ir.Value, origin: ir.Value) -> ir.Value:
    """value - origin, taking the addend straight out of `origin + x`."""
    owner = value.owner
    if isinstance(owner, ir.OpView) or hasattr(owner, "name"):
        op = owner.operation if hasattr(owner, "operation") else owner
        if op.name == "arith.addi":
            a, b = op.operands
            if a == origin:
                return b
            if b == origin:
                return a
    return arith.subi(value, origin)


def fetch_regs_type(dist: dict, elem: ir.Type) -> ir.Type:
    n = dist["tile_mn"] * dist["tile_k"] // (dist["threads"] * dist["width"])
    return ir.VectorType.get([n, dist["width"]], elem)


def copy_tile(src, origin, k0, dst, operand, dist) -> None:
    regs = ops.tile_fetch(fetch_regs_type(dist, ir.MemRefType(src.type).element_type), src,
                          origin, k0, operand=operand, distribution=dist)
    ops.tile_stash(regs, dst, operand=operand, distribution=dist)


def frag_loads(loop, operand: str) -> list:
    return [op for op in irb.walk_ops(loop, "deepgen.load_frag") if str_attr(op, "operand") == operand]


def promote(kernel) -> None:
    spec, cfg = spec_of(kernel), tile_of(kernel)
    loop = k_loop(kernel)
    if any(op.name == "deepgen.tile_fetch" for op in irb.walk_ops(loop)):
        raise PassError(loop, "the main loop already stages tiles in shared memory")
    elem = irb.element_type(spec.dtype)
    elt = DTYPE_BYTES[spec.dtype]
    shapes = tile_shapes(cfg, spec)
    smem = dynamic_shared(kernel)
    size_a = shapes["A"][0] * shapes["A"][1] * elt
    with ir.InsertionPoint.after(smem.owner), kernel.location:
        views = {"A": shared_view(smem, 0, shapes["A"], elem),
                 "B": shared_view(smem, size_a, shapes["B"], elem)}
    origins = {"A": find_role(kernel, "m0"), "B": find_role(kernel, "n0")}
    body = loop.regions[0].blocks[0]
    k0 = body.arguments[0]
    with ir.InsertionPoint.at_block_begin(body), loop.location:
        for operand in ("A", "B"):
            frags = frag_loads(loop, operand)
            if not frags:
                raise PassError(loop, f"no fragment loads of {operand} in the main loop")
            src = frags[0].operands[0]
            if any(f.operands[0] != src for f in frags):
                raise PassError(loop, f"fragment loads of {operand} read different memrefs")
            copy_tile(src, origins[operand], k0, views[operand], operand,
                      distribution(cfg, spec, operand))
        gpu.barrier()
    for operand in ("A", "B"):
        for f in frag_loads(loop, operand):
            with ir.InsertionPoint(f), f.location:
                mn = offset_from(f.operands[1], origins[operand])
                k = offset_from(f.operands[2], k0)
            f.operands[0] = views[operand]
            f.operands[1] = mn
            f.operands[2] = k
    with ir.InsertionPoint(body.operations[len(body.operations) - 1]), loop.location:
        gpu.barrier()  # the next step's copy must not overwrite tiles still being read
    irb.set_attr(kernel, SHARED, size_a + shapes["B"][0] * shapes["B"][1] * elt)


@register("deepgen-promote-shared",
          "stage A/B tiles in shared memory with cooperative copies and barriers")
def run(module) -> None:
    promote(gemm_kernel(module))
