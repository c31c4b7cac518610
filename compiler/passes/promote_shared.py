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
from mlir.dialects import arith, gpu

from deepgen.dialects import ops
from deepgen.spec import DTYPE_BYTES

from .. import irb
from ..config import k_contiguous, tile_shapes
from . import PassError, register
from .common import (ROLE, dynamic_shared, gemm_kernel, k_loop, record_shared_bytes,
                     shared_view, spec_of, str_attr, tile_of)

def tile_views(kernel, spec, cfg, stages: int | None) -> dict:
    """Views of the A and B tiles in the kernel's dynamic shared memory, A first: one tile
    each ([rows][cols] of config.tile_shapes), or `stages` of them ([stages][rows][cols]).
    Records the bytes they take in the kernel's deepgen.shared_bytes."""
    elem = irb.element_type(spec.dtype)
    elt = DTYPE_BYTES[spec.dtype]
    shapes = tile_shapes(cfg, spec)
    lead = [stages] if stages else []
    smem = dynamic_shared(kernel)
    views, offset = {}, 0
    with ir.InsertionPoint.after(smem.owner), kernel.location:
        for op in ("A", "B"):
            views[op] = shared_view(smem, offset, lead + shapes[op], elem)
            offset += (stages or 1) * shapes[op][0] * shapes[op][1] * elt
    record_shared_bytes(kernel, offset)
    return views


def find_roles(kernel, roles) -> dict:
    """{role: the result of the first op marked ROLE = role} for each of `roles` (one walk)."""
    found = {}
    for op in irb.walk_ops(kernel):
        if ROLE in op.attributes:
            role = str_attr(op, ROLE)
            if role in roles and role not in found:
                found[role] = op.results[0]
    for role in roles:
        if role not in found:
            raise PassError(kernel, f"no op marked {ROLE} = {role!r} (run deepgen-tile-gemm first)")
    return found


def distribution(cfg, spec, operand: str) -> dict:
    contig_k = k_contiguous(spec, operand)
    return {"tile_mn": cfg.BM if operand == "A" else cfg.BN, "tile_k": cfg.BK,
            "width": cfg.load_width_a if operand == "A" else cfg.load_width_b,
            "threads": cfg.threads, "contiguous": cfg.fetch_contiguous,
            "contig_k": contig_k,
            # SIMT keeps shared tiles K-major; the tensor-core path keeps global orientation
            "transpose": contig_k and cfg.mma == "none"}


def offset_from(value: ir.Value, origin: ir.Value) -> ir.Value:
    """value - origin, taking the addend straight out of `origin + x` (0 for origin itself)."""
    if value == origin:
        return irb.const_index(0)
    op = getattr(value.owner, "operation", None)  # None for block arguments
    if op is not None and op.name == "arith.addi":
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


def promote(kernel) -> None:
    spec, cfg = spec_of(kernel), tile_of(kernel)
    loop = k_loop(kernel)
    loads = {"A": [], "B": []}  # the fragment loads of each operand (one walk of the loop)
    for op in irb.walk_ops(loop):
        name = op.name
        if name == "deepgen.tile_fetch":
            raise PassError(loop, "the main loop already stages tiles in shared memory")
        if name == "deepgen.load_frag":
            loads.setdefault(str_attr(op, "operand"), []).append(op)
    views = tile_views(kernel, spec, cfg, None)
    roles = find_roles(kernel, ("m0", "n0"))
    origins = {"A": roles["m0"], "B": roles["n0"]}
    body = loop.regions[0].blocks[0]
    k0 = body.arguments[0]
    with ir.InsertionPoint.at_block_begin(body), loop.location:
        for operand in ("A", "B"):
            frags = loads[operand]
            if not frags:
                raise PassError(loop, f"no fragment loads of {operand} in the main loop")
            src = frags[0].operands[0]
            if any(f.operands[0] != src for f in frags):
                raise PassError(loop, f"fragment loads of {operand} read different memrefs")
            copy_tile(src, origins[operand], k0, views[operand], operand,
                      distribution(cfg, spec, operand))
        gpu.barrier()
    for operand in ("A", "B"):
        for f in loads[operand]:
            # the tile-local row or column before the loop (it does not depend on k), where the
            # ring's fragment prefetch can read it too (deepgen-mma-sync-pipeline's _reload)
            with ir.InsertionPoint(loop), f.location:
                mn = offset_from(f.operands[1], origins[operand])
            with ir.InsertionPoint(f), f.location:
                k = offset_from(f.operands[2], k0)
            f.operands[0] = views[operand]
            f.operands[1] = mn
            f.operands[2] = k
    with ir.InsertionPoint(body.operations[len(body.operations) - 1]), loop.location:
        gpu.barrier()  # the next step's copy must not overwrite tiles still being read


@register("deepgen-promote-shared",
          "stage A/B tiles in shared memory with cooperative copies and barriers")
def run(module) -> None:
    promote(gemm_kernel(module))
