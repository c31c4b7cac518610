"""deepgen-split-k: split the K loop over `split_k` slices and reduce them deterministically.

The main kernel's grid grows along z to batch * split_k; block z = b * split_k + s computes
K slice s, [s * Kc, min(K, (s + 1) * Kc)) with Kc a multiple of BK, and writes its raw f32
partial tile to the workspace W[z] (store_frag epilogue "partial": the empty chain, after the
scales where the spec has them: they are linear, so the reduce needs none). A second
kernel, @deepgen_splitk_reduce, launched after it, sums the split_k partials of each element
in a fixed order (so results are bitwise reproducible, unlike atomics) and applies the whole
epilogue chain (compiler/epilogue.py) into C. With a bias, every vector of the reduction lies
within one row of C (its row and column index the bias).
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import arith, gpu, scf, vector

from deepgen.dialects import ops
from deepgen.runtime.artifact import Launch, param_for
from deepgen.spec import DTYPE_BYTES

from .. import irb
from . import PassError, register
from .common import (GRID, ORDER, args_of, gemm_kernel, grid_of, k_loop, set_args, spec_of,
                     str_attr, tile_of)
from ..epilogue import chain_of
from .vectorize import apply_epilogue

REDUCE_THREADS = 256
REDUCE_ENTRY = "deepgen_splitk_reduce"
WORKSPACE = "deepgen.workspace_bytes"


def add_kernel_arg(kernel, t: ir.Type) -> ir.Value:
    ftype = ir.FunctionType(ir.TypeAttr(kernel.attributes["function_type"]).value)
    kernel.attributes["function_type"] = ir.TypeAttr.get(
        ir.FunctionType.get(list(ftype.inputs) + [t], list(ftype.results)))
    return kernel.regions[0].blocks[0].add_argument(t, kernel.location)


def split(kernel, spec, cfg) -> None:
    s = cfg.split_k
    loop = k_loop(kernel)
    k_tiles = -(-spec.K // cfg.BK)
    kc = -(-k_tiles // s) * cfg.BK
    gx, gy, gz = grid_of(kernel)
    entry = kernel.regions[0].blocks[0]
    old_z = [op for op in irb.walk_ops(kernel, "gpu.block_id") if str(op.attributes["dimension"]).endswith("z>")]
    w_type = ir.MemRefType.get([spec.batch * s, spec.M, spec.N], ir.F32Type.get())
    W = add_kernel_arg(kernel, w_type)
    with ir.InsertionPoint.at_block_begin(entry), kernel.location:
        z = gpu.block_id(gpu.Dimension.z)
        batch, slice_ = irb.div(z, s), irb.rem(z, s)
        k_begin = irb.mul(slice_, kc)
        k_end = irb.min_(irb.add(k_begin, kc), spec.K)
        W_z = irb.matrix_view(W, z)
    for op in old_z:
        op.results[0].replace_all_uses_with(irb.val(batch))
        op.erase()
    loop.operands[0] = irb.val(k_begin)
    loop.operands[1] = irb.val(k_end)
    epilogues = set()
    for op in irb.walk_ops(kernel, "deepgen.store_frag"):
        epilogues.add(str_attr(op, "epilogue"))
        bias, scales = ops.store_frag_named(op)
        # the partial sums take no bias, but are stored scaled (the scales are linear), so
        # the reduce applies the chain alone
        with ir.InsertionPoint(op), op.location:
            ops.store_frag(op.operands[0], W_z, *list(op.operands)[2:6], epilogue="partial",
                           scales=scales)
        op.erase()
    if len(epilogues) != 1:
        raise PassError(kernel, f"expected one epilogue kind on the stores, found {sorted(epilogues)}")
    irb.set_attr(kernel, GRID, [gx, gy, gz * s])
    set_args(kernel, args_of(kernel) + ["W"])
    irb.set_attr(kernel, WORKSPACE, workspace_bytes(spec, s))
    build_reduce(kernel, spec, s, chain_of(epilogues.pop()))


def workspace_bytes(spec, s: int) -> int:
    """Bytes of W: the f32 partial tiles of `s` K slices of every batch element."""
    return spec.batch * s * spec.M * spec.N * 4


def _reduce_vec(spec) -> int:
    """Elements per reduce thread: 4 where every vector stays in bounds (and, with a bias,
    within one row of C), else 1."""
    return 4 if (spec.N if spec.epilogue.bias else spec.M * spec.N) % 4 == 0 else 1


def reduce_grid(spec) -> list[int]:
    return [-(-spec.M * spec.N // (REDUCE_THREADS * _reduce_vec(spec))), spec.batch, 1]


def reduce_args(spec) -> list[str]:
    return ["W", "C", "alpha", "beta"] + (["bias"] if spec.epilogue.bias else [])


def reduce_launch(spec):
    """The Launch of build_reduce's kernel, for kernel builders (wgmma) whose launches are
    not read from the module's attributes."""
    return Launch(entry=REDUCE_ENTRY, grid=tuple(reduce_grid(spec)),
                  block=(REDUCE_THREADS, 1, 1), shared_bytes=0,
                  params=tuple(param_for(name, spec) for name in reduce_args(spec)))


