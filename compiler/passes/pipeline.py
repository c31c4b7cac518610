"""deepgen-pipeline: double-buffer shared memory and registers across the K loop.

With shared_stages = 2 the single-buffered loop of deepgen-promote-shared

    for k0: fetch+stash A,B(k0) -> smem; barrier; compute(smem); barrier

becomes a software pipeline with two shared-memory stages and the next tile in registers:

    fetch+stash A,B(lb) -> smem[0]; barrier
    for k0, stage: regs = k0+BK < ub ? fetch(k0+BK) : 0      (global loads in flight ...)
                   compute(smem[stage])                      (... while the FMAs run)
                   if k0+BK < ub: stash(regs -> smem[1-stage]); barrier

one barrier per step instead of two. With register_prefetch, the fragment loads of inner
step kk+1 move before the FMAs of step kk, so shared-memory latency hides behind arithmetic.

Shared by the strategies: the mma_sync strategy's cp.async ring
(compiler/strategies/mma_sync/ring.py) builds on the helpers here.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import arith, gpu, scf

from deepgen.dialects import ops

from .. import irb
from . import PassError, register
from .common import K_LOOP, KK, gemm_kernel, k_loop, spec_of, str_attr, tile_of
from .promote_shared import tile_views


def _ops_named(block, name):
    return [op.operation for op in block.operations if op.operation.name == name]


def double_buffer(kernel, spec, cfg) -> None:
    loop = k_loop(kernel)
    body = loop.regions[0].blocks[0]
    fetches = _ops_named(body, "deepgen.tile_fetch")
    stashes = _ops_named(body, "deepgen.tile_stash")
    barriers = _ops_named(body, "gpu.barrier")
    if len(fetches) != 2 or len(stashes) != 2 or len(barriers) != 2:
        raise PassError(loop, "expected the single-buffered loop of deepgen-promote-shared "
                              f"(2 fetches, 2 stashes, 2 barriers; found {len(fetches)}, "
                              f"{len(stashes)}, {len(barriers)})")
    old_views = {str_attr(s, "operand"): s.operands[1] for s in stashes}
    views = tile_views(kernel, spec, cfg, 2)
    lb, ub, step = loop.operands[0], loop.operands[1], loop.operands[2]
    copies = [(str_attr(f, "operand"), f.operands[0], f.operands[1], f.results[0].type,
               f.attributes["distribution"]) for f in fetches]

    def fetch_all(k):
        return [ops.tile_fetch(t, src, origin, k, operand=o, distribution=d)
                for o, src, origin, t, d in copies]

    def stash_all(regs, stage):
        for (o, _, _, _, d), r in zip(copies, regs):
            ops.tile_stash(r, irb.matrix_view(views[o], stage), operand=o, distribution=d)

    with ir.InsertionPoint(loop), loop.location:
        stash_all(fetch_all(lb), 0)  # prologue: the first tile into stage 0
        gpu.barrier()
        inits = list(loop.operands[3:]) + [irb.const_index(0)]
        new = scf.ForOp(lb, ub, step, inits)
        irb.set_attr(new, K_LOOP, None)
    nb = new.regions[0].blocks[0]
    k0, stage = nb.arguments[0], nb.arguments[len(nb.arguments) - 1]
    with ir.InsertionPoint(nb), loop.location:
        k_next = arith.addi(k0, step)
        has_next = irb.lt(k_next, ub)
        prefetch = scf.IfOp(has_next, [c[3] for c in copies], has_else=True)
        with ir.InsertionPoint(prefetch.then_block):
            scf.yield_(fetch_all(k_next))
        with ir.InsertionPoint(prefetch.else_block):
            scf.yield_([irb.zeros(c[3]) for c in copies])
        current = {o: irb.matrix_view(views[o], stage) for o in views}
    old_yield = body.operations[len(body.operations) - 1]
    _move_compute(body, nb, old_views, current)
    with ir.InsertionPoint(nb), loop.location:
        guard = scf.IfOp(has_next)
        with ir.InsertionPoint(guard.then_block):
            stash_all(list(prefetch.results), arith.subi(irb.const_index(1), stage))
            scf.yield_([])
        gpu.barrier()
        scf.yield_(list(old_yield.operands) + [arith.subi(irb.const_index(1), stage)])
    _replace_loop(loop, new, old_views)


def _kk(op):
    """The inner-K step an op belongs to, or None."""
    attrs = op.operation.attributes
    return ir.IntegerAttr(attrs[KK]).value if KK in attrs else None


def _move_compute(body, nb, old_views, current) -> None:
    """Move the old body's compute into the new loop body; drop its copies and barriers."""
    for old_arg, new_arg in zip(body.arguments, nb.arguments):
        old_arg.replace_all_uses_with(new_arg)
    fetches = []  # erased last: the stashes use their results
    for op in [op.operation for op in body.operations]:  # one pass: the body is unrolled
        name = op.name
        if name in ("deepgen.tile_stash", "gpu.barrier"):
            op.erase()
        elif name == "deepgen.tile_fetch":
            fetches.append(op)
        elif name != "scf.yield":
            op.detach_from_parent()
            nb.append(op)
    for op in fetches:
        op.erase()
    for o, v in old_views.items():
        v.replace_all_uses_with(current[o])


def _replace_loop(loop, new, old_views) -> None:
    for i, r in enumerate(loop.results):
        r.replace_all_uses_with(new.results[i])
    loop.erase()
    for v in old_views.values():
        if not list(v.uses):
            v.owner.erase()


def prefetch_fragments(kernel) -> None:
    """Issue the fragment loads of each inner step before the FMAs (or MMAs) of the previous one."""
    for block in _straight_blocks(k_loop(kernel)):
        ops_ = [op.operation for op in block.operations]
        tagged = [(_kk(op), op) for op in ops_ if KK in op.attributes]
        steps = sorted({kk for kk, _ in tagged})
        for prev, kk in zip(steps, steps[1:]):
            first_fma = next(op for k, op in tagged if k == prev and op.name != "deepgen.load_frag")
            for k, op in tagged:
                if k == kk and op.name == "deepgen.load_frag":
                    op.move_before(first_fma)


def _straight_blocks(loop):
    """Blocks under the K loop that hold fragment loads."""
    seen = []
    for op in irb.walk_ops(loop, "deepgen.load_frag"):
        b = op.block
        if b not in seen:
            seen.append(b)
    return seen


@register("deepgen-pipeline",
          "double-buffer shared memory (and fragment registers) across the K loop")
def run(module) -> None:
    kernel = gemm_kernel(module)
    spec, cfg = spec_of(kernel), tile_of(kernel)
    if cfg.async_copy:
        raise PassError(kernel, "async_copy: the cp.async ring is the mma_sync strategy's own "
                                "pipeline (deepgen-mma-sync-pipeline), not deepgen-pipeline's")
    if cfg.shared_stages == 2:
        double_buffer(kernel, spec, cfg)
    if cfg.register_prefetch:
        prefetch_fragments(kernel)
