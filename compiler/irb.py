"""Small IR-building helpers shared by DeepGen's passes.

Index arithmetic takes Python ints or index Values and folds what it can in Python, so the
IR only holds the arithmetic that depends on run-time values (thread and block ids)."""
from __future__ import annotations

from typing import Union

from mlir import ir
from mlir.dialects import arith, vector

from deepgen import dtypes

Index = Union[int, ir.Value]


def index_type() -> ir.Type:
    return ir.IndexType.get()


def element_type(dtype: str) -> ir.Type:
    """The MLIR type of a DeepGen dtype name (deepgen.dtypes holds its MLIR spelling)."""
    return ir.Type.parse(dtypes.dtype(dtype).mlir)


def dtype_of(t: ir.Type) -> str:
    """The DeepGen dtype name of a storage element type."""
    text = str(t)
    for name, d in dtypes.DTYPES.items():
        if d.storage and d.mlir == text:
            return name
    raise ValueError(f"unsupported element type {t}")


def const_index(v: int) -> ir.Value:
    return arith.constant(index_type(), v)


def const_i32(v: int) -> ir.Value:
    return arith.constant(ir.IntegerType.get_signless(32), v)


def const_f32(v: float) -> ir.Value:
    return arith.constant(ir.F32Type.get(), v)


def val(x: Index) -> ir.Value:
    return const_index(x) if isinstance(x, int) else x


def add(a: Index, b: Index) -> Index:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(a, int) and a == 0:
        return b
    if isinstance(b, int) and b == 0:
        return a
    return arith.addi(val(a), val(b))


def sub(a: Index, b: Index) -> Index:
    if isinstance(a, int) and isinstance(b, int):
        return a - b
    if isinstance(b, int) and b == 0:
        return a
    return arith.subi(val(a), val(b))


def mul(a: Index, b: Index) -> Index:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    for x, y in ((a, b), (b, a)):
        if isinstance(x, int) and x == 0:
            return 0
        if isinstance(x, int) and x == 1:
            return y
    return arith.muli(val(a), val(b))


def div(a: Index, b: Index) -> Index:
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    if isinstance(b, int) and b == 1:
        return a
    return arith.divui(val(a), val(b))


def rem(a: Index, b: Index) -> Index:
    if isinstance(a, int) and isinstance(b, int):
        return a % b
    if isinstance(b, int) and b == 1:
        return 0
    return arith.remui(val(a), val(b))


def xor(a: Index, b: Index) -> Index:
    if isinstance(a, int) and isinstance(b, int):
        return a ^ b
    for x, y in ((a, b), (b, a)):
        if isinstance(x, int) and x == 0:
            return y
    return arith.xori(val(a), val(b))


def min_(a: Index, b: Index) -> Index:
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    return arith.minui(val(a), val(b))


def lt(a: Index, b: Index) -> ir.Value:
    return arith.cmpi(arith.CmpIPredicate.ult, val(a), val(b))


def and_(a: ir.Value | None, b: ir.Value | None) -> ir.Value | None:
    """Conjunction of optional i1 conditions (None means always true)."""
    if a is None:
        return b
    if b is None:
        return a
    return arith.andi(a, b)


def vector_type(n: int, elem: ir.Type) -> ir.VectorType:
    return ir.VectorType.get([n], elem)


def splat(v: ir.Value, n: int) -> ir.Value:
    return vector.broadcast(vector_type(n, v.type), v)


def zeros(vt: ir.Type) -> ir.Value:
    """A vector of zeros (float or integer elements)."""
    elem = ir.VectorType(vt).element_type
    zero = (ir.IntegerAttr.get(elem, 0) if isinstance(elem, ir.IntegerType)
            else ir.FloatAttr.get(elem, 0.0))
    return arith.constant(vt, ir.DenseElementsAttr.get_splat(vt, zero))


def _convert_float(v: ir.Value, to: ir.Type, op) -> ir.Value:
    """v (scalar or vector) with `to` as element type through `op`; v itself if already so."""
    is_vec = isinstance(v.type, ir.VectorType)
    src_elem = ir.VectorType(v.type).element_type if is_vec else v.type
    if src_elem == to:
        return v
    return op(ir.VectorType.get(ir.VectorType(v.type).shape, to) if is_vec else to, v)


def extf(v: ir.Value, to: ir.Type) -> ir.Value:
    return _convert_float(v, to, arith.extf)


def truncf(v: ir.Value, to: ir.Type) -> ir.Value:
    return _convert_float(v, to, arith.truncf)


def int_attr(v: int) -> ir.IntegerAttr:
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), v)


def set_attr(op, name: str, value) -> None:
    op = op.operation if hasattr(op, "operation") else op
    if isinstance(value, bool):
        value = ir.BoolAttr.get(value)
    elif isinstance(value, int):
        value = int_attr(value)
    elif isinstance(value, str):
        value = ir.StringAttr.get(value)
    elif isinstance(value, (list, tuple)) and all(isinstance(x, int) for x in value):
        value = ir.DenseI64ArrayAttr.get(list(value))
    elif value is None:
        value = ir.UnitAttr.get()
    op.attributes[name] = value


# Function-like ops: none of them is ever found in the body of another.
FUNCTION_OPS = frozenset({"gpu.func", "func.func", "llvm.func"})


def walk_ops(root, name: str | None = None) -> list:
    """All operations under `root` (pre-order), optionally only those called `name`."""
    found = []
    append, advance = found.append, ir.WalkResult.ADVANCE  # the callback runs once per op

    if name is None:
        def visit(op):  # an ir.Operation
            append(op)
            return advance
    elif name in FUNCTION_OPS:  # no need to walk the (large) function bodies
        skip = ir.WalkResult.SKIP

        def visit(op):
            op_name = op.name
            if op_name == name:
                append(op)
            return skip if op_name in FUNCTION_OPS else advance
    else:
        def visit(op):
            if op.name == name:
                append(op)
            return advance

    (root.operation if hasattr(root, "operation") else root).walk(visit, ir.WalkOrder.PRE_ORDER)
    return found


def matrix_view(mem: ir.Value, index: Index) -> ir.Value:
    """The 2-D matrix `index` of a rank-3 memref (rank-reducing subview); rank 2 passes through."""
    t = ir.MemRefType(mem.type)
    if t.rank == 2:
        return mem
    _, rows, cols = t.shape
    layout_offset = index * rows * cols if isinstance(index, int) else ir.ShapedType.get_dynamic_stride_or_offset()
    layout = ir.StridedLayoutAttr.get(layout_offset, [cols, 1])
    result = ir.MemRefType.get([rows, cols], t.element_type, layout, t.memory_space)
    from mlir.dialects import memref
    return memref.subview(mem, [index, 0, 0], [1, rows, cols], [1, 1, 1], result_type=result)
