"""Python-side verification of deepgen.gemm: what IRDL's structural constraints cannot say."""
from __future__ import annotations

from mlir import ir

from deepgen.spec import LAYOUTS, GemmSpec, SpecError

EPILOGUES = ("none", "relu")


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
    epilogue = ir.StringAttr(op.attributes["epilogue"]).value
    if epilogue not in EPILOGUES:
        raise ValueError(f"epilogue: must be one of {EPILOGUES}, got {epilogue!r}")
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
        return GemmSpec(M=M, N=N, K=k_a, batch=ba, dtype=dta, out_dtype=dtc, layout=layout,
                        allow_tf32="allow_tf32" in op.attributes)
    except SpecError as e:
        raise ValueError(str(e)) from None
