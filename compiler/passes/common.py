"""Conventions shared by DeepGen's passes: attribute names and lookups of the IR they build."""
from __future__ import annotations

from mlir import ir
from mlir.dialects import gpu, memref

from deepgen.dialects.ops import dict_attr, dict_of
from deepgen.spec import GemmSpec

from .. import irb
from ..config import TileConfig
from ..irb import walk_ops
from . import PassError

# Attributes on the kernel gpu.func (the launch rule travels with the kernel).
SPEC = "deepgen.spec"
TILE = "deepgen.tile"
GRID = "deepgen.grid"  # DenseI64Array [x, y, z]
ARGS = "deepgen.args"  # names of deepgen.runtime.artifact.ARGUMENT_KINDS, in parameter order
ORDER = "deepgen.launch_order"  # launches run in increasing order
SHARED = "deepgen.shared_bytes"  # dynamic shared memory the kernel needs
# Markers on ops inside the kernel.
K_LOOP = "deepgen.k_loop"  # the main loop over K tiles
KK = "deepgen.kk"  # inner-K step an op belongs to (fragment loads and FMAs)
GEMM_NEST = "deepgen.gemm_nest"  # outermost loop of the affine description
ROLE = "deepgen.role"  # "A", "B", "C", "alpha", "beta" on the affine description's ops
KERNEL_MODULE = "deepgen_kernels"


def spec_of(op) -> GemmSpec:
    return _parsed(op.attributes[SPEC], GemmSpec.from_dict)


def tile_of(op) -> TileConfig:
    return _parsed(op.attributes[TILE], TileConfig.from_dict)


# The passes read a kernel's spec and tile a few hundred times per compile (deepgen-vectorize
# once per tile op); converting the attribute and validating the config cost ~10x printing
# it. Both results are frozen dataclasses, so one per attribute text is shared.
_PARSED: dict = {}


def _parsed(attr: ir.Attribute, from_dict):
    key = (from_dict, str(attr))
    got = _PARSED.get(key)
    if got is None:
        if len(_PARSED) >= 512:
            _PARSED.clear()
        got = _PARSED[key] = from_dict(dict_of(attr))
    return got


def spec_attr(spec: GemmSpec) -> ir.DictAttr:
    d = spec.to_dict()
    return dict_attr({k: v for k, v in d.items() if v is not None})


def kernels(module) -> list:
    """The DeepGen kernels (gpu.func with a launch rule) in launch order."""
    found = [op for op in walk_ops(module, "gpu.func") if GRID in op.attributes]
    return sorted(found, key=lambda op: ir.IntegerAttr(op.attributes[ORDER]).value
                  if ORDER in op.attributes else 0)


def gemm_kernel(module):
    """The main GEMM kernel; PassError when the module has none (the tiling pass makes it)."""
    for op in kernels(module):
        if TILE in op.attributes:
            return op
    raise PassError(module, "no DeepGen GEMM kernel in the module (run deepgen-tile-gemm first)")


def k_loop(kernel):
    loops = []
    advance, skip = ir.WalkResult.ADVANCE, ir.WalkResult.SKIP

    def visit(op):  # the K loop's (unrolled) body is not walked: no K loop nests in another
        if op.name == "scf.for" and K_LOOP in op.attributes:
            loops.append(op)
            return skip
        return advance

    (kernel.operation if hasattr(kernel, "operation") else kernel).walk(visit, ir.WalkOrder.PRE_ORDER)
    if len(loops) != 1:
        raise PassError(kernel, f"expected one main K loop marked {K_LOOP}, found {len(loops)}")
    return loops[0]


def grid_of(kernel) -> list[int]:
    return list(ir.DenseI64ArrayAttr(kernel.attributes[GRID]))


def args_of(kernel) -> list[str]:
    return [ir.StringAttr(a).value for a in ir.ArrayAttr(kernel.attributes[ARGS])]


def set_args(kernel, names: list[str]) -> None:
    kernel.attributes[ARGS] = ir.ArrayAttr.get([ir.StringAttr.get(n) for n in names])


def str_attr(op, name: str) -> str:
    return ir.StringAttr(op.attributes[name]).value


# Shared memory: the kernel's dynamic shared memory, viewed as typed tiles. Each user records
# the bytes it needs; the launch asks for the largest (uses at different times share memory).
WORKGROUP = "#gpu.address_space<workgroup>"


def workgroup_space() -> ir.Attribute:
    return ir.Attribute.parse(WORKGROUP)


def shared_view(smem, byte_offset: int, shape: list[int], elem: ir.Type) -> ir.Value:
    t = ir.MemRefType.get(shape, elem, memory_space=workgroup_space())
    return memref.view(t, smem, irb.const_index(byte_offset), [])


def dynamic_shared(kernel) -> ir.Value:
    """The kernel's dynamic shared memory as bytes (one op at the top of the kernel)."""
    for op in kernel.regions[0].blocks[0].operations:
        if op.operation.name == "gpu.dynamic_shared_memory":
            return op.results[0]
    entry = kernel.regions[0].blocks[0]
    with ir.InsertionPoint.at_block_begin(entry), kernel.location:
        t = ir.MemRefType.get([ir.ShapedType.get_dynamic_size()], ir.IntegerType.get_signless(8),
                              memory_space=workgroup_space())
        return gpu.dynamic_shared_memory(t)


def record_shared_bytes(kernel, nbytes: int) -> None:
    old = ir.IntegerAttr(kernel.attributes[SHARED]).value if SHARED in kernel.attributes else 0
    irb.set_attr(kernel, SHARED, max(old, nbytes))
