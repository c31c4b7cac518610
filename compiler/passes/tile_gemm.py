"""deepgen-tile-gemm: the affine description -> a GPU kernel tiled to blocks, warps and threads.

Block tiling: block (x, y, z) computes the BM x BN tile of C at (y*BM, x*BN) of matrix z.
Thread mapping and register tiling: each thread keeps a TM x TN micro-tile of C in registers
(TM x TN/thread_scatter_n vectors of f32) at the rows and columns given by the warp/lane
arrangement of the TileConfig (see compiler/config.py). The main loop walks K in steps of BK;
its body reads `deepgen.load_frag` fragments straight from global memory (promotion to
shared memory is the next pass) and accumulates with vector FMAs; the epilogue writes the
micro-tile with `deepgen.store_frag`. Partial tiles are safe by construction: fragment loads
and stores are masked by the later lowering wherever a tile can cross M, N or K.

The kernel carries its launch rule (grid, block, argument names) as attributes; the host
function is dropped, since DeepGen's runtime is the host.
"""
from __future__ import annotations

from typing import NamedTuple

from mlir import ir
from mlir.dialects import arith, gpu, llvm, nvvm, scf, vector

from deepgen.dialects import ops
from deepgen.spec import SpecError

from .. import irb
from ..config import TileConfig, epilogue_slab_bytes, epilogue_slab_shape, mma_depth, validate
from ..target import amdgpu_features, get_target, ptx_chip_features
from . import PassError, register
from .common import (GEMM_NEST, GRID, K_LOOP, KERNEL_MODULE, KK, ORDER, ROLE, SPEC, TILE,
                     dynamic_shared, record_shared_bytes, set_args, shared_view, spec_of,
                     tile_of)

TARGET_ATTR = "deepgen.target"


class Epilogue(NamedTuple):
    """What the kernel's store_frag ops take besides the value: the chain's attribute text,
    the bias (or None) and the scales (scale_a, scale_b) (or None)."""
    chain: str
    bias: ir.Value | None
    scales: tuple | None

    def store(self, value, dst, m, n, alpha, beta):
        return ops.store_frag(value, dst, m, n, alpha, beta, epilogue=self.chain,
                              bias=self.bias, scales=self.scales)


def module_target(module) -> str:
    attrs = module.attributes
    return ir.StringAttr(attrs[TARGET_ATTR]).value if TARGET_ATTR in attrs else "sm_90a"


def _find_role(nest, role: str):
    for op in irb.walk_ops(nest):
        if ROLE in op.attributes and ir.StringAttr(op.attributes[ROLE]).value == role:
            return op
    raise PassError(nest, f"the GEMM nest has no op with {ROLE} = {role!r}")


def kernel_module(module, target_name: str, math: bool = False):
    """The gpu.module holding DeepGen's kernels, created on first use. `math`: the kernels
    call device math functions (EpilogueSpec.needs_math), so the NVVM target links libdevice
    (the ROCDL path links ocml in backend_amdgpu)."""
    for op in module.regions[0].blocks[0].operations:
        if op.operation.name == "gpu.module":
            return op
    target = get_target(target_name)
    module.attributes["gpu.container_module"] = ir.UnitAttr.get()
    with ir.InsertionPoint(module.regions[0].blocks[0]), module.location:
        if target.is_nvidia:
            chip, features = ptx_chip_features(target)
            tgt = ir.Attribute.parse(f'#nvvm.target<chip = "{chip}", features = "{features}"'
                                     f'{_libdevice_link() if math else ""}>')
        else:
            tgt = ir.Attribute.parse(f'#rocdl.target<chip = "{target.name}", '
                                     f'features = "{amdgpu_features(target)}">')
        gm = gpu.GPUModuleOp(KERNEL_MODULE, targets=ir.ArrayAttr.get([tgt]))
        gm.bodyRegion.blocks.append()
    return gm


def _libdevice_link() -> str:
    """The #nvvm.target `link` field naming libdevice from PyPI nvidia-nvvm; "" when it is not
    installed (then gpu-module-to-binary links the libdevice the MLIR bindings embed)."""
    from deepgen.toolchain import find_libdevice

    path = find_libdevice()
    return f', link = ["{path}"]' if path else ""


