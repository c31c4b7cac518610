"""deepgen-gemv: the gemv strategy's kernel builder (a DeepGen pass).

It replaces the function holding the deepgen.gemm op with the kernel(s) directly (no affine
description, no tiling passes): see ./config.py for the two forms (K-contiguous B: warps
stream rows of B and reduce across lanes with xor shuffles; N-contiguous B: lanes own column
vectors). Each warp's loop body issues every load of a step (B first, then A) before the
first use. The K slice's whole steps run unguarded; one guarded step takes the rest.

With split_k > 1 the kernel writes raw f32 partials to the workspace W[b * split_k + s] and
deepgen-split-k's reduce kernel (build_reduce) sums them in a fixed order and applies the
epilogue; otherwise the kernel applies the epilogue chain (compiler/epilogue.py) itself.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import arith, gpu, memref, scf, vector
from mlir.dialects import math as math_d

from deepgen.dialects.ops import dict_of
from deepgen.spec import DTYPE_BYTES, SpecError

from ... import irb
from ...config import k_contiguous
from ...epilogue import emit
from ...passes import PassError, register
from ...passes.common import (GRID, ORDER, SPEC, dynamic_shared, record_shared_bytes,
                              set_args, shared_view, spec_attr)
from ...passes.split_k import WORKSPACE, build_reduce
from ...passes.tile_gemm import kernel_module, module_target
from ...passes.vectorize import apply_epilogue
from ...target import get_target
from .config import WARP, GemvConfig, k_warp_sums_bytes, validate

KERNEL = "deepgen_gemv"


def _guarded(cond, load, t: ir.Type) -> ir.Value:
    """load() when cond holds, else zeros of type t (a vector or a float scalar)."""
    if cond is None:
        return load()
    op = scf.IfOp(cond, [t], has_else=True)
    with ir.InsertionPoint(op.then_block):
        scf.yield_([load()])
    with ir.InsertionPoint(op.else_block):
        zero = irb.zeros(t) if isinstance(t, ir.VectorType) else \
            arith.constant(t, ir.FloatAttr.get(t, 0.0))
        scf.yield_([zero])
    return op.results[0]


def _if(cond, body) -> None:
    """body() under scf.if cond (directly when cond is None)."""
    if cond is None:
        body()
        return
    op = scf.IfOp(cond)
    with ir.InsertionPoint(op.then_block):
        body()
        scf.yield_([])


def _eq(a, b) -> ir.Value:
    return arith.cmpi(arith.CmpIPredicate.eq, irb.val(a), irb.val(b))


def _a_index(spec, m, k) -> list:
    """Indices of A[m, k] in A's stored matrix."""
    return [irb.val(k), irb.val(m)] if spec.a_transposed else [irb.val(m), irb.val(k)]


def _load_a_vector(spec, A, m, k, vec: int, in_t) -> ir.Value:
    """A[m, k .. k+vec) as a vector: one vector load (row-major A) or vec scalars."""
    vt = irb.vector_type(vec, in_t)
    if not spec.a_transposed:
        return vector.load(vt, A, _a_index(spec, m, k),
                           alignment=vec * DTYPE_BYTES[spec.dtype])
    elems = [memref.load(A, _a_index(spec, m, irb.add(k, j))) for j in range(vec)]
    return vector.from_elements(vt, elems)


def _warp_sum(x: ir.Value) -> ir.Value:
    """The sum of x over the 32 lanes, in every lane (xor butterfly)."""
    width = irb.const_i32(WARP)
    off = WARP // 2
    while off:
        other = gpu.shuffle(x, irb.const_i32(off), width, gpu.ShuffleMode.XOR)[0]
        x = arith.addf(x, other)
        off //= 2
    return x


