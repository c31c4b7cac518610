"""Builder helpers for deepgen ops (IRDL ops have no generated Python classes).

Each helper creates one op at the current insertion point, like the functions of
mlir.dialects.*, and returns its result (or the op when it has none)."""
from __future__ import annotations

from mlir import ir


def _attrs(**kw) -> dict:
    out = {}
    for k, v in kw.items():
        if isinstance(v, ir.Attribute):
            out[k] = v
        elif isinstance(v, str):
            out[k] = ir.StringAttr.get(v)
        elif isinstance(v, dict):
            out[k] = dict_attr(v)
        else:
            raise TypeError(f"{k}: cannot make an attribute of {v!r}")
    return out


def dict_attr(d: dict) -> ir.DictAttr:
    """A DictAttr of plain Python values (bool, int, str, lists and dicts of them)."""
    def one(v):
        if isinstance(v, bool):
            return ir.BoolAttr.get(v)
        if isinstance(v, int):
            return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), v)
        if isinstance(v, str):
            return ir.StringAttr.get(v)
        if isinstance(v, (list, tuple)):
            return ir.ArrayAttr.get([one(x) for x in v])
        if isinstance(v, dict):  # nested: the spec's epilogue
            return dict_attr(v)
        raise TypeError(f"cannot make an attribute of {v!r}")
    return ir.DictAttr.get({k: one(v) for k, v in d.items()})


def dict_of(attr: ir.Attribute) -> dict:
    """The inverse of dict_attr."""
    d = ir.DictAttr(attr)
    out = {}
    for i in range(len(d)):
        named = d[i]
        a = named.attr
        if isinstance(a, ir.BoolAttr):
            out[named.name] = a.value
        elif isinstance(a, ir.IntegerAttr):
            out[named.name] = a.value
        elif isinstance(a, ir.StringAttr):
            out[named.name] = a.value
        elif isinstance(a, ir.DictAttr):
            out[named.name] = dict_of(a)
        else:
            out[named.name] = [x.value for x in ir.ArrayAttr(a)]
    return out


def _create(name, operands, results=(), **attrs):
    return ir.Operation.create(name, results=list(results), operands=list(operands),
                               attributes=_attrs(**attrs))


def gemm(a, b, c, alpha, beta, *, layout: str, epilogue: str, tile: dict,
         allow_tf32: bool = False, bias=None, scales=None, scale: str = "none"):
    """`epilogue`: the chain's attribute text (deepgen.compiler.epilogue.chain_text); `bias`:
    the bias memref when the chain has a bias step; `scales`: (scale_a, scale_b) f32 memrefs
    of the spec's `scale` mode ("tensor" or "rowwise")."""
    op = _create("deepgen.gemm", [a, b, c, alpha, beta] + _named(bias, scales), layout=layout,
                 epilogue=epilogue, tile=tile, operandSegmentSizes=_segments(5, bias, scales))
    if allow_tf32:  # optional unit attribute: f32 inputs may be rounded to tf32
        op.attributes["allow_tf32"] = ir.UnitAttr.get()
    if scales is not None:  # optional string attribute: the scale mode (absent: none)
        op.attributes["scale"] = ir.StringAttr.get(scale)
    return op


def _named(bias, scales) -> list:
    """The named operands after alpha and beta: the bias, then scale_a and scale_b."""
    return ([bias] if bias is not None else []) + (list(scales) if scales is not None else [])


def _segments(fixed: int, bias, scales) -> ir.Attribute:
    """operandSegmentSizes of an op with `fixed` single operands, then the optional bias,
    scale_a and scale_b (IRDL needs the counts where an op has several optional operands)."""
    have = [bias is not None] + [scales is not None] * 2
    return ir.DenseI32ArrayAttr.get([1] * fixed + [int(h) for h in have])


def load_frag(result_type, src, mn, k, *, operand: str):
    return _create("deepgen.load_frag", [src, mn, k], [result_type], operand=operand).result


def store_frag(value, dst, m, n, alpha, beta, *, epilogue: str, bias=None, scales=None):
    """`bias` when the chain has a bias step; `scales` (scale_a, scale_b) multiply the value
    before the chain."""
    return _create("deepgen.store_frag", [value, dst, m, n, alpha, beta] + _named(bias, scales),
                   epilogue=epilogue, operandSegmentSizes=_segments(6, bias, scales))


def named_operands(op, fixed: int) -> tuple:
    """(bias, scales) of a deepgen.gemm (`fixed` 5) or deepgen.store_frag (6): the bias and
    the (scale_a, scale_b) pair, None where absent (from operandSegmentSizes)."""
    has = list(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]))[fixed:]
    named = list(op.operands)[fixed:]
    bias = named.pop(0) if has[0] else None
    return bias, (tuple(named) if has[1] and has[2] else None)


def store_frag_named(op) -> tuple:
    """(bias, scales) of a deepgen.store_frag (named_operands)."""
    return named_operands(op, 6)


def tile_fetch(result_type, src, mn0, k0, *, operand: str, distribution: dict):
    return _create("deepgen.tile_fetch", [src, mn0, k0], [result_type], operand=operand,
                   distribution=distribution).result


def tile_stash(regs, dst, *, operand: str, distribution: dict):
    return _create("deepgen.tile_stash", [regs, dst], operand=operand, distribution=distribution)


def tile_copy_async(src, mn0, k0, valid, dst, *, operand: str, distribution: dict):
    token = ir.Type.parse("!nvgpu.device.async.token")
    return _create("deepgen.tile_copy_async", [src, mn0, k0, valid, dst], [token],
                   operand=operand, distribution=distribution).result
