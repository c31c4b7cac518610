"""The epilogue chain (deepgen.epilogue.EpilogueSpec) as IR: one lowering for every strategy.

`emit(x, steps, ...)` applies the chain's steps, in order, to `x`, the f32 accumulator value
(a scalar, as in the affine description, or a vector of consecutive columns of one row, as in
the kernels' stores and the split-K reduction), and returns the f32 result; the caller casts
it to the output type and stores it. The callers:

    deepgen-gemm-to-affine   the affine description (scalar, at [b, i, j])
    deepgen-vectorize        store_frag: SIMT and mma.sync stores, the staged epilogue
    deepgen-split-k          the reduction kernel (the partial stores are the empty chain)

Steps:
    alpha_beta   alpha * x + beta * C; C is read only when beta != 0 (a NaN there would
                 survive 0 * NaN), under an scf.if
    bias_row     x + bias[row]   (one value, broadcast along the vector)
    bias_col     x + bias[col..col+w)   (a vector load; the bias is 16-byte aligned and col
                 a multiple of the vector width wherever C's own accesses are aligned)
    relu         max(x, 0)
    gelu_tanh    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))      math.tanh
    silu         x / (1 + exp(-x))                                     math.exp

math.tanh / math.exp become __nv_tanhf / __nv_expf (convert-gpu-to-nvvm) or __ocml_*_f32
(convert-gpu-to-rocdl): libdevice or ocml bitcode is linked where the chain needs it
(EpilogueSpec.needs_math; see device_libs in deepgen-tile-gemm and backend_amdgpu).

On the ops, the chain is the `epilogue` string attribute: a legacy name where one applies
("none" = alpha_beta, "relu" = alpha_beta+relu, "partial" = the empty chain), else the steps
joined by "+" (chain_text / chain_of). The bias element type is the bias operand's.
"""
from __future__ import annotations

import math
from typing import Callable

from mlir import ir
from mlir.dialects import arith
from mlir.dialects import math as math_d
from mlir.dialects import memref, scf, vector

from deepgen.epilogue import LEGACY, STEPS, EpilogueError, EpilogueSpec

from . import irb

_LEGACY_TEXT = {steps: name for name, steps in LEGACY.items()}
GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715


def chain_text(epilogue: EpilogueSpec | tuple | list) -> str:
    """The `epilogue` attribute text of a chain (legacy names where one applies)."""
    steps = tuple(epilogue.steps if isinstance(epilogue, EpilogueSpec) else epilogue)
    return _LEGACY_TEXT.get(steps) or "+".join(steps)


def chain_of(text: str) -> tuple[str, ...]:
    """The steps of an `epilogue` attribute text; EpilogueError naming an unknown step."""
    if text in LEGACY:
        return LEGACY[text]
    steps = tuple(s for s in text.split("+") if s)
    for s in steps:
        if s not in STEPS:
            raise EpilogueError(f"epilogue: unknown step {s!r} in {text!r}; steps: "
                                f"{', '.join(STEPS)} (joined by '+'), or one of "
                                f"{', '.join(sorted(LEGACY))}")
    return EpilogueSpec(steps).steps  # validates the combination


def _width(x: ir.Value) -> int | None:
    """Lanes of a vector value; None for a scalar."""
    return ir.VectorType(x.type).shape[0] if isinstance(x.type, ir.VectorType) else None


def _bcast(v: ir.Value, width: int | None) -> ir.Value:
    return v if width is None else irb.splat(v, width)


def _const(x: ir.Value, value: float) -> ir.Value:
    """The f32 constant `value` shaped like x (a splat vector for a vector x)."""
    if _width(x) is None:
        return irb.const_f32(value)
    return arith.constant(x.type, ir.DenseElementsAttr.get_splat(
        x.type, ir.FloatAttr.get(ir.F32Type.get(), value)))


def _bytes(t: ir.Type) -> int:
    from deepgen.spec import DTYPE_BYTES
    return DTYPE_BYTES[irb.dtype_of(t)]


