"""deepgen-gemm-to-affine: deepgen.gemm -> the GEMM affine description.

    affine.for %b = 0 to batch { affine.for %i = 0 to M { affine.for %j = 0 to N {
      %acc = affine.for %k = 0 to K iter_args(%s = 0.0) { %s + A[b,i,k] * B[b,k,j] }
      C[b,i,j] = epilogue(%acc) } } }

The epilogue is the spec's chain (compiler/epilogue.py), by default
alpha * %acc + (beta == 0 ? C unread : beta * C[b,i,j]); a bias step reads bias[i] or
bias[j] (an affine.load with role "bias"). int8 inputs sum their products in i32 (as the
tensor cores' s32 accumulator) and convert the sum to f32; scales (GemmSpec.scale "tensor" or
"rowwise") multiply it by scale_a[0 or i] * scale_b[0 or j] (loads with roles "scale_a",
"scale_b") before the chain.

Indices follow each operand's layout (a transposed operand is read as [b, k, i]). The nest is
the reference semantics of the op (it runs on the CPU as is) and carries what the GPU passes
need: the spec and the tile configuration on the outermost loop, roles on the loads/stores.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import affine, arith

from deepgen.dialects.verify import gemm_spec

from .. import irb
from ..epilogue import emit
from . import PassError, register
from .common import GEMM_NEST, ROLE, SPEC, TILE, spec_attr


def _identity(rank: int) -> ir.AffineMapAttr:
    return ir.AffineMapAttr.get(ir.AffineMap.get_identity(rank))


def _load(mem, indices):
    elem = ir.MemRefType(mem.type).element_type
    return affine.load(elem, mem, indices, _identity(len(indices)))


def _index(rank: int, b, row, col) -> list:
    return [b, row, col] if rank == 3 else [row, col]


def lower_gemm(op) -> None:
    try:
        spec = gemm_spec(op)
    except ValueError as e:
        raise PassError(op, str(e)) from None
    a, b, c, alpha, beta = op.operands[:5]
    named = dict(zip(spec.operands(), list(op.operands)[5:]))  # bias, scale_a, scale_b
    bias = named.get("bias")
    rank = lambda v: ir.MemRefType(v.type).rank
    f32 = ir.F32Type.get()
    i32 = ir.IntegerType.get_signless(32)
    out_t = irb.element_type(spec.out_dtype)
    with ir.InsertionPoint(op), op.location:
        zero = arith.constant(i32, 0) if spec.is_int8 else irb.const_f32(0.0)
        batch = affine.AffineForOp(0, spec.batch)
        irb.set_attr(batch, GEMM_NEST, None)
        batch.attributes[SPEC] = spec_attr(spec)
        for name in ("layout", "epilogue", "tile"):
            batch.attributes[f"deepgen.{name}" if name != "tile" else TILE] = op.attributes[name]
        with ir.InsertionPoint(batch.body):
            bi = batch.induction_variable
            li = affine.AffineForOp(0, spec.M)
            with ir.InsertionPoint(li.body):
                i = li.induction_variable
                lj = affine.AffineForOp(0, spec.N)
                with ir.InsertionPoint(lj.body):
                    j = lj.induction_variable
                    lk = affine.AffineForOp(0, spec.K, iter_args=[zero])
                    with ir.InsertionPoint(lk.body):
                        k = lk.induction_variable
                        ia = _index(rank(a), bi, *((k, i) if spec.a_transposed else (i, k)))
                        ib = _index(rank(b), bi, *((j, k) if spec.b_transposed else (k, j)))
                        va = _load(a, ia)
                        vb = _load(b, ib)
                        irb.set_attr(va.owner, ROLE, "A")
                        irb.set_attr(vb.owner, ROLE, "B")
                        if spec.is_int8:
                            prod = arith.muli(arith.extsi(i32, va), arith.extsi(i32, vb))
                            affine.yield_([arith.addi(lk.inner_iter_args[0], prod)])
                        else:
                            prod = arith.mulf(irb.extf(va, f32), irb.extf(vb, f32))
                            affine.yield_([arith.addf(lk.inner_iter_args[0], prod)])
                    ic = _index(rank(c), bi, i, j)
                    acc = lk.results[0]
                    if spec.is_int8:
                        acc = arith.sitofp(f32, acc)

                    def bias_value(kind, i=i, j=j):
                        v = _load(bias, [i if kind == "row" else j])
                        irb.set_attr(v.owner, ROLE, "bias")
                        return irb.extf(v, f32)

                    def scale_value(i=i, j=j):
                        factors = []
                        for name, index in (("scale_a", i), ("scale_b", j)):
                            v = _load(named[name], [index if spec.scale == "rowwise"
                                                    else irb.const_index(0)])
                            irb.set_attr(v.owner, ROLE, name)
                            factors.append(v)
                        return arith.mulf(*factors)

                    res = emit(acc, spec.epilogue.steps, alpha=alpha, beta=beta,
                               load_c=lambda: _load(c, ic), bias_value=bias_value,
                               scale_value=scale_value if "scale_a" in named else None)
                    store = affine.AffineStoreOp(irb.truncf(res, out_t), c, ic, _identity(len(ic)))
                    irb.set_attr(store, ROLE, "C")
                    affine.yield_([])
                affine.yield_([])
            affine.yield_([])
    op.erase()


@register("deepgen-gemm-to-affine", "deepgen.gemm -> affine loop nest (the affine description)")
def run(module) -> None:
    for op in irb.walk_ops(module, "deepgen.gemm"):
        lower_gemm(op)
