"""Python-side verification of deepgen.gemm: what IRDL's structural constraints cannot say."""
from __future__ import annotations

from mlir import ir

from deepgen.epilogue import EpilogueSpec
from deepgen.spec import LAYOUTS, GemmSpec, SpecError


def _shape(value, name: str) -> tuple[list[int], str]:
    t = ir.MemRefType(value.type)
    if not t.has_static_shape:
        raise ValueError(f"operand {name}: DeepGen compiles static shapes, got {t}")
    if t.rank not in (2, 3):
        raise ValueError(f"operand {name}: expected a rank-2 or rank-3 (batched) memref, got {t}")
    from deepgen.compiler.irb import dtype_of  # local: keeps this module light
    try:
        dtype = dtype_of(t.element_type)
    except ValueError:
        raise ValueError(f"operand {name}: element type {t.element_type} is not f32, f16 or bf16")
    shape = list(t.shape)
    return ([1] + shape if t.rank == 2 else shape), dtype


def gemm_spec(op) -> GemmSpec:
    """The GemmSpec a deepgen.gemm op describes; ValueError naming the inconsistency."""
    layout = ir.StringAttr(op.attributes["layout"]).value
    if layout not in LAYOUTS:
        raise ValueError(f"layout: must be one of {LAYOUTS}, got {layout!r}")
    from deepgen.compiler.epilogue import chain_of  # local: keeps this module light
    try:
        steps = chain_of(ir.StringAttr(op.attributes["epilogue"]).value)
    except SpecError as e:
        raise ValueError(str(e)) from None
    scale = ir.StringAttr(op.attributes["scale"]).value if "scale" in op.attributes else "none"
    bias_dtype = _bias(op, steps, scale)
    (ba, ra, ca), dta = _shape(op.operands[0], "A")
    (bb, rb, cb), dtb = _shape(op.operands[1], "B")
    (bc, M, N), dtc = _shape(op.operands[2], "C")
    if dta != dtb:
        raise ValueError(f"operand B: element type {dtb} differs from A's {dta}")
    if not (ba == bb == bc):
        raise ValueError(f"batch: A, B and C have batch {ba}, {bb}, {bc}; they must agree")
    m_a, k_a = (ca, ra) if layout[0] == "T" else (ra, ca)
    k_b, n_b = (cb, rb) if layout[1] == "T" else (rb, cb)
    if m_a != M:
        raise ValueError(f"operand A: has {m_a} rows (layout {layout}) but C has M={M}")
    if n_b != N:
        raise ValueError(f"operand B: has {n_b} columns (layout {layout}) but C has N={N}")
    if k_a != k_b:
        raise ValueError(f"operand B: K={k_b} differs from A's K={k_a}")
    try:
        spec = GemmSpec(M=M, N=N, K=k_a, batch=ba, dtype=dta, out_dtype=dtc, layout=layout,
                        allow_tf32="allow_tf32" in op.attributes, scale=scale,
                        epilogue=EpilogueSpec(steps, None if bias_dtype == dta else bias_dtype))
    except SpecError as e:
        raise ValueError(str(e)) from None
    for name, value in zip(spec.operands(), list(op.operands)[5:]):
        want = spec.operand_shape(name)
        t = ir.MemRefType(value.type)
        if tuple(t.shape) != want and name == "bias":
            raise ValueError(f"operand bias: the {spec.epilogue.bias} bias has {want[0]} "
                             f"elements ({'M' if spec.epilogue.bias == 'row' else 'N'}), "
                             f"got memref shape {list(t.shape)}")
        if tuple(t.shape) != want:
            raise ValueError(f"operand {name}: expected {list(want)} elements (scale "
                             f"{scale!r}), got memref shape {list(t.shape)}")
        if name != "bias" and not isinstance(t.element_type, ir.F32Type):
            raise ValueError(f"operand {name}: scales are f32, got {t.element_type}")
    return spec


def _bias(op, steps, scale: str) -> str | None:
    """The bias operand's element type, checking it is there exactly when a step needs it
    (and the scales exactly when `scale` names a mode)."""
    from deepgen.dialects.ops import named_operands

    wants = any(s.startswith("bias_") for s in steps)
    bias, scales = named_operands(op, 5)
    if (scales is not None) != (scale != "none") or len(op.operands) != 5 + (
            bias is not None) + 2 * (scales is not None):
        raise ValueError(f"operands: scale {scale!r} takes {0 if scale == 'none' else 2} "
                         f"scale operands (scale_a and scale_b), got "
                         f"{len(op.operands) - 5 - (bias is not None)}")
    has = bias is not None
    if wants != has:
        raise ValueError("operand bias: the epilogue " + (
            "has a bias step but the op has no bias operand" if wants
            else "has no bias step but the op has a bias operand"))
    if not has:
        return None
    t = ir.MemRefType(op.operands[5].type)
    if t.rank != 1 or not t.has_static_shape:
        raise ValueError(f"operand bias: expected a static 1-D memref, got {t}")
    from deepgen.compiler.irb import dtype_of
    try:
        return dtype_of(t.element_type)
    except ValueError:
        raise ValueError(f"operand bias: element type {t.element_type} is not f32, f16 or "
                         f"bf16") from None