def load_bias(bias: ir.Value, index, width: int | None, broadcast: bool) -> ir.Value:
    """bias[index] as f32: a scalar (width None), `width` consecutive elements, or one element
    broadcast to `width` lanes."""
    f32 = ir.F32Type.get()
    elem = ir.MemRefType(bias.type).element_type
    idx = [irb.val(index)]
    if width is None or broadcast:
        v = irb.extf(memref.load(bias, idx), f32)
        return _bcast(v, width)
    v = vector.load(irb.vector_type(width, elem), bias, idx, alignment=width * _bytes(elem))
    return irb.extf(v, f32)


def _load_scale(mem, index, width: int | None, along_row: bool) -> ir.Value:
    """One scale operand at `index` (a row of scale_a, broadcast to width, or width columns of
    scale_b), or, for a one-element memref, its value broadcast."""
    if ir.MemRefType(mem.type).shape[0] == 1:  # per tensor (or M = 1, N = 1: the same)
        return load_bias(mem, 0, width, True)
    return load_bias(mem, index, width, along_row)


def load_scales(scales: tuple, row, col, width: int | None) -> ir.Value:
    """scale_a[row] * scale_b[col..col+width) as f32 (x's shape) from (scale_a, scale_b), f32
    memrefs of M and N values (GemmSpec.scale "rowwise") or of one value each ("tensor", read
    at 0 and broadcast)."""
    scale_a, scale_b = scales
    return arith.mulf(_load_scale(scale_a, row, width, True),
                      _load_scale(scale_b, col, width, False))


class StoreOperands:
    """The per-row and per-column operands of one store (rowwise scales: scale_a over M and
    scale_b over N) whose values lie at static offsets (drow, dcol) from (row0, col0): each
    distinct row's and column group's value loaded once, before the store (ahead of the op
    made at construction; indices clamped into `rows` x `cols`, so partial tiles read nothing
    outside), rather than once per value as emit does by itself (at a consumer's 128 x 128
    wgmma tile a thread's 64 register pairs lie in 4 rows and 16 column pairs: 64 loads of
    each scale for 4 or 16 values). (The bias the same way, tried in session 12: loaded once
    per store it made ptxas spill at the 128 x 192 block tiles, once per TMA sub-tile it
    loaded no fewer than LLVM's own CSE: benchmarks/NOTES.md.)"""

    def __init__(self, row0, col0, rows, cols: int):
        self.row0, self.col0, self.rows, self.cols = row0, col0, rows, cols
        self._anchor = irb.const_index(0).owner  # the loads go in ahead of it
        self._cache = {}

    @staticmethod
    def serves(scales: tuple | None) -> bool:
        """Rowwise scales (a one-element pair is the per-tensor form, whose two loads LLVM
        keeps once already)."""
        return scales is not None and any(ir.MemRefType(m.type).shape[0] != 1 for m in scales)

    def _value(self, mem, along_row: bool, offset: int, width: int | None) -> ir.Value:
        """mem[row0 + offset] (broadcast to width) or mem[col0 + offset ..) (width columns);
        a one-element mem read at 0 and broadcast."""
        key = (id(mem), along_row, offset, width)
        if key not in self._cache:
            with ir.InsertionPoint(self._anchor):
                index = (irb.min_(irb.add(self.row0, offset), irb.sub(self.rows, 1))
                         if along_row else
                         irb.min_(irb.add(self.col0, offset), self.cols - (width or 1)))
                self._cache[key] = _load_scale(mem, index, width, along_row)
        return self._cache[key]

    def scale(self, scales: tuple, drow: int, dcol: int, width: int | None) -> ir.Value:
        """scale_a[row] x scale_b[col..] (emit's scale_value)."""
        scale_a, scale_b = scales
        return arith.mulf(self._value(scale_a, True, drow, width),
                          self._value(scale_b, False, dcol, width))

    def emit_args(self, scales, drow, dcol, width: int | None) -> dict:
        """emit's keyword arguments for the value at (drow, dcol): scale_value from here in
        place of `scales`; emit's own loads where an offset is not static (the cluster
        reduce's register groups, an index value)."""
        if not (isinstance(drow, int) and isinstance(dcol, int)):
            return {"scales": scales}
        return {"scale_value": lambda: self.scale(scales, drow, dcol, width)}


def scale_args(ops: StoreOperands | None, scales, drow, dcol, width: int | None) -> dict:
    """emit's scale keyword arguments for the value at (drow, dcol) of a store: through `ops`
    (StoreOperands) where the store has them, else `scales` for emit's own loads."""
    return {"scales": scales} if ops is None else ops.emit_args(scales, drow, dcol, width)