def build_reduce(kernel, spec, s: int, steps) -> None:
    """C[b] = epilogue(sum_s W[b, s]) (by default alpha * sum + beta * C[b]), `vec`
    elements per thread (with a bias: within one row)."""
    mn = spec.M * spec.N
    bias_kind = spec.epilogue.bias
    vec = _reduce_vec(spec)
    f32 = ir.F32Type.get()
    out_t = irb.element_type(spec.out_dtype)
    w_t = ir.MemRefType.get([spec.batch, s, mn], f32)
    c_t = ir.MemRefType.get([spec.batch, mn], out_t)
    bias_t = ([ir.MemRefType.get(list(spec.operand_shape("bias")),
                                 irb.element_type(spec.operand_dtype("bias")))]
              if bias_kind else [])
    with ir.InsertionPoint.after(kernel), kernel.location:
        red = gpu.GPUFuncOp(ir.FunctionType.get([w_t, c_t, f32, f32] + bias_t, []),
                            sym_name=REDUCE_ENTRY, kernel=True,
                            known_block_size=[REDUCE_THREADS, 1, 1])
        irb.set_attr(red, GRID, reduce_grid(spec))
        irb.set_attr(red, ORDER, 1)
        set_args(red, reduce_args(spec))
        block = red.add_entry_block()
    W, C, alpha, beta = list(block.arguments)[:4]
    bias = block.arguments[4] if bias_kind else None
    vt = irb.vector_type(vec, f32)
    with ir.InsertionPoint(block), kernel.location:
        b = gpu.block_id(gpu.Dimension.y)
        i = irb.mul(irb.add(irb.mul(gpu.block_id(gpu.Dimension.x), REDUCE_THREADS),
                            gpu.thread_id(gpu.Dimension.x)), vec)
        guard = scf.IfOp(irb.lt(i, mn))
        with ir.InsertionPoint(guard.then_block):
            total = None
            for k in range(s):  # fixed order: deterministic sums
                part = vector.load(vt, W, [b, irb.const_index(k), i], alignment=vec * 4)
                total = part if total is None else arith.addf(total, part)
            row = col = None
            if bias_kind:
                row, col = irb.div(i, spec.N), irb.rem(i, spec.N)
            res = apply_epilogue(total, C, [b, i], alpha, beta, steps, bias, row, col)
            vector.store(irb.truncf(res, out_t), C, [b, i],
                         alignment=vec * DTYPE_BYTES[spec.out_dtype])
            scf.yield_([])
        gpu.return_([])


@register("deepgen-split-k", "split K over grid z; partials to a workspace; deterministic reduce")
def run(module) -> None:
    kernel = gemm_kernel(module)
    spec, cfg = spec_of(kernel), tile_of(kernel)
    if cfg.split_k > 1:
        split(kernel, spec, cfg)
