"""deepgen-mma-sync-pipeline: the mma_sync strategy's software pipeline across the K loop.

With async_copy, the single-buffered loop of deepgen-promote-shared becomes a cp.async ring
of shared_stages stages (async_ring below); without it, tiles are double-buffered through
registers as on the SIMT path (deepgen-pipeline's double_buffer). With register_prefetch the
fragment loads of each MMA step move before the previous step's MMAs (and, in the ring, across
the K-tile boundary).
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import arith, gpu, nvgpu, scf

from deepgen.dialects import ops

from ... import irb
from ...config import mma_depth
from ...passes import PassError, register
from ...passes.common import K_LOOP, gemm_kernel, k_loop, spec_of, str_attr, tile_of
from ...passes.pipeline import (_kk, _move_compute, _ops_named, _replace_loop, double_buffer,
                                prefetch_fragments)
from ...passes.promote_shared import tile_views


def async_ring(kernel, spec, cfg) -> None:
    """cp.async ring of S = shared_stages stages (tensor-core path): S - 1 tiles in flight.

        copy tiles lb .. lb+(S-2)*BK -> stages 0 .. S-2          (one cp.async group each)
        for k0, stage: wait until tile k0 landed; barrier
                       copy tile k0+(S-1)*BK -> stage (stage+S-1)%S  (zero-fill past the end)
                       compute(stage); stage = (stage+1)%S
    One barrier per step: it also proves every thread is done with the stage being refilled
    (it was read in the previous step).

    With register_prefetch (and at least two MMA steps per tile) the fragments also cross the
    tile boundary, so no warp waits on shared memory after the barrier:

        wait tile lb; barrier; frags = fragments of step 0 of stage 0
        for k0, stage, frags: copy tile k0+(S-1)*BK -> stage (stage+S-1)%S
                              steps 0 .. last-1 (step 0 uses frags)
                              wait tile k0+BK; barrier; frags' = step 0 of stage+1
                              last step; yield frags'
    The barrier sits after the last step's fragments were read, so it still guards the refill."""
    loop = k_loop(kernel)
    body = loop.regions[0].blocks[0]
    fetches = _ops_named(body, "deepgen.tile_fetch")
    if len(fetches) != 2:
        raise PassError(loop, "expected the single-buffered loop of deepgen-promote-shared")
    S = cfg.shared_stages
    old_views = {str_attr(op, "operand"): op.operands[1] for op in _ops_named(body, "deepgen.tile_stash")}
    views = tile_views(kernel, spec, cfg, S)
    lb, ub, step = loop.operands[0], loop.operands[1], loop.operands[2]
    copies = [(str_attr(f, "operand"), f.operands[0], f.operands[1], f.attributes["distribution"])
              for f in fetches]
    last_kk = cfg.BK - mma_depth(cfg)
    carry = [op for op in _ops_named(body, "deepgen.load_frag") if _kk(op) == 0] \
        if cfg.register_prefetch and cfg.mma != "none" and last_kk > 0 else []

    def copy_all(k, stage):
        # Past the end the copy zero-fills; the lowering clamps every index into the matrix.
        # (Measured on the H100: clamping per vector beats one select of k per step, and the
        # modulo below beats a compare-and-select rotation: 324 vs 289 TFLOP/s, bf16 4096^3.)
        valid = irb.lt(k, ub)
        return [ops.tile_copy_async(src, origin, k, valid, irb.matrix_view(views[o], stage),
                                    operand=o, distribution=d) for o, src, origin, d in copies]

    def next_stage(s_, by: int):
        return irb.rem(irb.add(s_, by), S)

    def wait_for_tile(token):  # the oldest tile in flight has landed and every thread sees it
        nvgpu.DeviceAsyncWaitOp(token, numGroups=2 * (S - 2))
        gpu.barrier()

    def first_fragments(stage):
        at = {o: irb.matrix_view(views[o], stage) for o in views}
        return [_reload(f, at[str_attr(f, "operand")]) for f in carry]

    with ir.InsertionPoint(loop), loop.location:
        tokens = []
        for s_ in range(S - 1):
            tokens += copy_all(irb.val(irb.add(lb, irb.mul(step, s_))), s_)
        frags = []
        if carry:
            wait_for_tile(tokens[-1])
            frags = first_fragments(0)
        n_acc = len(loop.operands) - 3
        new = scf.ForOp(lb, ub, step, list(loop.operands[3:]) + [irb.const_index(0)] + frags)
        irb.set_attr(new, K_LOOP, None)
    nb = new.regions[0].blocks[0]
    k0, stage = nb.arguments[0], nb.arguments[1 + n_acc]
    with ir.InsertionPoint(nb), loop.location:
        if not carry:
            wait_for_tile(tokens[-1])
        k_pref = arith.addi(k0, arith.muli(step, irb.const_index(S - 1)))
        copy_all(k_pref, next_stage(stage, S - 1))
        current = {o: irb.matrix_view(views[o], stage) for o in views}
    _move_compute(body, nb, old_views, current)
    old_yield = body.operations[len(body.operations) - 1]
    next_frags, stage_next = [], None
    if carry:
        for f, arg in zip(carry, list(nb.arguments)[2 + n_acc:]):
            f.results[0].replace_all_uses_with(arg)
        anchor = next(op.operation for op in nb.operations
                      if _kk(op) == last_kk and op.operation.name != "deepgen.load_frag")
        with ir.InsertionPoint(anchor), loop.location:
            wait_for_tile(tokens[-1])
            stage_next = next_stage(stage, 1)
            next_frags = first_fragments(stage_next)
        for f in carry:
            f.erase()
    with ir.InsertionPoint(nb), loop.location:
        stage_next = stage_next if stage_next is not None else next_stage(stage, 1)
        scf.yield_(list(old_yield.operands) + [stage_next] + next_frags)
    with ir.InsertionPoint.after(new), loop.location:
        nvgpu.DeviceAsyncWaitOp(tokens[-1], numGroups=0)  # nothing in flight at exit
    _replace_loop(loop, new, old_views)


def _reload(frag, view) -> ir.Value:
    """Fragment load `frag` again, from `view` (another stage of the ring); left untagged so
    that prefetch_fragments does not move it."""
    return ops.load_frag(frag.results[0].type, view, frag.operands[1],
                         irb.const_index(_kk(frag)), operand=str_attr(frag, "operand"))


@register("deepgen-mma-sync-pipeline",
          "mma_sync: cp.async ring (or register double buffer) and fragment prefetch")
def run(module) -> None:
    kernel = gemm_kernel(module)
    spec, cfg = spec_of(kernel), tile_of(kernel)
    if cfg.async_copy:
        async_ring(kernel, spec, cfg)
    elif cfg.shared_stages == 2:
        double_buffer(kernel, spec, cfg)
    if cfg.register_prefetch:
        prefetch_fragments(kernel)