def emit(x: ir.Value, steps, *, alpha: ir.Value | None = None, beta: ir.Value | None = None,
         load_c: Callable[[], ir.Value] | None = None, bias: ir.Value | None = None,
         row=None, col=None, bias_value: Callable[[str], ir.Value] | None = None,
         scales: tuple | None = None,
         scale_value: Callable[[], ir.Value] | None = None) -> ir.Value:
    """The chain `steps` applied to x (f32 scalar or vector); returns the f32 result.

    load_c() emits the load of C at x's place (C's element type, x's shape): it is called
    inside the beta != 0 branch only. The bias is read from `bias` at `row` (bias_row) or
    `col` (bias_col, x's first column), or given by bias_value(kind) when the caller reads
    it itself (the affine description). `scales`: (scale_a, scale_b), f32 memrefs of M and N
    values (GemmSpec.scale "rowwise") or of one each ("tensor"), multiply x by scale_a[row] *
    scale_b[col..] before the chain (load_scales); or scale_value() gives that factor when
    the caller reads it itself."""
    f32 = ir.F32Type.get()
    w = _width(x)
    res = x
    if scales is not None:
        res = arith.mulf(res, load_scales(scales, row, col, w))
    elif scale_value is not None:
        res = arith.mulf(res, scale_value())
    for step in steps:
        if step == "alpha_beta":
            res = arith.mulf(_bcast(alpha, w), res)
            nz = arith.cmpf(arith.CmpFPredicate.ONE, beta, irb.const_f32(0.0))
            read = scf.IfOp(nz, [res.type], has_else=True)
            with ir.InsertionPoint(read.then_block):
                old = load_c()
                b = _bcast(beta, w)
                if w is None:
                    scf.yield_([arith.addf(arith.mulf(b, irb.extf(old, f32)), res)])
                else:
                    scf.yield_([vector.fma(b, irb.extf(old, f32), res)])
            with ir.InsertionPoint(read.else_block):
                scf.yield_([res])
            res = read.results[0]
        elif step in ("bias_row", "bias_col"):
            kind = step[len("bias_"):]
            if bias_value is not None:
                bv = bias_value(kind)
            else:
                if bias is None:
                    raise EpilogueError(f"epilogue: step {step!r} needs the bias operand")
                bv = load_bias(bias, row if kind == "row" else col, w, kind == "row")
            res = arith.addf(res, bv)
        elif step == "relu":
            res = arith.maximumf(res, irb.zeros(res.type) if w is not None
                                 else irb.const_f32(0.0))
        elif step == "gelu_tanh":
            # 0.5 x (1 + tanh(c (x + k x^3))) = 0.5 x (1 + tanh(c x (1 + k x^2)))
            x2 = arith.mulf(res, res)
            inner = arith.mulf(arith.mulf(_const(res, GELU_C), res),
                               arith.addf(_const(res, 1.0), arith.mulf(_const(res, GELU_K), x2)))
            t = math_d.tanh(inner)
            res = arith.mulf(arith.mulf(_const(res, 0.5), res), arith.addf(_const(res, 1.0), t))
        elif step == "silu":
            e = math_d.exp(arith.negf(res))
            res = arith.divf(res, arith.addf(_const(res, 1.0), e))
        else:
            raise EpilogueError(f"epilogue: unknown step {step!r}; known: {STEPS}")
    return res


def needs_math(steps) -> bool:
    return EpilogueSpec(tuple(steps)).needs_math


def with_epilogue(spec, epilogue):
    """`spec` with the chain `epilogue` (an EpilogueSpec, legacy string, list of steps or
    dict), or `spec` itself when epilogue is None; SpecError when the spec already holds a
    different non-default chain."""
    import dataclasses

    if epilogue is None:
        return spec
    epi = EpilogueSpec.parse(epilogue)
    if epi == spec.epilogue:
        return spec
    if not spec.epilogue.is_default:
        raise EpilogueError(f"epilogue: {str(epi)!r} given, but the spec already holds "
                            f"{str(spec.epilogue)!r}; give it in one place")
    return dataclasses.replace(spec, epilogue=epi)