def thread_offsets(cfg: TileConfig, axis: str) -> list[int]:
    """Static offsets (relative to the thread's base) of a thread's fragment groups along M or N."""
    t = cfg.TM if axis == "m" else cfg.TN
    ws = getattr(cfg, f"warp_scatter_{axis}")
    ts = getattr(cfg, f"thread_scatter_{axis}")
    lanes = getattr(cfg, f"lanes_{axis}")
    threads = getattr(cfg, f"threads_{axis}")
    return [c * threads * ws + s * lanes * ts for c in range(t // ws) for s in range(ws // ts)]


def thread_bases(cfg: TileConfig, tid, warp_size: int):
    """(base_m, base_n): the run-time part of a thread's first row and column in the block tile."""
    warp, lane = irb.div(tid, warp_size), irb.rem(tid, warp_size)
    wm, wn = irb.div(warp, cfg.warps_n), irb.rem(warp, cfg.warps_n)
    lm, ln = irb.div(lane, cfg.lanes_n), irb.rem(lane, cfg.lanes_n)
    base_m = irb.add(irb.mul(wm, cfg.lanes_m * cfg.warp_scatter_m), irb.mul(lm, cfg.thread_scatter_m))
    base_n = irb.add(irb.mul(wn, cfg.lanes_n * cfg.warp_scatter_n), irb.mul(ln, cfg.thread_scatter_n))
    return base_m, base_n


def build_kernel(module, nest) -> None:
    spec = spec_of(nest)
    try:
        cfg = tile_of(nest)
        target = get_target(module_target(module))
        validate(cfg, spec, target)
    except (SpecError, ValueError) as e:
        raise PassError(nest, f"invalid tile configuration: {e}") from None
    a = _find_role(nest, "A").operands[0]
    b = _find_role(nest, "B").operands[0]
    c = _find_role(nest, "C").operands[1]
    epilogue = ir.StringAttr(nest.attributes["deepgen.epilogue"]).value
    # the named operands (GemmSpec.operands): the bias, the scales
    named = [_find_role(nest, n).operands[0] for n in spec.operands()]
    f32 = ir.F32Type.get()
    types = [a.type, b.type, c.type, f32, f32] + [v.type for v in named]
    grid = [-(-spec.N // cfg.BN), -(-spec.M // cfg.BM), spec.batch]

    gm = kernel_module(module, target.name, spec.epilogue.needs_math)
    with ir.InsertionPoint(gm.bodyRegion.blocks[0]), nest.location:
        kernel = gpu.GPUFuncOp(ir.FunctionType.get(types, []), sym_name="deepgen_gemm",
                               kernel=True, known_block_size=[cfg.threads, 1, 1])
        kernel.attributes[SPEC] = nest.attributes[SPEC]
        kernel.attributes[TILE] = nest.attributes[TILE]
        irb.set_attr(kernel, GRID, grid)
        irb.set_attr(kernel, ORDER, 0)
        set_args(kernel, ["A", "B", "C", "alpha", "beta", *spec.operands()])
        block = kernel.add_entry_block()
    A, B, C, alpha, beta = list(block.arguments)[:5]
    # the epilogue's operands: the store_frag ops' trailing arguments
    args = dict(zip(spec.operands(), list(block.arguments)[5:]))
    scales = (args["scale_a"], args["scale_b"]) if "scale_a" in args else None
    epilogue = Epilogue(epilogue, args.get("bias"), scales)
    with ir.InsertionPoint(block), nest.location:
        bx, by = gpu.block_id(gpu.Dimension.x), gpu.block_id(gpu.Dimension.y)
        bz = gpu.block_id(gpu.Dimension.z) if spec.batch > 1 else 0
        tid = gpu.thread_id(gpu.Dimension.x)
        m0, n0 = irb.mul(by, cfg.BM), irb.mul(bx, cfg.BN)
        irb.set_attr(m0.owner, ROLE, "m0")
        irb.set_attr(n0.owner, ROLE, "n0")
        views = [irb.matrix_view(x, bz) for x in (A, B, C)]
        if cfg.mma == "none":
            _simt_body(spec, cfg, target, tid, m0, n0, *views, alpha, beta, epilogue)
        else:
            _mma_body(kernel, spec, cfg, target, tid, m0, n0, *views, alpha, beta, epilogue)
        gpu.return_([])


def _k_loop(spec, cfg, accs, steps_fn):
    """The main loop over K tiles; steps_fn(accs, k_base, kk_steps) emits one K tile's work.

    kk_unroll < BK (SIMT) keeps an inner loop of kk_unroll unrolled steps per iteration."""
    loop = scf.ForOp(irb.const_index(0), irb.const_index(spec.K), irb.const_index(cfg.BK), accs)
    irb.set_attr(loop, K_LOOP, None)
    step = mma_depth(cfg) if cfg.mma != "none" else 1
    unroll = cfg.BK if cfg.mma != "none" else (cfg.kk_unroll or cfg.BK)
    with ir.InsertionPoint(loop.body):
        k0 = loop.induction_variable
        accs = list(loop.inner_iter_args)
        if unroll == cfg.BK:
            accs = steps_fn(accs, k0, range(0, cfg.BK, step))
        else:
            inner = scf.ForOp(irb.const_index(0), irb.const_index(cfg.BK),
                              irb.const_index(unroll), accs)
            with ir.InsertionPoint(inner.body):
                kk0 = irb.add(k0, inner.induction_variable)
                scf.yield_(steps_fn(list(inner.inner_iter_args), kk0, range(unroll)))
            accs = list(inner.results)
        scf.yield_(accs)
    return loop


def _simt_body(spec, cfg, target, tid, m0, n0, A_b, B_b, C_b, alpha, beta, epilogue):
    f32 = ir.F32Type.get()
    in_t = irb.element_type(spec.dtype)
    tsm, tsn = cfg.thread_scatter_m, cfg.thread_scatter_n
    frag_a_t, frag_b_t = irb.vector_type(tsm, in_t), irb.vector_type(tsn, in_t)
    offs_m, offs_n = thread_offsets(cfg, "m"), thread_offsets(cfg, "n")
    base_m, base_n = thread_bases(cfg, tid, target.warp_size)
    # origin + offset-in-tile, so that promotion can take the offset back out
    rows_a = [irb.val(irb.add(m0, irb.add(base_m, o))) for o in offs_m]
    cols_b = [irb.val(irb.add(n0, irb.add(base_n, o))) for o in offs_n]
    zero = irb.zeros(irb.vector_type(tsn, f32))
    loop = _k_loop(spec, cfg, [zero] * (cfg.TM * len(offs_n)),
                   lambda accs, kb, steps: _k_steps(accs, A_b, B_b, rows_a, cols_b, kb, steps,
                                                    cfg, frag_a_t, frag_b_t))
    for r in range(cfg.TM):
        m = irb.val(irb.add(rows_a[r // tsm], r % tsm))
        for h, n in enumerate(cols_b):
            epilogue.store(loop.results[r * len(offs_n) + h], C_b, m, n, alpha, beta)


def _mma_body(kernel, spec, cfg, target, tid, m0, n0, A_b, B_b, C_b, alpha, beta, epilogue):
    """Warp tiles of tensor-core MMAs: warp (wm, wn) owns a WM x WN tile of C made of
    (WM/16) x (WN/8) m16n8k16 (tf32: m16n8k8, int8: m16n8k32) accumulators (4 f32 per thread
    each; int8: 4 s32, converted to f32 after the main loop). Fragments are `deepgen.load_frag`
    ops with i32 results: the A fragment of a 16-row block, or the B fragments of two 8-column
    blocks, one MMA deep (deepgen-vectorize lowers them to ldmatrix x4, or to tf32-rounded
    shared loads)."""
    f32 = ir.F32Type.get()
    i32 = ir.IntegerType.get_signless(32)
    acc_t = i32 if spec.is_int8 else f32  # the s32 accumulator of int8 (exact, wraps as s32)
    wm_, wn_ = cfg.warp_tile
    mi, nj = wm_ // 16, wn_ // 8
    warp, lane = irb.div(tid, target.warp_size), irb.rem(tid, target.warp_size)
    wm, wn = irb.div(warp, cfg.warps_n), irb.rem(warp, cfg.warps_n)
    rows_a = [irb.val(irb.add(m0, irb.add(irb.mul(wm, wm_), 16 * i))) for i in range(mi)]
    cols_b = [irb.val(irb.add(n0, irb.add(irb.mul(wn, wn_), 16 * j))) for j in range(nj // 2)]
    frag_t = irb.vector_type(4, ir.IntegerType.get_signless(32))
    tf32 = cfg.mma == "m16n8k8"
    from deepgen.dtypes import dtype as dtype_info
    ptx_name = "tf32" if tf32 else dtype_info(spec.dtype).ptx  # s8 for int8
    ptx_t = ir.Attribute.parse(f"#nvvm.mma_type<{ptx_name}>")
    shape = ir.Attribute.parse(f"#nvvm.shape<m = 16, n = 8, k = {mma_depth(cfg)}>")
    acc_struct = ir.Type.parse(f"!llvm.struct<({', '.join([str(acc_t)] * 4)})>")
    # integer MMAs name their overflow: wrapped, as s32 arithmetic (torch._int_mm's)
    overflow = nvvm.MMAIntOverflow.wrapped if spec.is_int8 else None
    # nvvm.mma.sync takes bf16 pairs as packed i32 but f16 pairs as vector<2xf16>
    half2 = ir.VectorType.get([2], ir.F16Type.get())
    as_operand = (lambda r: llvm.bitcast(half2, r)) if spec.dtype == "f16" else (lambda r: r)

    def steps_fn(accs, k_base, steps):
        ks = [irb.val(irb.add(k_base, kk)) for kk in steps]  # first: lets passes move loads
        for kk, k in zip(steps, ks):
            fa = [ops.load_frag(frag_t, A_b, r, k, operand="A") for r in rows_a]
            fb = [ops.load_frag(frag_t, B_b, c, k, operand="B") for c in cols_b]
            for f in fa + fb:
                irb.set_attr(f.owner, KK, kk)
            a_regs = [[as_operand(vector.extract(f, [], [x])) for x in range(4)] for f in fa]
            b_regs = [[as_operand(vector.extract(f, [], [x])) for x in range(4)] for f in fb]
            for i in range(mi):
                for j in range(nj):
                    idx = i * nj + j
                    c_vals = [vector.extract(accs[idx], [], [x]) for x in range(4)]
                    mma = nvvm.MmaOp(acc_struct, shape, nvvm.MMALayout.row,
                                     nvvm.MMALayout.col, a_regs[i],
                                     b_regs[j // 2][2 * (j % 2):2 * (j % 2) + 2], c_vals,
                                     multiplicandAPtxType=ptx_t, multiplicandBPtxType=ptx_t,
                                     intOverflowBehavior=overflow)
                    irb.set_attr(mma, KK, kk)
                    vals = [llvm.extractvalue(acc_t, mma.result, [x]) for x in range(4)]
                    accs[idx] = vector.from_elements(irb.vector_type(4, acc_t), vals)
        return accs

    loop = _k_loop(spec, cfg, [irb.zeros(irb.vector_type(4, acc_t))] * (mi * nj), steps_fn)
    accs = list(loop.results)
    if spec.is_int8:  # exact while |acc| < 2^24, else one f32 rounding
        accs = [arith.sitofp(irb.vector_type(4, f32), a) for a in accs]
    g, t2 = irb.div(lane, 4), irb.mul(irb.rem(lane, 4), 2)
    pair_t = irb.vector_type(2, f32)

    def pairs(i):
        """(row, column, value) of the 2-wide pieces of the accumulators of row block i,
        relative to the row block's first row and the warp tile's first column."""
        for j in range(nj):
            for half in range(2):  # c0,c1 at row g; c2,c3 at row g + 8
                part = vector.extract_strided_slice(pair_t, accs[i * nj + j], [2 * half], [2], [1])
                yield irb.add(g, 8 * half), irb.add(8 * j, t2), part

    if cfg.epilogue_smem:
        _staged_epilogue(kernel, cfg, warp, lane, pairs, rows_a, cols_b[0], C_b, alpha, beta,
                         epilogue)
        return
    for i in range(mi):
        for r, c, part in pairs(i):
            epilogue.store(part, C_b, irb.val(irb.add(rows_a[i], r)),
                           irb.val(irb.add(cols_b[0], c)), alpha, beta)


def _staged_epilogue(kernel, cfg, warp, lane, pairs, rows_a, col0, C_b, alpha, beta, epilogue):
    """TileConfig.epilogue_smem: C leaves through shared memory, one 16-row block of the warp
    tile at a time. The warp writes that block's accumulators into its own slab, then reads
    it back as rows of store_width-element vectors, lane after lane along each row, so that
    every global store (and the read of C when beta != 0) is a whole-row, coalesced vector."""
    f32 = ir.F32Type.get()
    slab_shape = epilogue_slab_shape(cfg)
    record_shared_bytes(kernel, epilogue_slab_bytes(cfg))
    slab = irb.matrix_view(shared_view(dynamic_shared(kernel), 0, slab_shape, f32), warp)
    sw = cfg.store_width
    per_row = cfg.warp_tile[1] // sw  # vectors per slab row
    vec_t = irb.vector_type(sw, f32)
    gpu.barrier()  # every warp is done with the main loop's shared tiles
    for i, row0 in enumerate(rows_a):
        if i:
            nvvm.bar_warp_sync(irb.const_i32(-1))  # the warp has read the previous block
        for r, c, part in pairs(i):
            vector.store(part, slab, [irb.val(r), irb.val(c)], alignment=8)
        nvvm.bar_warp_sync(irb.const_i32(-1))
        for p in range(16 * per_row // 32):
            v = irb.add(lane, 32 * p)
            r, c = irb.div(v, per_row), irb.mul(irb.rem(v, per_row), sw)
            part = vector.load(vec_t, slab, [irb.val(r), irb.val(c)], alignment=4 * sw)
            epilogue.store(part, C_b, irb.val(irb.add(row0, r)), irb.val(irb.add(col0, c)),
                           alpha, beta)


def _k_steps(accs, A_b, B_b, rows_a, cols_b, k_base, steps, cfg, frag_a_t, frag_b_t):
    """Unrolled inner-K steps: fragment loads then rank-1 updates of the accumulators."""
    f32 = ir.F32Type.get()
    tsm = cfg.thread_scatter_m
    n_h = len(cols_b)
    ks = [irb.val(irb.add(k_base, kk)) for kk in steps]  # indices first: lets passes move loads
    for kk, k in zip(steps, ks):
        fa = [ops.load_frag(frag_a_t, A_b, row, k, operand="A") for row in rows_a]
        fb = [ops.load_frag(frag_b_t, B_b, col, k, operand="B") for col in cols_b]
        for f in fa + fb:
            irb.set_attr(f.owner, KK, kk)
        fb = [irb.extf(f, f32) for f in fb]
        for r in range(cfg.TM):
            a_r = irb.extf(vector.extract(fa[r // tsm], [], [r % tsm]), f32)
            a_s = irb.splat(a_r, ir.VectorType(fb[0].type).shape[0])
            for h in range(n_h):
                i = r * n_h + h
                accs[i] = vector.fma(a_s, fb[h], accs[i])
                irb.set_attr(accs[i].owner, KK, kk)
    return accs


@register("deepgen-tile-gemm",
          "affine GEMM nest -> gpu.func tiled to blocks/warps/threads with register tiles")
def run(module) -> None:
    nests = [op for op in irb.walk_ops(module, "affine.for") if GEMM_NEST in op.attributes]
    if len(nests) > 1:
        raise PassError(nests[1], "one DeepGen GEMM per module is supported")
    for nest in nests:
        func = nest.parent
        while func.name != "func.func":
            func = func.parent
        build_kernel(module, nest)
        func.erase()
