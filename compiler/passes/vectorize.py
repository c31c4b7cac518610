"""deepgen-vectorize: lower DeepGen's tile ops to vector loads and stores.

  deepgen.tile_fetch  -> per-thread vector.load of `width` elements from global memory
                         (coalesced: neighbouring threads take neighbouring vectors)
  deepgen.tile_stash  -> vector.store into the K-major shared tile, or `width` scalar stores
                         when the global tile was contiguous along K (a transpose)
  deepgen.load_frag   -> vector.load from shared memory, or a (gathered) load from global
  deepgen.store_frag  -> vector.store of `store_width` elements through the epilogue chain
                         (compiler/epilogue.py)

Partial tiles: only where a tile can cross M, N or K (known from the static shape) the
access is guarded. Because every vector lies wholly inside or outside the matrix (the
config validator checks the row lengths are multiples of the vector width), a guard is one
condition per vector: loads read a clamped, always-valid address and select zero, stores
sit under scf.if. Every vector access carries its alignment, so LLVM emits 16-byte accesses.
"""
from __future__ import annotations

from contextlib import nullcontext

from mlir import ir
from mlir.dialects import arith, gpu, memref, nvgpu, nvvm, scf, vector

from deepgen.dialects.ops import dict_of, store_frag_named
from deepgen.spec import DTYPE_BYTES

from .. import irb
from ..config import k_contiguous
from ..epilogue import chain_of, emit
from . import PassError, register
from .common import spec_of, str_attr, tile_of


def enclosing_kernel(op):
    p = op.parent
    while p is not None and p.name != "gpu.func":
        p = p.parent
    if p is None:
        raise PassError(op, "DeepGen tile ops must be inside a gpu.func kernel")
    return p


def is_shared(mem: ir.Value) -> bool:
    ms = ir.MemRefType(mem.type).memory_space
    return ms is not None and "workgroup" in str(ms)


def _bytes(t: ir.Type) -> int:
    return DTYPE_BYTES[irb.dtype_of(t)]


