"""deepgen-block-swizzle: grouped block order for L2 reuse.

Row-major block order walks a whole row of C tiles before moving down, so consecutive blocks
share one A panel but each needs a new B panel. With block_swizzle = G, consecutive block ids
walk a G-tall column group first (the grouped order of Triton's matmul tutorial):

    pid = by * gx + bx;  group = pid / (G * gx);  first = group * G
    rows = min(gy - first, G);  m_block = first + (pid % (G * gx)) % rows
    n_block = (pid % (G * gx)) / rows

so a wave of blocks touches about sqrt(wave) panels of each operand instead of wave + 1.
The pass replaces the kernel's uses of gpu.block_id x/y with (n_block, m_block).
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import gpu

from .. import irb
from . import PassError, register
from .common import gemm_kernel, grid_of, tile_of


def block_id_ops(kernel, dims=("x", "y")) -> dict:
    """{dim: the gpu.block_id ops of that dimension} (one walk of the kernel)."""
    found = {d: [] for d in dims}
    for op in irb.walk_ops(kernel, "gpu.block_id"):
        dim = str(op.attributes["dimension"])[-2]  # "#gpu<dim x>"
        if dim in found:
            found[dim].append(op)
    return found


def swizzle(kernel, group: int) -> None:
    gx, gy, _ = grid_of(kernel)
    ids = block_id_ops(kernel)
    xs, ys = ids["x"], ids["y"]
    if len(xs) != 1 or len(ys) != 1:
        raise PassError(kernel, f"expected one gpu.block_id x and y, found {len(xs)} and {len(ys)}")
    entry = kernel.regions[0].blocks[0]
    with ir.InsertionPoint.at_block_begin(entry), kernel.location:
        bx, by = gpu.block_id(gpu.Dimension.x), gpu.block_id(gpu.Dimension.y)
        pid = irb.add(irb.mul(by, gx), bx)
        per_group = group * gx
        first = irb.mul(irb.div(pid, per_group), group)
        rows = irb.min_(irb.sub(gy, first), group)
        in_group = irb.rem(pid, per_group)
        m_block = irb.add(first, irb.rem(in_group, rows))
        n_block = irb.div(in_group, rows)
    xs[0].results[0].replace_all_uses_with(n_block)
    ys[0].results[0].replace_all_uses_with(m_block)
    xs[0].erase()
    ys[0].erase()


@register("deepgen-block-swizzle", "grouped block order (block_swizzle rows per group)")
def run(module) -> None:
    kernel = gemm_kernel(module)
    group = tile_of(kernel).block_swizzle
    if group > 1 and grid_of(kernel)[1] > 1:
        swizzle(kernel, group)