class _Ctx:
    """What both kernel forms share: spec, config, the operands' matrices of this block's
    batch, the block's K slice and the store of a result."""

    def __init__(self, spec, cfg, A, B, out, alpha, beta, bias, steps):
        self.spec, self.cfg = spec, cfg
        self.in_t = irb.element_type(spec.dtype)
        self.out_t = irb.element_type(spec.out_dtype)
        self.split = cfg.split_k > 1
        self.alpha, self.beta, self.bias, self.steps = alpha, beta, bias, steps
        S = cfg.split_k
        tid = gpu.thread_id(gpu.Dimension.x)
        self.warp, self.lane = irb.div(tid, WARP), irb.rem(tid, WARP)
        self.bx = gpu.block_id(gpu.Dimension.x)
        bz = gpu.block_id(gpu.Dimension.z) if spec.batch * S > 1 else 0
        b, s = irb.div(bz, S), irb.rem(bz, S)
        self.A, self.B = irb.matrix_view(A, b), irb.matrix_view(B, b)
        # the output: C[b], or the slice's partials W[b * S + s]
        self.out = irb.matrix_view(out, bz if self.split else b)
        kc = cfg.k_chunk(spec)
        self.k_begin = irb.mul(s, kc)
        self.k_end = irb.min_(irb.add(self.k_begin, kc), spec.K) if self.split else spec.K

    def k_loop(self, step_elems: int, accs: list, body) -> list:
        """The slice's whole steps (unguarded), then one guarded step for the rest:
        body(accs, k, guard) -> accs, where guard(offset) is the i1 'k + offset < k_end'
        (None where the step needs no guard)."""
        length = irb.sub(self.k_end, self.k_begin)
        whole = irb.mul(irb.div(length, step_elems), step_elems)
        end = irb.add(self.k_begin, whole)
        if not (isinstance(whole, int) and whole == 0):
            loop = scf.ForOp(irb.val(self.k_begin), irb.val(end), irb.const_index(step_elems),
                             accs)
            with ir.InsertionPoint(loop.body):
                scf.yield_(body(list(loop.inner_iter_args), loop.induction_variable,
                                lambda off: None))
            accs = list(loop.results)
        if isinstance(length, int) and length % step_elems == 0:
            return accs
        k_end = self.k_end
        return body(accs, irb.val(end), lambda off: irb.lt(irb.add(end, off), k_end))

    def store(self, value: ir.Value, m, n) -> None:
        """The result at C[m, n] (scalar value: one element; vector: consecutive columns):
        the raw partial into W, or the epilogue chain and the output cast into C."""
        idx = [irb.val(m), irb.val(n)]
        w = ir.VectorType(value.type).shape[0] if isinstance(value.type, ir.VectorType) else None
        if self.split:
            if w is None:
                memref.store(value, self.out, idx)
            else:
                vector.store(value, self.out, idx, alignment=min(16, 4 * w))
            return
        if w is None:
            res = emit(value, self.steps, alpha=self.alpha, beta=self.beta,
                       load_c=lambda: memref.load(self.out, idx), bias=self.bias, row=m, col=n)
            memref.store(irb.truncf(res, self.out_t), self.out, idx)
        else:
            res = apply_epilogue(value, self.out, idx, self.alpha, self.beta, self.steps,
                                 self.bias, m, n)
            vector.store(irb.truncf(res, self.out_t), self.out, idx,
                         alignment=min(16, w * DTYPE_BYTES[self.spec.out_dtype]))


def _k_contiguous_body(c: _Ctx) -> None:
    """Warp w owns rows n0 .. n0+rows of B (stored (N, K)); lane l reads vec elements at
    k + (u * 32 + l) * vec for u < unroll; the dot products are reduced across lanes."""
    spec, cfg = c.spec, c.cfg
    V, R, U, M, N = cfg.vec, cfg.rows, cfg.unroll, spec.M, spec.N
    f32 = ir.F32Type.get()
    vt = irb.vector_type(V, c.in_t)
    n0 = irb.mul(irb.add(irb.mul(c.bx, cfg.warps), c.warp), R)
    rows = [irb.add(n0, r) for r in range(R)]
    ragged = N % (cfg.warps * R) != 0
    rows_ld = [irb.min_(n, N - 1) for n in rows] if ragged else rows  # loads stay in bounds
    lane_off = irb.mul(c.lane, V)
    elt = DTYPE_BYTES[spec.dtype]

    def body(accs, k, guard):
        k = irb.add(k, lane_off)
        offs = [u * WARP * V for u in range(U)]
        ks = [irb.add(k, o) for o in offs]
        # every load of B for the step first (in flight together)
        bv = []
        for r in range(R):
            bv.append([_guarded(_lane_guard(guard, offs[u], lane_off),
                                lambda r=r, u=u: vector.load(vt, c.B, [irb.val(rows_ld[r]),
                                                                       irb.val(ks[u])],
                                                             alignment=V * elt), vt)
                       for u in range(U)])
        for u in range(U):  # A's vectors of a step just before their use: L1 hits
            av = [_guarded(_lane_guard(guard, offs[u], lane_off),
                           lambda m=m: _load_a_vector(spec, c.A, m, ks[u], V, c.in_t), vt)
                  for m in range(M)]
            bf = [irb.extf(bv[r][u], f32) for r in range(R)]
            af = [irb.extf(a, f32) for a in av]
            be = [[vector.extract(bf[r], [], [j]) for j in range(V)] for r in range(R)]
            for m in range(M):
                ae = [vector.extract(af[m], [], [j]) for j in range(V)]
                for r in range(R):
                    i = m * R + r
                    for j in range(V):
                        accs[i] = math_d.fma(ae[j], be[r][j], accs[i])
        return accs

    zero = irb.const_f32(0.0)
    accs = c.k_loop(WARP * V * U, [zero] * (M * R), body)
    sums = [_warp_sum(a) for a in accs]
    for i, total in enumerate(sums):
        m, r = divmod(i, R)
        cond = _eq(c.lane, i % WARP)
        if ragged:
            cond = arith.andi(cond, irb.lt(rows[r], N))
        _if(cond, lambda total=total, m=m, r=r: c.store(total, m, rows[r]))