def swizzle_col(row, col, tile: ir.Value):
    """Where column `col` of row `row` lies in a swizzled shared tile (TileConfig.smem_swizzle).

    A row of the tile is C chunks of 16 bytes; g = max(1, 8 / C) rows fill one 128-byte line.
    Chunk c of a row in line L is stored at chunk c ^ (L mod min(C, 8)), so the eight rows that
    one 8x8 ldmatrix reads at the same column (and eight neighbouring cp.async vectors) fall in
    eight different 16-byte bank groups, with no padding."""
    t = ir.MemRefType(tile.type)
    per_chunk = 16 // _bytes(t.element_type)
    chunks = t.shape[-1] // per_chunk
    key = irb.rem(irb.div(row, max(1, 8 // chunks)), min(chunks, 8))
    return irb.xor(col, irb.mul(key, per_chunk))


def shared_index(row, col, tile: ir.Value, cfg) -> list:
    """[row, col] of a tensor-core shared tile, swizzled when the config says so."""
    col = swizzle_col(row, col, tile) if cfg.smem_swizzle else col
    return [irb.val(row), irb.val(col)]


def _guarded_load(src: ir.Value, idx: list, bounds: list, checks: list, vt: ir.Type):
    """Load vector `vt` at idx; where checks[d] is set, clamp idx[d] into the matrix and
    return zeros when it was outside (bounds[d] is the clamp limit for that dimension)."""
    cond = None
    safe = list(idx)
    for d, (check, limit) in enumerate(zip(checks, bounds)):
        if check:
            cond = irb.and_(cond, irb.lt(idx[d], check))
            safe[d] = irb.val(irb.min_(idx[d], limit))
    n = ir.VectorType(vt).shape[0]
    elem = ir.VectorType(vt).element_type
    if n == 1:
        v = vector.from_elements(vt, [memref.load(src, [irb.val(i) for i in safe])])
    else:
        v = vector.load(vt, src, [irb.val(i) for i in safe], alignment=n * _bytes(elem))
    if cond is None:
        return v
    return arith.select(cond, v, irb.zeros(vt))


def lower_load_frag(op, spec, cfg) -> None:
    src, mn, k = op.operands
    vt = op.results[0].type
    n = ir.VectorType(vt).shape[0]
    operand = str_attr(op, "operand")
    with ir.InsertionPoint(op), op.location:
        if isinstance(ir.VectorType(vt).element_type, ir.IntegerType):
            if isinstance(ir.MemRefType(src.type).element_type, ir.F32Type):
                v = tf32_fragment(src, mn, k, operand, k_contiguous(spec, operand))
            else:
                v = ldmatrix_fragment(src, mn, k, operand, k_contiguous(spec, operand), cfg)
        elif is_shared(src):  # K-major shared tile: contiguous along M/N
            v = vector.load(vt, src, [k, mn], alignment=n * _bytes(ir.VectorType(vt).element_type))
        else:
            bound_mn = spec.M if operand == "A" else spec.N
            tile_mn = cfg.BM if operand == "A" else cfg.BN
            check_mn = bound_mn if bound_mn % tile_mn else None
            check_k = spec.K if spec.K % cfg.BK else None
            if k_contiguous(spec, operand):  # gather n rows of one column
                elems = []
                one = irb.vector_type(1, ir.VectorType(vt).element_type)
                for i in range(n):
                    row = irb.add(mn, i)
                    e = _guarded_load(src, [row, k], [bound_mn - 1, spec.K - 1],
                                      [check_mn, check_k], one)
                    elems.append(vector.extract(e, [], [0]))
                v = vector.from_elements(vt, elems)
            else:
                v = _guarded_load(src, [k, mn], [spec.K - 1, bound_mn - n],
                                  [check_k, check_mn], vt)
    op.results[0].replace_all_uses_with(v)
    op.erase()


def ldmatrix_fragment(src, mn, k, operand: str, k_contig: bool, cfg) -> ir.Value:
    """ldmatrix x4 of the 16x16 block at (mn, k) (int8: 16 x 32): four 8x8 matrices of 16-bit
    words in the register order of mma.sync m16n8k16 (m16n8k32) (A: a0..a3; B: b0, b1 of
    columns mn..mn+7, then of mn+8..mn+15).

    Each lane passes one row address. A tile stored [mn][k] is read as is; one stored [k][mn]
    is read with .trans. Lane l addresses, for (A, [m][k]) and (B, [k][n]):
    (l % 16, (l / 16) * 8); for (A, [k][m]) and (B, [n][k]): (l % 8 + (l / 16) * 8,
    ((l / 8) % 2) * 8) -- as (row, column) offsets of the stored tile."""
    if not is_shared(src):
        raise PassError(src.owner, "tensor-core fragments read shared memory: run "
                                   "deepgen-promote-shared before deepgen-vectorize")
    lane = irb.rem(gpu.thread_id(gpu.Dimension.x), 32)
    # (A, [m][k]) and (B, [k][n]) share one lane pattern, the other two cases the other.
    simple = k_contig if operand == "A" else not k_contig
    if simple:
        r_off, c_off = irb.rem(lane, 16), irb.mul(irb.div(lane, 16), 8)
    else:
        r_off = irb.add(irb.rem(lane, 8), irb.mul(irb.div(lane, 16), 8))
        c_off = irb.mul(irb.rem(irb.div(lane, 8), 2), 8)
    elem = ir.MemRefType(src.type).element_type
    # an 8x8 matrix of ldmatrix is 8 rows of 16 bytes: 8 16-bit elements, or 16 int8 (K-major
    # only: .trans moves 16-bit elements), so the column offsets count twice the elements
    c_off = irb.mul(c_off, 2 // _bytes(elem))
    # stored [mn][k] when contiguous along K, else [k][mn]
    base = (mn, k) if k_contig else (k, mn)
    index = shared_index(irb.add(base[0], r_off), irb.add(base[1], c_off), src, cfg)
    mats = nvgpu.ldmatrix(ir.VectorType.get([4, 4 // _bytes(elem)], elem), src, index,
                          transpose=not k_contig, num_tiles=4)
    i32 = ir.IntegerType.get_signless(32)
    packed = vector.bitcast(ir.VectorType.get([4, 1], i32), mats)
    return vector.shape_cast(ir.VectorType.get([4], i32), packed)


def tf32_fragment(src, mn, k, operand: str, k_contig: bool) -> ir.Value:
    """The m16n8k8 tf32 fragment at (mn, k) from shared memory, rounded to tf32 (cvt.rna).

    A (16 rows): (g, t), (g+8, t), (g, t+4), (g+8, t+4); B (two 8-column blocks): (g, t),
    (g, t+4), (g+8, t), (g+8, t+4) as (mn, k) offsets, g = lane / 4, t = lane % 4. ldmatrix
    cannot transpose 32-bit data, so these are single-word loads; with rows padded to 4 words
    past a multiple of 32 the 32 lanes hit 32 different banks."""
    if not is_shared(src):
        raise PassError(src.owner, "tensor-core fragments read shared memory: run "
                                   "deepgen-promote-shared before deepgen-vectorize")
    lane = irb.rem(gpu.thread_id(gpu.Dimension.x), 32)
    g, t = irb.div(lane, 4), irb.rem(lane, 4)
    if operand == "A":
        offsets = [(0, 0), (8, 0), (0, 4), (8, 4)]
    else:
        offsets = [(0, 0), (0, 4), (8, 0), (8, 4)]
    i32 = ir.IntegerType.get_signless(32)
    words = []
    for dm, dk in offsets:
        m_i, k_i = irb.val(irb.add(irb.add(mn, g), dm)), irb.val(irb.add(irb.add(k, t), dk))
        x = memref.load(src, [m_i, k_i] if k_contig else [k_i, m_i])
        words.append(nvvm.ConvertFloatToTF32Op(i32, x, rnd=nvvm.FPRoundingMode.RNA).result)
    return vector.from_elements(ir.VectorType.get([4], i32), words)


def lower_store_frag(op, spec, cfg) -> None:
    value, dst, m, n, alpha, beta = list(op.operands)[:6]
    bias, scales = store_frag_named(op)
    steps = chain_of(str_attr(op, "epilogue"))
    width = ir.VectorType(value.type).shape[0]
    sw = min(cfg.store_width, width)
    f32 = ir.F32Type.get()
    out_t = ir.MemRefType(dst.type).element_type
    rows, cols = ir.MemRefType(dst.type).shape
    with ir.InsertionPoint(op), op.location:
        for j in range(0, width, sw):
            col = irb.add(n, j)
            part = vector.extract_strided_slice(irb.vector_type(sw, f32), value, [j], [sw], [1]) \
                if sw != width else value
            cond = None
            if spec.M % cfg.BM:
                cond = irb.and_(cond, irb.lt(m, rows))
            if spec.N % cfg.BN:
                cond = irb.and_(cond, irb.lt(col, cols))
            guard = scf.IfOp(cond) if cond is not None else None
            with ir.InsertionPoint(guard.then_block) if guard else nullcontext():
                part = apply_epilogue(part, dst, [m, col], alpha, beta, steps, bias, m, col,
                                      scales)
                part = irb.truncf(part, out_t)
                vector.store(part, dst, [irb.val(m), irb.val(col)], alignment=sw * _bytes(out_t))
                if guard:
                    scf.yield_([])
    op.erase()


def apply_epilogue(part, dst, indices, alpha, beta, steps, bias=None, row=None, col=None,
                   scales=None):
    """The chain `steps` on `part` (f32 vector), after the scales when given; C is
    dst[indices] (read only when beta != 0), the bias and the scales are read at `row` / `col`
    (compiler/epilogue.py)."""
    sw = ir.VectorType(part.type).shape[0]
    out_t = ir.MemRefType(dst.type).element_type

    def load_c():
        return vector.load(irb.vector_type(sw, out_t), dst, [irb.val(i) for i in indices],
                           alignment=sw * _bytes(out_t))

    return emit(part, steps, alpha=alpha, beta=beta, load_c=load_c, bias=bias, row=row,
                col=col, scales=scales)


def fetch_positions(dist: dict, tid, i: int):
    """(row, col) in the tile *as stored in global memory* of thread tid's i-th vector."""
    w, threads = dist["width"], dist["threads"]
    rows, cols = ((dist["tile_mn"], dist["tile_k"]) if dist["contig_k"]
                  else (dist["tile_k"], dist["tile_mn"]))
    per_row = cols // w
    n = rows * cols // (threads * w)
    v = irb.add(tid, i * threads) if dist["contiguous"] else irb.add(irb.mul(tid, n), i)
    return irb.div(v, per_row), irb.mul(irb.rem(v, per_row), w), n


def fetch_vector(dist: dict, spec, operand: str, mn0, k0, tid, i: int):
    """Thread tid's i-th vector of a tile copy: (row, col) in the stored tile, its global
    indices, the clamp limit of each index and, where a tile can cross the matrix edge,
    the bound to check it against (None where it cannot)."""
    w = dist["width"]
    bound_mn = spec.M if operand == "A" else spec.N
    check_mn = bound_mn if bound_mn % dist["tile_mn"] else None
    check_k = spec.K if spec.K % dist["tile_k"] else None
    r, c, _ = fetch_positions(dist, tid, i)
    if dist["contig_k"]:  # stored [mn][k], vectors along K
        return r, c, [irb.add(mn0, r), irb.add(k0, c)], [bound_mn - 1, spec.K - w], [check_mn, check_k]
    return r, c, [irb.add(k0, r), irb.add(mn0, c)], [spec.K - 1, bound_mn - w], [check_k, check_mn]


def lower_tile_fetch(op, spec) -> None:
    src, mn0, k0 = op.operands
    dist = dict_of(op.attributes["distribution"])
    operand = str_attr(op, "operand")
    vt = op.results[0].type
    n, w = ir.VectorType(vt).shape
    elem = ir.VectorType(vt).element_type
    with ir.InsertionPoint(op), op.location:
        tid = gpu.thread_id(gpu.Dimension.x)
        regs = irb.zeros(vt)
        for i in range(n):
            _, _, idx, bounds, checks = fetch_vector(dist, spec, operand, mn0, k0, tid, i)
            v = _guarded_load(src, idx, bounds, checks, irb.vector_type(w, elem))
            regs = vector.insert(v, regs, [], [i])
    op.results[0].replace_all_uses_with(regs)
    op.erase()


def lower_tile_copy_async(op, spec, cfg) -> None:
    """cp.async of each of the thread's vectors, global -> shared in the same orientation;
    a vector outside the matrix (or the whole copy when `valid` is false) is zero-filled
    from a clamped, valid address. Returns one cp.async group.

    Only an index that can leave the matrix is clamped: one that can cross a partial tile's
    edge per vector, and K, when every K tile is whole, once per copy (the ring's copies past
    the last tile read the last tile again and zero-fill)."""
    src, mn0, k0, valid, dst = op.operands
    dist = dict_of(op.attributes["distribution"])
    operand = str_attr(op, "operand")
    w = dist["width"]
    elt = _bytes(ir.MemRefType(src.type).element_type)
    n = dist["tile_mn"] * dist["tile_k"] // (dist["threads"] * w)
    with ir.InsertionPoint(op), op.location:
        tid = gpu.thread_id(gpu.Dimension.x)
        if spec.K % dist["tile_k"] == 0:
            k0 = irb.min_(k0, spec.K - dist["tile_k"])
        tokens = []
        for i in range(n):
            r, c, idx, limits, checks = fetch_vector(dist, spec, operand, mn0, k0, tid, i)
            cond, safe = valid, []
            for d, (check, limit) in enumerate(zip(checks, limits)):
                if check is not None:
                    cond = arith.andi(cond, irb.lt(idx[d], check))
                    idx[d] = irb.min_(idx[d], limit)
                safe.append(irb.val(idx[d]))
            count = arith.select(cond, irb.const_index(w), irb.const_index(0))
            cp = nvgpu.DeviceAsyncCopyOp(dst, shared_index(r, c, dst, cfg), src, safe,
                                         ir.IntegerAttr.get(ir.IndexType.get(), w),
                                         srcElements=count,
                                         bypassL1=ir.UnitAttr.get() if w * elt == 16 else None)
            tokens.append(cp.result)
        group = nvgpu.DeviceAsyncCreateGroupOp(tokens).result
    op.results[0].replace_all_uses_with(group)
    op.erase()


def lower_tile_stash(op, cfg) -> None:
    regs, dst = op.operands
    dist = dict_of(op.attributes["distribution"])
    n, w = ir.VectorType(regs.type).shape
    elem = ir.VectorType(regs.type).element_type
    with ir.InsertionPoint(op), op.location:
        tid = gpu.thread_id(gpu.Dimension.x)
        for i in range(n):
            r, c, _ = fetch_positions(dist, tid, i)
            v = vector.extract(regs, [], [i])
            if dist["transpose"]:  # memory row = M/N index, columns = K: transpose into [k][mn]
                for j in range(w):
                    e = vector.extract(v, [], [j])
                    memref.store(e, dst, [irb.val(irb.add(c, j)), irb.val(r)])
            else:
                vector.store(v, dst, shared_index(r, c, dst, cfg), alignment=w * _bytes(elem))
    op.erase()


@register("deepgen-vectorize", "lower deepgen tile ops to vector loads/stores with guards")
def run(module) -> None:
    kernel, spec, cfg = None, None, None
    for op in irb.walk_ops(module):
        name = op.name
        if name not in ("deepgen.load_frag", "deepgen.store_frag", "deepgen.tile_fetch",
                        "deepgen.tile_stash", "deepgen.tile_copy_async"):
            continue
        k = enclosing_kernel(op)
        if kernel is None or k != kernel:  # one kernel's ops come one after the other
            kernel = k
            spec = spec_of(kernel) if "deepgen.spec" in kernel.attributes else None
            if spec is None:
                raise PassError(kernel, "kernel has no deepgen.spec attribute")
            cfg = tile_of(kernel)
        if name == "deepgen.load_frag":
            lower_load_frag(op, spec, cfg)
        elif name == "deepgen.store_frag":
            lower_store_frag(op, spec, cfg)
        elif name == "deepgen.tile_fetch":
            lower_tile_fetch(op, spec)
        elif name == "deepgen.tile_copy_async":
            lower_tile_copy_async(op, spec, cfg)
        else:
            lower_tile_stash(op, cfg)