def _lane_guard(guard, offset: int, lane_off):
    """guard(offset + this lane's offset): the lane's vector lies inside the slice."""
    probe = guard(0)
    if probe is None:
        return None
    return guard(irb.add(lane_off, offset))


def _n_contiguous_body(c: _Ctx, kernel) -> None:
    """Lane l of warp w owns the vec columns at n_w + (j * 32 + l) * vec, j < rows, of B
    (stored (K, N)); each step walks `unroll` rows of K; A[m, k] is a broadcast load. With
    k_warps > 1, warps (wn, wk) share the columns of wn and take part wk of the K slice."""
    spec, cfg = c.spec, c.cfg
    V, R, U, M, N = cfg.vec, cfg.rows, cfg.unroll, spec.M, spec.N
    KW = cfg.k_warps
    WN = cfg.warps // KW
    f32 = ir.F32Type.get()
    vt, acc_t = irb.vector_type(V, c.in_t), irb.vector_type(V, f32)
    wn, wk = (irb.rem(c.warp, WN), irb.div(c.warp, WN)) if KW > 1 else (c.warp, 0)
    if KW > 1:  # this warp's part of the slice (the last parts may be short or empty)
        part = cfg.warp_k_chunk(spec)
        begin = irb.add(c.k_begin, irb.mul(wk, part))
        c.k_begin = irb.min_(begin, c.k_end)
        c.k_end = irb.min_(irb.add(begin, part), c.k_end)
    base = irb.mul(irb.add(irb.mul(c.bx, WN), wn), R * WARP * V)
    cols = [irb.add(base, irb.mul(irb.add(c.lane, j * WARP), V)) for j in range(R)]
    ragged = N % (cfg.warps * R * WARP * V) != 0
    cols_ld = [irb.min_(n, N - V) for n in cols] if ragged else cols
    elt = DTYPE_BYTES[spec.dtype]

    # A's row-major rows give U consecutive k of a step in vectors (AV elements each), where
    # every step's start is a multiple of AV: far fewer load instructions than U scalars
    AV = min(U, 16 // elt)
    a_vectors = not spec.a_transposed and U % AV == 0 and spec.K % AV == 0 and AV > 1

    def a_step(k, guard) -> list:
        """av[u][m] = A[m, k + u] (0 past the slice where guarded)."""
        if a_vectors and guard(0) is None:
            avt = irb.vector_type(AV, c.in_t)
            vecs = [[vector.load(avt, c.A, _a_index(spec, m, irb.add(k, g * AV)),
                                 alignment=AV * elt) for g in range(U // AV)]
                    for m in range(M)]
            return [[vector.extract(vecs[m][u // AV], [], [u % AV]) for m in range(M)]
                    for u in range(U)]
        return [[_guarded(guard(u), lambda u=u, m=m: memref.load(
            c.A, _a_index(spec, m, irb.add(k, u))), c.in_t) for m in range(M)]
            for u in range(U)]

    def body(accs, k, guard):
        ks = [irb.add(k, u) for u in range(U)]
        bv = [[_guarded(guard(u), lambda u=u, j=j: vector.load(
            vt, c.B, [irb.val(ks[u]), irb.val(cols_ld[j])], alignment=V * elt), vt)
            for j in range(R)] for u in range(U)]
        av = a_step(k, guard)
        for u in range(U):
            bf = [irb.extf(bv[u][j], f32) for j in range(R)]
            for m in range(M):
                a = irb.splat(irb.extf(av[u][m], f32), V)
                for j in range(R):
                    accs[m * R + j] = vector.fma(a, bf[j], accs[m * R + j])
        return accs

    accs = c.k_loop(U, [irb.zeros(acc_t)] * (M * R), body)
    first = None
    if KW > 1:
        accs = _sum_k_warps(kernel, spec, cfg, accs, wn, wk, c.lane)
        first = _eq(wk, 0)
    for i, acc in enumerate(accs):
        m, j = divmod(i, R)
        cond = irb.and_(first, irb.lt(cols[j], N) if ragged else None)
        _if(cond, lambda acc=acc, m=m, j=j: c.store(acc, m, cols[j]))


def _sum_k_warps(kernel, spec, cfg: GemvConfig, accs: list, wn, wk, lane) -> list:
    """The sums of the k_warps warps on the same columns, valid in warp wk = 0: warps
    1..k_warps-1 put theirs in shared memory, warp 0 adds them in that order (deterministic)."""
    f32 = ir.F32Type.get()
    KW, WN, n, V = cfg.k_warps, cfg.warps // cfg.k_warps, len(accs), cfg.vec
    sums = shared_view(dynamic_shared(kernel), 0, [KW - 1, WN, n, WARP, V], f32)
    record_shared_bytes(kernel, k_warp_sums_bytes(cfg, spec))  # what estimates counts
    acc_t = irb.vector_type(V, f32)

    def at(w, i):
        return [irb.val(w), irb.val(wn), irb.const_index(i), irb.val(lane), irb.const_index(0)]

    def put():
        for i, acc in enumerate(accs):
            vector.store(acc, sums, at(irb.sub(wk, 1), i), alignment=16)

    _if(irb.lt(0, wk) if not isinstance(wk, int) else None, put)
    gpu.barrier()
    out = list(accs)
    for w in range(1, KW):  # every warp reads (cheap); only warp 0's result is stored
        for i in range(n):
            out[i] = arith.addf(out[i], vector.load(acc_t, sums, at(w - 1, i), alignment=16))
    return out


def build(module, op, spec, cfg: GemvConfig, target) -> None:
    a, b, cmem = op.operands[0], op.operands[1], op.operands[2]
    bias = op.operands[5] if spec.epilogue.bias else None
    f32 = ir.F32Type.get()
    S = cfg.split_k
    if S > 1:
        w_t = ir.MemRefType.get([spec.batch * S, spec.M, spec.N], f32)
        types, names = [a.type, b.type, w_t], ["A", "B", "W"]
    else:
        types = [a.type, b.type, cmem.type, f32, f32] + ([bias.type] if bias is not None else [])
        names = ["A", "B", "C", "alpha", "beta"] + (["bias"] if bias is not None else [])
    gm = kernel_module(module, target.name, spec.epilogue.needs_math)
    with ir.InsertionPoint(gm.bodyRegion.blocks[0]), op.location:
        kernel = gpu.GPUFuncOp(ir.FunctionType.get(types, []), sym_name=KERNEL, kernel=True,
                               known_block_size=[cfg.threads, 1, 1])
        kernel.attributes[SPEC] = spec_attr(spec)
        irb.set_attr(kernel, GRID, cfg.grid(spec))
        irb.set_attr(kernel, ORDER, 0)
        set_args(kernel, names)
        if S > 1:
            irb.set_attr(kernel, WORKSPACE, spec.batch * S * spec.M * spec.N * 4)
        block = kernel.add_entry_block()
    args = list(block.arguments)
    with ir.InsertionPoint(block), op.location:
        if S > 1:
            ctx = _Ctx(spec, cfg, args[0], args[1], args[2], None, None, None, ())
        else:
            ctx = _Ctx(spec, cfg, *args[:5], args[5] if bias is not None else None,
                       spec.epilogue.steps)
        if k_contiguous(spec, "B"):
            _k_contiguous_body(ctx)
        else:
            _n_contiguous_body(ctx, kernel)
        gpu.return_([])
    if S > 1:
        build_reduce(kernel, spec, S, spec.epilogue.steps)


@register("deepgen-gemv", "deepgen.gemm -> the gemv strategy's kernel (+ split-K reduce)")
def run(module) -> None:
    from deepgen.dialects.verify import gemm_spec

    gemms = irb.walk_ops(module, "deepgen.gemm")
    if len(gemms) != 1:
        raise PassError(module, f"expected one deepgen.gemm, found {len(gemms)}")
    op = gemms[0]
    try:
        spec = gemm_spec(op)
        cfg = GemvConfig.from_dict(dict_of(op.attributes["tile"]))
        target = get_target(module_target(module))
        validate(cfg, spec, target)
    except (SpecError, ValueError) as e:
        raise PassError(op, f"invalid gemv configuration: {e}") from None
    build(module, op, spec, cfg, target)
    func = op.parent
    while func.name != "func.func":
        func = func.parent
    func.erase()
