"""The wgmma kernel builder: a warp-specialized TMA + mbarrier + wgmma GEMM, emitted directly
as a gpu.func (no loop nest to rewrite), and its launch signature.

Block of 128 x (1 + consumers) threads, dynamic shared memory
[stage 0: A tile (BM x BK), B tile][stage 1: ...]...[full barriers][empty barriers]:

    thread 0: init the ring (full: 1 arrival + TMA bytes; empty: one per consumer warpgroup)
    barrier
    warpgroup 0 (producer): setmaxnreg.dec producer_registers; one elected lane of warp 0:
        for t in K tiles: acquire stage (empty, parity ^ 1); arrive.expect_tx(full, bytes);
                          TMA A box (BM x BK) and B box(es) into the stage
    warpgroups 1.. (consumers): setmaxnreg.inc consumer_registers
        tile 0: wait full; wgmma.fence; BK/16 x slabs wgmma (the first with scale-d 0; tf32:
                BK/8 of k8); commit
        for t in 1..: wait full; fence; wgmma x ...; commit; wait_group 1 (tile t-1 read);
                      release stage of t-1 (one arrival per warpgroup)
        wait_group 0
        epilogue: the EpilogueSpec chain on pairs of neighbouring columns, guarded stores to C
                  (epilogue "tma": stmatrix into shared sub-tiles, TMA stores; tma_epilogue.py)

split_k > 1: grid z = batch x split_k, the CTA at z multiplies K slice z mod split_k (a
contiguous run of K tiles, KSlice) and stores its raw f32 accumulator into the workspace W[z];
deepgen-split-k's reduce kernel (the one mma_sync and gemv use) is the second launch: it sums
the slices in a fixed order and applies alpha/beta/C and the epilogue chain. With reduce
"cluster" the split_k CTAs of a tile are one cluster along z (rank = slice) instead: each
stashes its accumulator in its own shared memory (over the drained ring), and after a cluster
barrier each sums 1/split_k of the tile's registers from every CTA's stash in slice order
(ld.shared::cluster) and stores them through the epilogue (_cluster_reduce).

swap_ab: the kernel computes C^T = B^T A^T, so "wgmma's A" below is the spec's B (its BM rows
run over N) and "wgmma's B" the spec's A (BN columns over M; config.operands); the epilogue
stores the transposed accumulator (_store_transposed). An MN-major operand (A stored K x M,
B stored K x N) sets its wgmma transpose bit and loads as BK x 64 boxes, one per 64 rows or
columns (_load_tile).

Ping-pong (mode "pingpong", persistent): each consumer warpgroup computes whole BM x BN tiles,
warpgroup 1 the CTA's tiles 0, 2, 4, ..., warpgroup 2 tiles 1, 3, ...; the producer fills the
ring in tile order for both (a stage is read by one warpgroup: empty barriers count one
arrival). The two take turns on the tensor cores through named barriers (B.WarpgroupTurns):

    consumer c, its tiles i = c, c + 2, ...:
        i > 0: wait for the turn (the other warpgroup has issued all of tile i - 1's wgmma)
        mainloop of tile i (as above)
        i + 1 < tiles: pass the turn on
        wait_group 0; release the last stage; epilogue   (under the other's mainloop)

Grid: (tiles_m * tiles_n, 1, batch) in grouped order (group_m block rows walked column by
column); persistent: min(tiles, SMs x ctas_per_sm) CTAs walking tiles pid, pid + grid, ...
(the ring's (stage, phase) carried on); cluster_m 2: pairs of vertically adjacent tiles whose
CTAs each load half of B and multicast it to both (their empty barriers count both CTAs'
consumers); cluster_n 2 the same with pairs of horizontally adjacent tiles (neighbouring tile
columns of one row) sharing A (the pairs walked in grouped order, a pair's CTAs consecutive
along grid x: a launch cluster of (2, 1, 1) either way; _pair_tile). TMA descriptors of
wgmma's A (batch, rows, cols as stored; K-major: box 1 x BM x BK, MN-major: boxes of
1 x BK x 64) and B (K-major: box 1 x BN x BK; MN-major: boxes of 1 x BK x 64) are by-value
grid-constant parameters; out-of-bounds elements of partial tiles arrive as zeros.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

from mlir import ir
from mlir.dialects import arith, gpu, llvm, memref, nvvm, scf, vector

from deepgen.runtime.artifact import Launch, Param, param_for, tma_param
from deepgen.spec import DTYPE_BYTES, GemmSpec

from ... import irb
from ...epilogue import StoreOperands, emit, scale_args
from ...passes import split_k as SK
from ...passes.tile_gemm import kernel_module
from . import builders as B
from . import tma_epilogue as TE
from .config import (SCALE_BYTES, WARPGROUP, WGMMA_M, WgmmaConfig, accumulator_dtype,
                     data_bytes, estimates, k_tiles, operands, scale_offset, slice_tiles,
                     tile_bytes, wgmma_dtype, wgmma_k)

ENTRY = "deepgen_wgmma_gemm"
# After the backend's NVVM lowering: mbarrier try_wait.parity and friends are inline-PTX ops
# that LLVM translation rejects until convert-nvvm-to-llvm has expanded them.
EXTRA_LOWERING = ["convert-nvvm-to-llvm", "reconcile-unrealized-casts"]
TMA_PARAMS = (0, 1)  # the descriptors' positions among the kernel's parameters
C_STORE = "C_store"  # the TMA epilogue's descriptor of C (param 2, after A's and B's)
SMS = 132  # multiprocessors of an H100 SXM / H200: the persistent grid's size
STAGGER_BARRIER = 6  # named barrier of block scales' stagger (turns 1, 2, stash 3, epilogue 4, 5)
SCALE_A_TMA = "scale_a_tma"  # smem_scales: scale_a's TMA descriptor (the last param)


def grid(cfg: WgmmaConfig, spec: GemmSpec) -> tuple:
    if spec.dynamic_m:  # a range of M: rules over M, evaluated at launch
        return _range_grid(cfg, spec)
    ops = operands(cfg, spec)  # swap_ab: tile rows over N, columns over M
    tiles_m, tiles_n = -(-ops.rows // cfg.BM), -(-ops.cols // cfg.BN)
    if cfg.walks_pairs:  # 2-CTA clusters walking pairs of tiles
        return 2 * _pair_clusters(cfg, spec), 1, 1
    if cfg.persistent:  # one CTA per SM (ctas_per_sm per SM), each walking tiles
        return min(tiles_m * tiles_n * spec.batch, SMS * cfg.ctas_per_sm), 1, 1
    if cfg.cluster_m == 2:  # pairs of vertically adjacent tiles (an odd last row: a spare CTA)
        return -(-tiles_m // 2) * 2 * tiles_n, 1, spec.batch
    if cfg.cluster_n == 2:  # pairs of neighbouring tile columns (an odd last one: a spare CTA)
        return tiles_m * -(-tiles_n // 2) * 2, 1, spec.batch
    return tiles_m * tiles_n, 1, spec.batch * cfg.split_k  # z: batch element x K slice


def _range_grid(cfg: WgmmaConfig, spec: GemmSpec) -> tuple:
    """The grid of a range kernel (M a kernel argument; compiler/ranges.py: batch 1, no
    swap_ab or split-K) as size rules over M: the same walk as `grid` at the actual M."""
    tiles_m, tiles_n = f"cdiv(M, {cfg.BM})", -(-spec.N // cfg.BN)
    if cfg.persistent:
        return f"min({tiles_m} * {tiles_n}, {SMS * cfg.ctas_per_sm})", 1, 1
    if cfg.cluster_m == 2:
        return f"cdiv({tiles_m}, 2) * {2 * tiles_n}", 1, 1
    if cfg.cluster_n == 2:
        return f"{tiles_m} * {2 * -(-tiles_n // 2)}", 1, 1
    return f"{tiles_m} * {tiles_n}", 1, 1


def signature(cfg: WgmmaConfig, spec: GemmSpec) -> tuple:
    elt = DTYPE_BYTES[spec.dtype]
    b_rows = cfg.BN // cfg.cluster_m  # a cluster's CTAs each load their share of B (2x1)
    a_rows = cfg.BM // cfg.cluster_n  # or of A (1x2)
    ops = operands(cfg, spec)  # the descriptors of wgmma's A and B operands, in that order
    b_box = (1, b_rows, cfg.BK) if ops.b_k_major else (1, cfg.BK, 128 // elt)
    # an MN-major operand: boxes of BK rows of K by one 128-byte span (64 elements) of M or N
    a_box = (1, a_rows, cfg.BK) if ops.a_k_major else (1, cfg.BK, 128 // elt)
    params = [tma_param(ops.a, ops.a, spec, a_box),
              tma_param(ops.b, ops.b, spec, b_box)]
    if cfg.epilogue == "tma":  # C's store descriptor: boxes of one epilogue sub-tile
        params.append(tma_param(C_STORE, "C", spec, TE.box(cfg), swizzle=TE.swizzle(cfg, spec)))
    if cfg.workspace_reduce:  # raw partials to W; the reduce launch reads C, alpha, beta, bias
        return tuple(params + [param_for("W", spec)])
    params += [param_for("C", spec), param_for("alpha", spec), param_for("beta", spec)]
    if spec.epilogue.bias:
        params.append(param_for("bias", spec))
    params += [param_for(n, spec) for n in _scale_operands(spec)]  # fp8 scales
    if cfg.smem_scales:  # after scale_a's pointer param (the runtime checks its shape)
        params.append(_scale_a_tma(cfg, spec))
    if spec.dynamic_m:  # a range kernel: M (i32), last
        params.append(param_for("M", spec))
    return tuple(params)


def _scale_a_tma(cfg: WgmmaConfig, spec: GemmSpec) -> Param:
    """smem_scales: scale_a ((ceil(K/128), M) f32, M-major) read by TMA in boxes of one K
    block's BM values, K tile kb's scales of the tile's rows at (kb, m0) (rows past M zero
    filled; their results are never stored); no swizzle. Rank 2, so M % 4 == 0 (a 16-byte
    row pitch; validate): the flat rank-1 map of every M faulted on the H200 (UTMALDG.1D:
    illegal instruction, results/sanitizer-fp8-block-smem-scales-h200-2026-12-02.log)."""
    kb, m = spec.operand_shape("scale_a")
    return Param(SCALE_A_TMA, "tma", dtype="f32", shape=(kb, m), operand="scale_a",
                 box=(1, cfg.BM), swizzle=0)


def _pair_clusters(cfg: WgmmaConfig, spec: GemmSpec) -> int:
    """Persistent 2x1 clusters (block scales): one per two SMs (ctas_per_sm CTAs each), at
    most one per pair of tiles."""
    tiles_m, tiles_n = -(-spec.M // cfg.BM), -(-spec.N // cfg.BN)
    return min(-(-tiles_m // 2) * tiles_n * spec.batch, SMS * cfg.ctas_per_sm // 2)


def pair_strip(cfg: WgmmaConfig, spec: GemmSpec) -> tuple[int, int, int] | None:
    """cfg.narrow_column where it applies: N's last tile column at most half full (N mod BN
    in (0, BN / 2]), its pairs ("strip" pairs, one per pair of tile rows and batch element)
    few enough that the clusters left a pair short by the walk of the full columns take them,
    two each (a strip pair, BN / 2 wide, costs half a pair): (full columns F, the first short
    cluster q, strip pairs S), where the full columns leave R >= 1 rounds and q > 0 clusters
    a pair ahead and S <= 2 (clusters - q), and the walk of whole columns with tail_split
    does not end sooner (its R rounds and a half, where the strips' take R + 1: e.g. 4096 x
    4096 in 192-wide tiles, 336 full pairs over 66 clusters, 6 ahead); else None."""
    if not cfg.narrow_column:
        return None
    rest = spec.N % cfg.BN
    if not 0 < rest <= cfg.BN // 2:
        return None
    tiles_m = -(-spec.M // cfg.BM)
    pairs = -(-tiles_m // 2)
    full = spec.N // cfg.BN
    clusters = _pair_clusters(cfg, spec)
    rounds, ahead = divmod(pairs * full * spec.batch, clusters)
    strips = pairs * spec.batch
    if rounds < 1 or ahead == 0 or strips > 2 * (clusters - ahead):
        return None
    tail = _split_tail(cfg, spec)
    if tail is not None and tail[0] == rounds:
        return None
    return full, ahead, strips


def pair_tail(cfg: WgmmaConfig, spec: GemmSpec) -> tuple[int, int] | None:
    """cfg.tail_split where it applies: _split_tail's, the last column not walked as a strip
    (pair_strip); else None."""
    if pair_strip(cfg, spec) is not None:
        return None
    return _split_tail(cfg, spec)


def _split_tail(cfg: WgmmaConfig, spec: GemmSpec) -> tuple[int, int] | None:
    """(full rounds R, leftover pairs L) of the persistent 2x1 clusters' walk of whole
    columns with cfg.tail_split, R >= 1 and 2 L <= clusters, K tiles even (two equal halves);
    else None."""
    if not cfg.tail_split:
        return None
    tiles_m, tiles_n = -(-spec.M // cfg.BM), -(-spec.N // cfg.BN)
    clusters = _pair_clusters(cfg, spec)
    rounds, left = divmod(-(-tiles_m // 2) * tiles_n * spec.batch, clusters)
    if rounds < 1 or not 0 < 2 * left <= clusters or k_tiles(cfg, spec) % 2:
        return None
    return rounds, left


class PairStrip(NamedTuple):
    """narrow_column's share of a CTA: `count` (0 to 2) strip pairs after its cluster's pairs
    of full columns, tile(j) -> (m0, n0, batch element) of this CTA's tile of the j-th, from
    ring iteration `g0` (after the full columns' K tiles)."""
    tile: Callable
    count: object
    g0: object


class PairTail(NamedTuple):
    """tail_split's share of a CTA: the last-round tile its cluster takes (`origin`: m0, n0,
    batch element), whether the cluster takes one (`active`), the ring iteration it starts
    at (`g0`, after the full rounds) and this CTA's half of K (`ks`: rank x K tiles / 2)."""
    origin: tuple
    active: object
    g0: int
    ks: KSlice


def _cluster_walk(cfg: WgmmaConfig, spec: GemmSpec, pid, tiles_m: int, tiles_n: int):
    """Persistent 2x1 clusters: cluster c = pid / 2 walks the pairs of vertically adjacent
    tiles c, c + clusters, ... (grouped order over pairs of tile rows, batch outermost), this
    CTA the pair's tile of rank pid mod 2 (an odd last tile row: the second CTA's tile past M,
    loading zeros and multicasting its half of B): (tile(i) -> (m0, n0, batch element),
    count, tail). Both CTAs of a cluster walk the same count of tiles of the same K tiles, so
    their rings advance together and every multicast stage is freed by both. With pair_tail
    (R, L): R pairs each, then `tail` = the PairTail of the last round's 2 L tiles that
    cluster c < 2 L takes (pair R x clusters + c / 2, rank c mod 2), else None. With
    pair_strip (F, q, S): the walk covers the F full columns, and `strip` is the PairStrip
    of cluster c >= q: strip pairs 2 (c - q) and 2 (c - q) + 1 of the S (pair p of tile rows
    in batch element p / pairs), else None: (tile, count, tail, strip)."""
    clusters = _pair_clusters(cfg, spec)
    cid, rank = irb.div(pid, 2), irb.rem(pid, 2)
    pairs = -(-tiles_m // 2)
    narrow = pair_strip(cfg, spec)
    if narrow is not None:  # the full columns' pairs; the strip's after them
        tiles_n = narrow[0]
    per_batch = pairs * tiles_n
    count = irb.div(irb.sub(per_batch * spec.batch + clusters - 1, cid), clusters)
    group = min(cfg.group_m, pairs)

    def at(linear, r):
        bz = 0
        if spec.batch > 1:
            bz, linear = irb.div(linear, per_batch), irb.rem(linear, per_batch)
        pair_m, tile_n = _grouped_tile(linear, pairs, tiles_n, group)
        tile_m = irb.add(irb.mul(pair_m, 2), r)
        return irb.mul(tile_m, cfg.BM), irb.mul(tile_n, cfg.BN), bz

    def tile(i):
        return at(irb.add(cid, irb.mul(i, clusters)), rank)

    strip = None
    if narrow is not None:
        full, ahead, strips = narrow
        k = irb.sub(cid, irb.min_(cid, ahead))  # c - q for the clusters a pair short
        left = irb.min_(2, irb.sub(strips, irb.min_(irb.mul(k, 2), strips)))
        if isinstance(cid, int):
            n_strips = 0 if cid < ahead else left
        else:
            n_strips = arith.select(irb.lt(cid, ahead), irb.const_index(0), irb.val(left))

        def strip_tile(j):
            unit = irb.add(irb.mul(k, 2), j)
            pair_m = irb.rem(unit, pairs) if spec.batch > 1 else unit
            bz = irb.div(unit, pairs) if spec.batch > 1 else 0
            return (irb.mul(irb.add(irb.mul(pair_m, 2), rank), cfg.BM), full * cfg.BN, bz)

        strip = PairStrip(strip_tile, n_strips, irb.mul(count, k_tiles(cfg, spec)))
    split = pair_tail(cfg, spec)
    if split is None:
        return tile, count, None, strip
    rounds, left = split
    unit = at(irb.add(rounds * clusters, irb.div(cid, 2)), irb.rem(cid, 2))
    limit = 2 * left  # (a Python bool where pid is an int, as the tests walk it)
    active = cid < limit if isinstance(cid, int) else irb.lt(cid, limit)
    half = k_tiles(cfg, spec) // 2  # (even: pair_tail)
    # this CTA's half: rank pid mod 2, emitted here, after the tile's (the order of the
    # GPU-checked kernels' PTX)
    return tile, rounds, PairTail(unit, active, rounds * k_tiles(cfg, spec),
                                  KSlice(irb.mul(irb.rem(pid, 2), half), half)), None


def _scale_operands(spec: GemmSpec) -> tuple[str, ...]:
    """The fp8 scale operands (scale_a, scale_b: f32 in device memory), or none."""
    return spec.operands()[len(spec.epilogue.operands()):]


def _scaled_alpha(alpha, scale_a, scale_b):
    """Per-tensor scales: alpha * scale_a * scale_b, loaded once per CTA from device memory (so
    a CUDA graph replays with the scales' current values), becomes the alpha_beta step's
    alpha: the chain's first step, so acc * scale_a * scale_b comes before bias, activation
    and cast (config.validate)."""
    zero = [irb.const_index(0)]
    return arith.mulf(alpha, arith.mulf(memref.load(scale_a, zero), memref.load(scale_b, zero)))


def cluster(cfg: WgmmaConfig) -> tuple[int, int, int] | None:
    """The launch's cluster shape: 2x1 pairs sharing B and 1x2 pairs sharing A (consecutive
    CTAs of the linear grid x, either way), or a tile's K slices along z."""
    if cfg.cluster_reduce:
        return 1, 1, cfg.split_k
    return (cfg.cluster_ctas, 1, 1) if cfg.cluster_ctas > 1 else None


def launches(cfg: WgmmaConfig, spec: GemmSpec) -> list[Launch]:
    main = Launch(entry=ENTRY, grid=grid(cfg, spec), block=(cfg.threads, 1, 1),
                  shared_bytes=estimates(cfg, spec)["shared_bytes"],
                  params=signature(cfg, spec), cluster=cluster(cfg))
    return [main] + ([SK.reduce_launch(spec)] if cfg.workspace_reduce else [])


def workspace_bytes(cfg: WgmmaConfig, spec: GemmSpec) -> int:
    return SK.workspace_bytes(spec, cfg.split_k) if cfg.workspace_reduce else 0


class KSlice:
    """The K tiles a CTA multiplies: `count` tiles from tile `first` (all of K, or with
    split_k one slice of slice_tiles, the last slice shorter), and `z`, the workspace index
    of its partials (batch element x split_k + slice)."""

    def __init__(self, first, count, z=None):
        self.first, self.count, self.z = first, count, z

    @classmethod
    def whole(cls, cfg: WgmmaConfig, spec: GemmSpec) -> "KSlice":
        return cls(0, k_tiles(cfg, spec))

    @classmethod
    def of_block(cls, cfg: WgmmaConfig, spec: GemmSpec, z) -> tuple:
        """(batch element, slice) of the CTA at grid z."""
        if cfg.split_k == 1:
            return z, cls.whole(cfg, spec)
        per, total = slice_tiles(cfg, spec), k_tiles(cfg, spec)
        first = irb.mul(irb.rem(z, cfg.split_k), per)
        return irb.div(z, cfg.split_k), cls(first, irb.min_(per, irb.sub(total, first)), z)


def _grouped_tile(pid, tiles_m, tiles_n: int, group: int):
    """(tile row, tile column) of linear block `pid` in grouped order (tiles_m an int, or an
    index value in a range kernel)."""
    per_group = group * tiles_n
    g = irb.div(pid, per_group)
    first_m = irb.mul(g, group)
    partial = not isinstance(tiles_m, int) or tiles_m % group
    size = irb.min_(irb.sub(tiles_m, first_m), group) if partial else group
    local = irb.rem(pid, per_group)
    return irb.add(first_m, irb.rem(local, size)), irb.div(local, size)


def _pair_tile(cfg: WgmmaConfig, pid, tiles_m, tiles_n: int, dynamic_m: bool):
    """(tile row, tile column) of CTA `pid` of a 2-CTA cluster grid: the pairs (2x1: of tile
    rows, 1x2: of tile columns; an odd count leaves a spare CTA past the edge, which still
    loads and multicasts its half of the shared operand) in grouped order, the CTA's tile
    the pair's first or second (rank pid mod 2) along the cluster's axis."""
    if cfg.cluster_m == 2:
        rows = irb.div(irb.add(tiles_m, 1), 2) if dynamic_m else -(-tiles_m // 2)
        cols = tiles_n
    else:
        rows, cols = tiles_m, -(-tiles_n // 2)
    group = cfg.group_m if dynamic_m else min(cfg.group_m, rows)
    pair_m, pair_n = _grouped_tile(irb.div(pid, 2), rows, cols, group)

    def in_pair(p):
        return irb.add(irb.mul(p, 2), irb.rem(pid, 2))

    return (in_pair(pair_m) if cfg.cluster_m == 2 else pair_m,
            in_pair(pair_n) if cfg.cluster_n == 2 else pair_n)


def build_module(spec: GemmSpec, cfg: WgmmaConfig, target: str) -> ir.Module:
    """The module holding the kernel's gpu.module (in the current context and location)."""
    module = ir.Module.create()
    gm = kernel_module(module.operation, target, math=spec.epilogue.needs_math)
    build_kernel(gm, spec, cfg)
    return module


def build_kernel(gm, spec: GemmSpec, cfg: WgmmaConfig) -> None:
    # a range of M (compiler/ranges.py): planned at M = max (C's memref, whose row pitch N is
    # all a batch-1 store uses); M an i32 argument for the tile walk and the row guards
    dynamic_m = spec.dynamic_m
    spec = spec.planning()
    out_t = irb.element_type(spec.out_dtype)
    f32 = ir.F32Type.get()
    ptr = llvm.PointerType.get()
    c_t = ir.MemRefType.get([spec.batch, spec.M, spec.N], out_t)
    types = [ptr, ptr, c_t, f32, f32]
    if cfg.epilogue == "tma":  # C's TMA store descriptor after A's and B's
        types.insert(2, ptr)
    if cfg.workspace_reduce:  # W: the slices' f32 partials
        types = [ptr, ptr, ir.MemRefType.get([spec.batch * cfg.split_k, spec.M, spec.N], f32)]
    elif spec.epilogue.bias:
        types.append(ir.MemRefType.get(list(spec.operand_shape("bias")),
                                       irb.element_type(spec.operand_dtype("bias"))))
    scales = _scale_operands(spec)  # f32 memrefs after the epilogue's operands
    types += [ir.MemRefType.get(list(spec.operand_shape(n)), f32) for n in scales]
    if cfg.smem_scales:  # scale_a's TMA descriptor
        types.append(ptr)
    if dynamic_m:
        types.append(ir.IntegerType.get_signless(32))
    a_bytes, b_bytes = tile_bytes(cfg, spec)
    stage_bytes = a_bytes + b_bytes
    S = cfg.stages
    stash = _Stash(cfg) if cfg.cluster_reduce else None
    arena = B.SharedArena(gm)
    with ir.InsertionPoint(gm.bodyRegion.blocks[0]):
        kernel = gpu.GPUFuncOp(ir.FunctionType.get(types, []), sym_name=ENTRY, kernel=True,
                               known_block_size=[cfg.threads, 1, 1])
        block = kernel.add_entry_block()
    args = list(block.arguments)
    m_arg = args.pop() if dynamic_m else None
    staged = _StagedScales(cfg, spec, arena, args.pop()) if cfg.smem_scales else None
    epi = TE.TmaEpilogue(cfg, spec, arena, args.pop(2)) if cfg.epilogue == "tma" else None
    if scales:
        args, scale_args = args[:-len(scales)], args[-len(scales):]
    desc_a, desc_b, c_mem = args[:3]  # c_mem: C, or W with split_k
    alpha, beta = args[3:5] if len(args) > 3 else (None, None)
    bias = args[5] if len(args) > 5 else None
    ops = operands(cfg, spec)
    tiles_m, tiles_n = -(-ops.rows // cfg.BM), -(-ops.cols // cfg.BN)
    whole = KSlice.whole(cfg, spec)

    with ir.InsertionPoint(block):
        arena.base()
        if spec.scale == "tensor":  # folded into alpha (the chain starts with alpha_beta)
            alpha = _scaled_alpha(alpha, *scale_args)
        # rowwise: acc[m, n] * scale_a[m] * scale_b[n], before the chain (compiler/epilogue.py)
        rowwise = tuple(scale_args) if spec.scale == "rowwise" else None
        # block: per K tile, in the main loop (_consumer_block)
        block = tuple(scale_args) if spec.scale == "block" else None
        tid = gpu.thread_id(gpu.Dimension.x)
        pid = gpu.block_id(gpu.Dimension.x)
        m_bound = None
        if dynamic_m:  # the tile rows of the actual M: cdiv(M, BM)
            m_bound = arith.index_cast(irb.index_type(), m_arg)
            tiles_m = irb.div(irb.add(m_bound, cfg.BM - 1), cfg.BM)
        group = cfg.group_m if dynamic_m else min(cfg.group_m, tiles_m)

        def origin(linear, bz):
            """(m0, n0, batch) of the tile `linear` (within its batch element if bz given)."""
            if bz is None and spec.batch > 1:  # (a range kernel has batch 1)
                per_batch = tiles_m * tiles_n
                bz = irb.div(linear, per_batch)
                linear = irb.rem(linear, per_batch)
            elif bz is None:
                bz = 0
            tile_m, tile_n = _grouped_tile(linear, tiles_m, tiles_n, group)
            return irb.mul(tile_m, cfg.BM), irb.mul(tile_n, cfg.BN), bz

        def for_tiles(body, first=0, step=1):
            """body(m0, n0, bz, g0, ks, i, count) for each tile of this CTA, g0 its first ring
            iteration, ks its K slice, i its place in the CTA's walk of `count` tiles (both
            None unless persistent): one tile (the block's) or, persistent, the CTA's tiles
            i = first, first + step, ... of pid, pid + grid, ... (2x1 clusters: of the
            cluster's pairs, _cluster_walk)."""
            if cfg.walks_pairs:  # a cluster's pairs, walked together
                tile, count = _cluster_walk(cfg, spec, pid, tiles_m, tiles_n)[:2]
                loop = scf.ForOp(irb.val(first), irb.val(count), irb.val(step))
                with ir.InsertionPoint(loop.body):
                    i = loop.induction_variable
                    body(*tile(i), irb.mul(i, whole.count), whole, i, count)
                    scf.yield_([])
                return
            if cfg.cluster_ctas == 2:  # the pair's tiles, then this CTA's of the two
                bz = gpu.block_id(gpu.Dimension.z) if spec.batch > 1 else 0
                tile_m, tile_n = _pair_tile(cfg, pid, tiles_m, tiles_n, dynamic_m)
                body(irb.mul(tile_m, cfg.BM), irb.mul(tile_n, cfg.BN), bz, 0, whole, None, None)
                return
            if not cfg.persistent:
                z = gpu.block_id(gpu.Dimension.z) if spec.batch * cfg.split_k > 1 else 0
                bz, ks = KSlice.of_block(cfg, spec, z)
                body(*origin(pid, bz), 0, ks, None, None)
                return
            if dynamic_m:  # the grid is min(tiles, SMs x ctas_per_sm) at the actual M
                n_ctas = gpu.grid_dim(gpu.Dimension.x)
                total = irb.mul(tiles_m, tiles_n)
                count = irb.div(irb.sub(irb.add(total, irb.sub(n_ctas, 1)), pid), n_ctas)
            else:
                n_ctas = grid(cfg, spec)[0]
                total = tiles_m * tiles_n * spec.batch
                count = irb.div(irb.sub(total + n_ctas - 1, pid), n_ctas)
            loop = scf.ForOp(irb.val(first), irb.val(count), irb.val(step))
            with ir.InsertionPoint(loop.body):
                i = loop.induction_variable
                body(*origin(irb.add(pid, irb.mul(i, n_ctas)), None), irb.mul(i, whole.count),
                     whole, i, count)
                scf.yield_([])

        # tail_split: the last round's tiles on two halves of K; narrow_column: the last tile
        # column's pairs, BN / 2 wide (None where they do not apply)
        tail = strip = None
        if block is not None and (pair_tail(cfg, spec) or pair_strip(cfg, spec)):
            tail, strip = _cluster_walk(cfg, spec, pid, tiles_m, tiles_n)[2:]
        wg = B.warp_uniform(irb.div(tid, WARPGROUP))
        pingpong = cfg.mode == "pingpong"
        # ping-pong: a stage holds one warpgroup's tile, so one warpgroup releases it; with
        # scale_a staged, every consumer warp (its own ld.shared of the stage's scales)
        ring = B.MbarrierRing(arena, data_bytes(cfg, spec), S,
                              1 if pingpong else cfg.consumers * _releases(cfg),
                              cluster=cfg.cluster_ctas)
        with B.if_(B.eq(tid, 0)):
            ring.init()
        nvvm.barrier0()
        if cfg.cluster_ctas > 1:  # the peer's barriers are initialised before any remote use
            B.cluster_sync()

        with B.if_else(B.eq(wg, 0)) as (producer, consumer):
            with producer:
                if cfg.warp_specialized:
                    B.setmaxnreg(cfg.producer_registers, increase=False)
                with B.if_(B.eq(irb.div(tid, 32), 0)):
                    with B.if_(B.elect_one()):
                        for_tiles(lambda m0, n0, bz, g0, ks, _i, _count: _producer_loop(
                            spec, cfg, ring, arena, desc_a, desc_b, m0, n0, bz, g0, ks,
                            a_bytes, stage_bytes, staged=staged))
                        if tail is not None:  # this CTA's half of K of the cluster's tile
                            with B.if_(tail.active):
                                _producer_loop(spec, cfg, ring, arena, desc_a, desc_b,
                                               *tail.origin, tail.g0, tail.ks, a_bytes,
                                               stage_bytes, staged=staged, multicast=False)
                        if strip is not None:  # the strip pairs (whole B tiles: the narrow
                            # wgmma reads their first BN / 2 rows, the rest past N is zeros)
                            loop = scf.ForOp(irb.const_index(0), irb.val(strip.count),
                                             irb.const_index(1))
                            with ir.InsertionPoint(loop.body):
                                j = loop.induction_variable
                                _producer_loop(spec, cfg, ring, arena, desc_a, desc_b,
                                               *strip.tile(j),
                                               irb.add(strip.g0, irb.mul(j, whole.count)),
                                               whole, a_bytes, stage_bytes, staged=staged)
                                scf.yield_([])
                if tail is not None:  # (the consumers' barrier: the halves stashed)
                    with B.if_(tail.active):
                        B.cluster_sync()
                if stash is not None:  # the consumers' cluster barrier: stashes complete
                    B.cluster_sync()
            with consumer:
                if cfg.warp_specialized:
                    B.setmaxnreg(cfg.consumer_registers, increase=True)
                consumer_index = irb.sub(wg, 1)
                if pingpong:  # consumer c takes the CTA's tiles c, c + 2, ... in turns
                    turns = B.WarpgroupTurns(first_id=1, n=2, threads=WARPGROUP)
                    for_tiles(lambda m0, n0, bz, g0, ks, i, count: _consumer(
                        spec, cfg, ring, arena, tid, 0, m0, n0, bz, g0, ks, a_bytes,
                        stage_bytes, c_mem, alpha, beta, bias, out_t,
                        turn=_PingPongTurn(turns, consumer_index, i, count), scales=rowwise,
                        m_bound=m_bound, epi=epi),
                        first=consumer_index, step=2)
                elif block is not None:  # fp8 block scales: promotion per K tile
                    row_base = irb.mul(consumer_index, cfg.rows_per_consumer)
                    if cfg.walks_pairs:  # the cluster's pairs
                        walk = _cluster_walk(cfg, spec, pid, tiles_m, tiles_n)
                    elif cfg.persistent:  # the CTA's tiles pid, pid + grid, ... (for_tiles')
                        n_ctas = grid(cfg, spec)[0]
                        total = tiles_m * tiles_n * spec.batch
                        walk = (lambda i: origin(irb.add(pid, irb.mul(i, n_ctas)), None),
                                irb.div(irb.sub(total + n_ctas - 1, pid), n_ctas))
                    if cfg.persistent:
                        _consumer_block(spec, cfg, ring, arena, tid, row_base, *walk[:2],
                                        whole, a_bytes, stage_bytes, c_mem, alpha, beta, bias,
                                        out_t, block, staged, epi, tail=tail)
                    else:  # one tile (a cluster's: the pair's; or a K slice's)
                        for_tiles(lambda m0, n0, bz, _g0, ks, _i, _count: _consumer_block(
                            spec, cfg, ring, arena, tid, row_base, lambda _t: (m0, n0, bz), 1,
                            ks, a_bytes, stage_bytes, c_mem, alpha, beta, bias, out_t, block,
                            staged, epi, stash))
                    if strip is not None:  # the strip pairs with the narrow wgmma (with
                        # stagger, consumer 1 is still behind from the CTA's first tile)
                        narrow = cfg.replace(BN=cfg.BN // 2, narrow_column=False,
                                             stagger=False)
                        with B.if_(irb.lt(0, strip.count)):
                            _consumer_block(spec, narrow, ring, arena, tid, row_base,
                                            strip.tile, strip.count, whole, a_bytes,
                                            stage_bytes, c_mem, alpha, beta, bias, out_t, block,
                                            staged, epi and epi.narrowed(narrow.BN),
                                            g0=strip.g0)
                else:
                    row_base = irb.mul(consumer_index, cfg.rows_per_consumer)
                    for_tiles(lambda m0, n0, bz, g0, ks, _i, _count: _consumer(
                        spec, cfg, ring, arena, tid, row_base, m0, n0, bz, g0, ks, a_bytes,
                        stage_bytes, c_mem, alpha, beta, bias, out_t, stash=stash,
                        scales=rowwise, m_bound=m_bound, epi=epi))
                if stash is not None:  # every CTA's partials stashed: sum a share
                    # (here, not after the branches, where ptxas would hold the code to the
                    # producer's 40 registers)
                    row_base = irb.mul(consumer_index, cfg.rows_per_consumer)
                    B.cluster_sync()
                    for_tiles(lambda m0, n0, bz, _g0, _ks, _i, _count: _cluster_reduce(
                        spec, cfg, stash, arena, tid, m0, n0, row_base, bz, c_mem, alpha,
                        beta, bias, out_t, scales=rowwise))
                if epi is not None:  # no exit while a TMA store reads shared memory
                    epi.drain(tid)
        if cfg.cluster_ctas > 1 or stash is not None:
            B.cluster_sync()  # no CTA exits while a peer may still use its shared memory
        gpu.return_([])
    if cfg.workspace_reduce:  # the deterministic reduce of the partials, with the epilogue chain
        SK.build_reduce(kernel, spec, cfg.split_k, spec.epilogue.steps)


def _releases(cfg: WgmmaConfig) -> int:
    """Arrivals per consumer warpgroup on a stage's empty barrier: one, or with scale_a
    staged (smem_scales) one per warp, as DeepGEMM: each warp reads its rows' scales from the
    stage with ld.shared, which the warpgroup's wgmma completion does not order (the leader's
    wait covers the warpgroup's wgmma, not the other warps' loads). (It did not cure BN 136's
    wrong rows with staged scales: config.staged_scales_problem.)"""
    return WARPGROUP // 32 if cfg.smem_scales else 1


def _producer_loop(spec, cfg, ring, arena, desc_a, desc_b, m0, n0, bz, g0, ks, a_bytes,
                   stage_bytes, staged=None, multicast: bool = True) -> None:
    """The stages of one tile's K tiles `ks` (ring iterations from g0); a 2-CTA cluster's
    shared operand half from each CTA and multicast, or (not `multicast`: the CTAs on
    different K tiles of one tile, tail_split) the whole of it from this CTA, in its own
    shared memory."""
    ops = operands(cfg, spec)
    # the ring state at the tile's first K tile, advanced per K tile (no division in the loop)
    loop = scf.ForOp(irb.const_index(0), irb.val(ks.count), irb.const_index(1),
                     B.PipelineState.at(g0, cfg.stages).values)
    with ir.InsertionPoint(loop.body):
        t = loop.induction_variable
        st = B.PipelineState.carried(loop.inner_iter_args, cfg.stages)
        ring.producer_acquire(st)
        # smem_scales: the stage's scale_a too (staged.bytes more, on the same barrier)
        ring.producer_commit(st, stage_bytes + (staged.bytes if staged is not None else 0))
        full = ring.full(st.stage)
        base = irb.mul(st.stage, stage_bytes)
        k0 = irb.mul(irb.add(ks.first, t), cfg.BK)
        if staged is not None:  # the K tile's scale_a of the tile's rows
            staged.load(st.stage, irb.add(ks.first, t), m0, full)
        # wgmma's A tile at the stage's start, B's after it; a 2-CTA cluster's shared operand
        # (A for 1x2, B for 2x1) half from each CTA, multicast
        _load_tile(spec, cfg, desc_a, arena, base, 0, m0, k0, bz, full, cfg.BM, ops.a_k_major,
                   shared=cfg.cluster_n == 2, multicast=multicast)
        _load_tile(spec, cfg, desc_b, arena, base, a_bytes, n0, k0, bz, full, cfg.BN,
                   ops.b_k_major, shared=cfg.cluster_m == 2, multicast=multicast)
        scf.yield_(st.advance().values)


def _load_tile(spec, cfg, desc, arena, base, offset: int, origin, k0, bz, full, extent: int,
               k_major: bool, shared: bool, multicast: bool = True) -> None:
    """One operand's tile of a stage (at byte `offset` of the stage at `base`): `extent` rows
    (BM of wgmma's A, BN of its B) from `origin`; K-major (A stored (rows, K), B (cols, K)):
    one extent x BK box; MN-major (A stored K x M, B stored K x N): extent/64 boxes of BK x 64,
    each one 64-row atom, side by side; coordinates innermost first ((column, row, batch) of
    the stored matrix). `shared`: the operand a 2-CTA cluster shares: this CTA (rank = block
    x mod 2) loads half of it (K-major: rows rank x extent/2 on; MN-major: half the boxes)
    and multicasts it into both CTAs of the pair at the same offsets (config's
    multicast_half_problem: the halves whole swizzle atoms); not `multicast` (K-major): both
    halves into this CTA's shared memory alone."""
    elt = DTYPE_BYTES[spec.dtype]
    box = 128 // elt
    if shared and not multicast and k_major:
        half = extent // 2
        for r in range(2):
            dst = arena.ptr(irb.add(base, offset + r * half * cfg.BK * elt))
            B.tma_load(desc, dst, (k0, irb.add(origin, r * half), bz), full)
        return
    if not shared:
        if k_major:
            B.tma_load(desc, arena.ptr(irb.add(base, offset)), (k0, origin, bz), full)
            return
        for j in range(extent // box):
            dst = arena.ptr(irb.add(base, offset + j * cfg.BK * 128))
            B.tma_load(desc, dst, (irb.add(origin, j * box), k0, bz), full)
        return
    rank = irb.rem(gpu.block_id(gpu.Dimension.x), 2)
    if k_major:
        half = extent // 2
        dst = arena.ptr(irb.add(base, irb.add(offset, irb.mul(rank, half * cfg.BK * elt))))
        B.tma_load(desc, dst, (k0, irb.add(origin, irb.mul(rank, half)), bz), full,
                   multicast=0b11)
        return
    per = extent // box // 2
    for jj in range(per):
        j = irb.add(irb.mul(rank, per), jj)
        dst = arena.ptr(irb.add(base, irb.add(offset, irb.mul(j, cfg.BK * 128))))
        B.tma_load(desc, dst, (irb.add(origin, irb.mul(j, box)), k0, bz), full,
                   multicast=0b11)


class _PingPongTurn:
    """Consumer `c`'s turn on the tensor cores for tile `i` of the CTA's `count` (ping-pong):
    wait for it unless this is the CTA's first tile, pass it on once this tile's wgmma are
    issued if the other warpgroup has a next tile (every pass meets exactly one wait)."""

    def __init__(self, turns: B.WarpgroupTurns, c, i, count):
        self.turns, self.c, self.i, self.count = turns, c, i, count

    def take(self) -> None:
        with B.if_(irb.lt(0, self.i)):
            self.turns.wait(self.c)

    def pass_on(self) -> None:
        with B.if_(irb.lt(irb.add(self.i, 1), self.count)):
            self.turns.pass_on(self.c)


def _consumer(spec, cfg, ring, arena, tid, row_base, m0, n0, bz, g0, ks, a_bytes,
              stage_bytes, c_mem, alpha, beta, bias, out_t, turn: _PingPongTurn | None = None,
              stash: _Stash | None = None, scales=None, m_bound=None,
              epi: TE.TmaEpilogue | None = None) -> None:
    """One tile's mainloop and epilogue for one consumer warpgroup, on rows row_base.. of the
    tile (cooperative: its share; ping-pong: 0, the whole tile, in its turn); `epi`: out
    through shared memory and TMA stores (tma_epilogue.py)."""
    acc = B.Accumulator(cfg.BN, accumulator_dtype(spec))  # s32 for int8, read as f32
    mn_major_b = not operands(cfg, spec).b_k_major
    mn_major_a = not operands(cfg, spec).a_k_major
    mma_k, mma_dtype = wgmma_k(spec), wgmma_dtype(spec)  # tf32: k8 steps over f32 tiles
    k_steps = cfg.BK // mma_k
    elt = DTYPE_BYTES[spec.dtype]

    def descriptors(stage):
        a_addr = arena.addr32(irb.add(irb.mul(stage, stage_bytes), irb.mul(row_base, cfg.BK * elt)))
        b_addr = arena.addr32(irb.add(irb.mul(stage, stage_bytes), a_bytes))
        if mn_major_a:  # one 64-row atom per slab (BK * 128 bytes), 8-row K groups 1024 apart
            da = B.smem_descriptor(a_addr, leading_bytes=cfg.BK * 128, stride_bytes=1024)
        else:
            da = B.smem_descriptor(a_addr, leading_bytes=16, stride_bytes=1024)
        if mn_major_b:  # 64-column atoms BK * 128 bytes apart, 8-row groups 1024 apart
            db = B.smem_descriptor(b_addr, leading_bytes=cfg.BK * 128, stride_bytes=1024)
        else:
            db = B.smem_descriptor(b_addr, leading_bytes=16, stride_bytes=1024)
        return da, db

    def mma_tile(stage, accs, first: bool):
        da, db = descriptors(stage)
        nvvm.wgmma_fence_aligned()
        accs = list(accs)
        for kk in range(k_steps):
            b_k = kk * mma_k * 128 if mn_major_b else kk * mma_k * elt
            # a slab is 64 x BK either way (K-major rows, or one MN-major atom): 8 KiB apart
            a_k = kk * mma_k * 128 if mn_major_a else kk * mma_k * elt
            for r in range(cfg.slabs):
                a_off = r * WGMMA_M * cfg.BK * elt + a_k
                accs[r] = B.wgmma(acc, accs[r], B.add_bytes(da, a_off), B.add_bytes(db, b_k),
                                  dtype=mma_dtype, zero=first and kk == 0,
                                  b_mn_major=mn_major_b, a_mn_major=mn_major_a)
        nvvm.wgmma_commit_group_sync_aligned()
        return accs

    st0 = B.PipelineState.at(g0, cfg.stages)
    if turn is not None:
        turn.take()
    ring.consumer_wait(st0)
    accs = mma_tile(st0.stage, [acc.undef() for _ in range(cfg.slabs)], first=True)
    leader = B.eq(irb.rem(tid, WARPGROUP), 0)
    # CUTLASS's read and release states: K tile t is read while t - 1's stage is released
    released = st0
    if not isinstance(ks.count, int) or ks.count > 1:
        n = cfg.slabs
        loop = scf.ForOp(irb.const_index(1), irb.val(ks.count), irb.const_index(1),
                         accs + st0.advance().values + st0.values)
        with ir.InsertionPoint(loop.body):
            carried = list(loop.inner_iter_args)
            st = B.PipelineState.carried(carried[n:n + 2], cfg.stages)
            prev = B.PipelineState.carried(carried[n + 2:], cfg.stages)
            ring.consumer_wait(st)
            new = mma_tile(st.stage, carried[:n], first=False)
            nvvm.wgmma_wait_group_sync_aligned(1)  # tile t-1's wgmma have read their stage
            with B.if_(leader):
                ring.consumer_release(prev)
            scf.yield_(new + st.advance().values + prev.advance().values)
        accs = list(loop.results)[:n]
        released = B.PipelineState.carried(list(loop.results)[n + 2:], cfg.stages)
    if turn is not None:  # every wgmma of the tile is issued: the other warpgroup's turn
        turn.pass_on()
    nvvm.wgmma_wait_group_sync_aligned(0)
    if cfg.persistent:  # the ring goes on into the next tile: release the last stage too
        with B.if_(leader):
            ring.consumer_release(released)  # the tile's last K tile
    if stash is not None:  # the cluster sums the slices (_cluster_reduce)
        stash.put(arena, [acc.get(accs[r], j) for r in range(cfg.slabs)
                          for j in range(acc.size)], tid)
        return
    if epi is not None:
        epi.store(lambda r, j: acc.get(accs[r], j), tid, m0, n0, row_base, bz, c_mem, alpha,
                  beta, bias, out_t, scales, m_bound=m_bound)
        return
    regs = _Registers.whole(cfg, acc, accs)
    if cfg.swap_ab:
        _store_transposed(spec, cfg, regs, tid, m0, n0, row_base, bz, ks, c_mem, alpha,
                          beta, bias, out_t, scales)
        return
    if cfg.split_k > 1:
        _store_partials(spec, cfg, regs, tid, m0, n0, row_base, ks.z, c_mem)
        return
    _epilogue(spec, cfg, regs, tid, m0, n0, row_base, bz, c_mem, alpha, beta, bias, out_t,
              scales, m_bound=m_bound)


def _consumer_block(spec, cfg, ring, arena, tid, row_base, tiles, count, ks, a_bytes,
                    stage_bytes, c_mem, alpha, beta, bias, out_t, block,
                    staged: _StagedScales | None = None,
                    epi: TE.TmaEpilogue | None = None, stash: _Stash | None = None,
                    tail: PairTail | None = None, g0=0) -> None:
    """A consumer's tiles with fp8 block scales (GemmSpec.scale "block"; DeepGEMM's
    promotion): `count` tiles (1, or the persistent CTA's count, an index value), tile i at
    tiles(i) = (m0, n0, batch), each over the K tiles of `ks` (a split_k slice: `stash`
    takes the promoted sums for the cluster's reduce), the ring from iteration g0 on (a
    narrow_column strip's call: after the CTA's full pairs; cfg then has BN / 2); then, with
    `tail` (tail_split), the cluster's last-round tile over this CTA's half of K, summed with
    the other CTA's half through distributed shared memory.

    The promotion runs under the next K tile's wgmma, over two temporary accumulators: K
    tile t (one 128-wide scale block, BK = 128) is issued into temporary t mod 2 (scale-d 0
    first); then tile t - 1's products, complete in the other temporary, are folded into
    the main f32 accumulator while tile t runs (main += temp x scale_a[kb, row] x
    scale_b[n0 / 128, kb], one FMA per register). The K loop takes two K tiles per trip:
    within a trip K tile t is issued before t - 1 is waited for (wait_group 1), so the
    warpgroup's next group is queued while it promotes (cfg.issue_ahead); the trip's last is
    drained (wait_group 0). A stage is released once its wgmma are done, after the promotion
    that follows the wait (a branch between wait_group 1 and the reads of the completed
    temporary makes ptxas serialize every wgmma of the kernel, with no warning). Across
    tiles (persistent) the same: the next tile's first K tile is issued before this tile's
    last promotion and its epilogue, which run under it. Nothing is in flight across a
    loop's back edge (ptxas then serializes every wgmma of a kernel: C7514/C7515), as
    FlashAttention-3's intra-warpgroup overlap. A thread's scales of K tile t are loaded
    (global, per thread) before tile t is waited for, or (`staged`, smem_scales) scale_a read
    from the stage's shared copy once it is full, and used a tile later. The K loop is
    unrolled by two so each temporary keeps its registers (main + 2 temporaries: 3 x slabs x
    BN / 2 per thread); empty volatile asm (_fence_operands) keeps the FMAs between the
    wgmma issue and the wait. The epilogue stores the main accumulator through the chain (no
    scales left to apply), per thread or (`epi`) through shared sub-tiles and TMA stores, which
    leave the consumers at once: the next tile's K loop runs under them. The ring's state is
    carried from tile to tile. K-major operands only (fp8, layout NT). Where BN does not
    divide 128 a tile may span two blocks of B's scales: both blocks' scale_b are loaded and
    each chunk of gcd(BN, 128) columns picks its own (Tile.column_scales). With cfg.stagger, consumer 1
    starts its first K tile once consumer 0's first group is complete (a named barrier, once
    per CTA). With cfg.temporaries 1 (DeepGEMM's schedule, room for BN up to 192) a K tile
    is waited for at once, promoted, then the next is issued into the same registers: the
    other consumer's wgmma run under the promotion; with cfg.temp_parts 2 the temporary
    holds BN / 2 columns and each K tile goes in two parts, each waited for and promoted
    into its half of main before the next part is issued (the stage released after the
    last: finish_parts)."""
    from mlir.dialects import math as math_d

    acc = B.Accumulator(cfg.BN)
    # the temporary: BN / temp_parts columns, a K tile issued and promoted part by part
    parts = cfg.temp_parts
    part = B.Accumulator(cfg.BN // parts)
    mma_k, mma_dtype = wgmma_k(spec), wgmma_dtype(spec)
    k_steps = cfg.BK // mma_k
    elt = DTYPE_BYTES[spec.dtype]
    scale_a, scale_b = block
    lane = irb.rem(tid, 32)
    warp = irb.rem(irb.div(tid, 32), 4)
    thread_row = irb.add(row_base, irb.add(irb.mul(warp, 16), irb.div(lane, 4)))
    # who releases a stage: the warpgroup's first thread, or each warp's (_releases)
    leader = B.eq(irb.rem(tid, WARPGROUP // _releases(cfg)), 0)
    size, n = cfg.slabs * acc.size, cfg.slabs
    # static: the whole of K, or split_k equal slices (validate)
    k_count = ks.count if isinstance(ks.count, int) else slice_tiles(cfg, spec)
    # smem_scales: this thread's rows within the tile (slab r, half h), as Tile.rows
    local_rows = [irb.add(thread_row, r * WGMMA_M + 8 * h) for r in range(n) for h in range(2)]

    straddle = 128 % cfg.BN != 0  # a tile's columns may lie in two blocks of B's scales
    n_blocks = -(-spec.N // 128)
    n_sc = 2 * n * (2 if straddle else 1)  # the scales issue() makes per K tile

    class Tile:
        """Tile i's origin and this thread's scale rows: slab r, half h (registers with
        (j / 2) mod 2 = h) at m0 + thread_row + 64 r + 8 h, clamped into A (rows past M read
        row M - 1's scale; their results are never stored). Where BN does not divide 128
        (`straddle`), the tile's columns from `boundary` on (a multiple of 8) take the next
        block of B's scales."""

        def __init__(self, i, origin=None, k_first=None, k_count=k_count):
            self.m0, self.n0, self.bz = tiles(i) if origin is None else origin
            self.k_first = ks.first if k_first is None else k_first  # its K tiles' first
            self.k_count = k_count
            row0 = irb.add(self.m0, thread_row)
            self.rows = [irb.min_(irb.add(row0, r * WGMMA_M + 8 * h), spec.M - 1)
                         for r in range(n) for h in range(2)] if staged is None else None
            self.n_block = irb.div(self.n0, 128)
            if straddle:
                self.next_block = irb.min_(irb.add(self.n_block, 1), n_blocks - 1)
                self.boundary = irb.sub(irb.mul(irb.add(self.n_block, 1), 128), self.n0)

        def prefetch(self):
            """prefetch_scales: the tile's rows of scale_b into L1 (at its first K tile)."""
            for block in [self.n_block] + ([self.next_block] if straddle else []):
                _prefetch_row(scale_b, block, self.k_first, self.k_count, lane)

        def column_scales(self, scales):
            """Per register of the slabs: its scale (scales, as `issue` makes them: per slab r
            and half h one value, or with `straddle` the two blocks' values, chosen by the
            register's chunk of gcd(BN, 128) columns: before `boundary` or from it on)."""
            if not straddle:
                return [scales[2 * r + (j // 2) % 2] for r in range(n) for j in range(acc.size)]
            # the boundary is a multiple of q = gcd(BN, 128) in q .. 128: columns in chunks of
            # q, the first chunk before it, those from 128 on past it, one select per chunk
            # between (a select per 8 columns made ptxas spill at BN 160)
            q = math.gcd(cfg.BN, 128)

            def block_scale(k, c):  # chunk c's scale of slab/half k (scales[2k]: this block)
                if c == 0 or c * q >= 128:
                    return scales[2 * k + (c > 0)]
                return arith.select(irb.lt(c * q, self.boundary), scales[2 * k],
                                    scales[2 * k + 1])
            pick = {(k, c): block_scale(k, c) for k in range(2 * n) for c in range(cfg.BN // q)}
            return [pick[(2 * r + (j // 2) % 2, 8 * (j // 4) // q)] for r in range(n)
                    for j in range(acc.size)]

    def issue(tile, st, t, into=None, p=0, scales=None):
        """K tile t of `tile`: its scales loaded (scale_a x scale_b, one per row of
        tile.rows), its stage waited for, its wgmma issued into a fresh temporary (committed
        as one group), or (temporaries 1) into the registers of `into`, a temporary already
        promoted: its reads then come first, where ptxas would otherwise move them under the
        wgmma, which needs a third set of registers: (temporary structs, scales). With
        temp_parts, column part p of the tile (B's rows from p x BN / parts on); parts after
        the first take the stage (already full) and `scales` as they are."""
        if p == 0:
            if cfg.prefetch_scales and isinstance(t, int) and t == 0:  # the tile's start
                tile.prefetch()
            kb = irb.val(irb.add(tile.k_first, t))
            sbs = [memref.load(scale_b, [irb.val(tile.n_block), kb])]
            if straddle:  # and the next block's
                sbs.append(memref.load(scale_b, [irb.val(tile.next_block), kb]))
            if staged is None:  # global loads, before the wait
                sas = [memref.load(scale_a, [kb, irb.val(row)]) for row in tile.rows]
                ring.consumer_wait(st)
            else:  # the stage's copy of scale_a, once the stage is full
                ring.consumer_wait(st)
                sas = [staged.read(st.stage, row) for row in local_rows]
            # per slab and half: scale_a x scale_b (a flat list; with `straddle` both blocks')
            scales = [arith.mulf(sa, sb) for sa in sas for sb in sbs]
        a_addr = arena.addr32(irb.add(irb.mul(st.stage, stage_bytes),
                                      irb.mul(row_base, cfg.BK * elt)))
        b_addr = arena.addr32(irb.add(irb.mul(st.stage, stage_bytes),
                                      a_bytes + p * part.n * cfg.BK * elt))
        da = B.smem_descriptor(a_addr, leading_bytes=16, stride_bytes=1024)
        db = B.smem_descriptor(b_addr, leading_bytes=16, stride_bytes=1024)
        nvvm.wgmma_fence_aligned()
        tmp = [part.undef() for _ in range(n)] if into is None else list(into)
        for kk in range(k_steps):
            for r in range(n):
                a_off = r * WGMMA_M * cfg.BK * elt + kk * mma_k * elt
                tmp[r] = B.wgmma(part, tmp[r], B.add_bytes(da, a_off),
                                 B.add_bytes(db, kk * mma_k * elt), dtype=mma_dtype,
                                 zero=kk == 0, b_mn_major=False)
        nvvm.wgmma_commit_group_sync_aligned()
        return tmp, scales

    def release(st):
        """The stage of state st released (by the warpgroup's or each warp's leader)."""
        with B.if_(leader):
            ring.consumer_release(st)

    def complete(st):
        """The issued K tile's wgmma done (its temporary readable), its stage released
        (with temp_parts: by finish_parts(), after the last part)."""
        nvvm.wgmma_wait_group_sync_aligned(0)
        if parts == 1:
            release(st)

    def promote(tile, main, tmp, scales, p=parts - 1):
        """main + tmp x scales (tmp complete, of `tile`; column part p of main): read after
        the wgmma issued before it (the fence), its result held before the wait after it. (A
        tile's first promotion as a product instead of an FMA into zeros, its first pair
        peeled, made ptxas spill.)"""
        regs = _fence_operands([part.get(tmp[r], j) for r in range(n)
                                for j in range(part.size)])
        s = tile.column_scales(scales)
        at = [r * acc.size + p * part.size + j for r in range(n) for j in range(part.size)]
        out = list(main)
        sums = _fence_operands([math_d.fma(v, s[i], main[i]) for v, i in zip(regs, at)])
        for i, v in zip(at, sums):
            out[i] = v
        return out

    def finish_parts(tile, main, tmp, scales, st):
        """temp_parts: the K tile's parts after the first (complete in tmp, its stage held),
        each issued into the registers its predecessor leaves once promoted, waited for; the
        stage released after the last: (main, tmp holding the last part, complete)."""
        for p in range(1, parts):
            main = promote(tile, main, tmp, scales, p - 1)
            tmp, _ = issue(tile, st, None, into=tmp, p=p, scales=scales)
            nvvm.wgmma_wait_group_sync_aligned(0)
        release(st)
        return main, tmp

    def run(tile, main, tmp0, sc0, st, t0, count):
        """K tiles t0 .. t0 + count - 1 of `tile`, straight-line, entering with K tile t0 - 1
        complete in tmp0 (not yet promoted, its stage released) and nothing in flight. Each
        K tile goes into the temporary its predecessor does not hold; with cfg.issue_ahead
        it is issued before that predecessor is waited for (wait_group 1), else after it
        (wait_group 0 each). The last is drained. Returns (main, the last K tile's
        temporary (complete), its scales, its state)."""
        if cfg.temporaries == 1:  # wait, promote, then the next K tile into the same
            for j in range(count):  # registers (the other consumer's wgmma run meanwhile)
                main = promote(tile, main, tmp0, sc0)
                st = st.advance()
                tmp0, sc0 = issue(tile, st, irb.add(t0, j), into=tmp0)
                complete(st)
                if parts > 1:
                    main, tmp0 = finish_parts(tile, main, tmp0, sc0, st)
            return main, tmp0, sc0, st
        temps, scs, prev_st = [tmp0, None], [sc0, None], None
        held = 0  # the temporary of the K tile before the one being issued
        for j in range(count):
            if j and not cfg.issue_ahead:
                complete(prev_st)
            st = st.advance()
            x = 1 - held
            temps[x], scs[x] = issue(tile, st, irb.add(t0, j))
            if j and cfg.issue_ahead:  # the previous K tile done (this one may still run)
                nvvm.wgmma_wait_group_sync_aligned(1)
            main = promote(tile, main, temps[held], scs[held])
            if j and cfg.issue_ahead:  # its stage released (after the reads: no branch
                release(prev_st)       # between the wait and them)
            prev_st, held = st, x
        complete(prev_st)
        return main, temps[held], scs[held], st

    def k_loop(tile, st, tmp0, sc0, count=k_count):
        """The tile's `count` K tiles after the first (complete in tmp0, its stage state st):
        (main without the last K tile, the last's temporary (complete), its scales, its
        state)."""
        main = [irb.const_f32(0.0)] * size
        if parts > 1:  # the first K tile's other parts
            main, tmp0 = finish_parts(tile, main, tmp0, sc0, st)
        unroll = 2  # K tiles 2p + 1 and 2p + 2 per trip: each temporary keeps its registers
        bodies = (count - 1) // unroll  # (more per trip made ptxas spill them)
        if bodies:
            loop = scf.ForOp(irb.const_index(0), _opaque_index(bodies), irb.const_index(1),
                             main + tmp0 + sc0 + st.values)
            with ir.InsertionPoint(loop.body):
                p = loop.induction_variable
                c = list(loop.inner_iter_args)
                main, tmp0 = c[:size], c[size:size + n]
                sc0 = c[size + n:size + n + n_sc]
                st = B.PipelineState.carried(c[-2:], cfg.stages)
                main, tmp0, sc0, st = run(tile, main, tmp0, sc0, st,
                                          irb.add(irb.mul(p, unroll), 1), unroll)
                scf.yield_(main + tmp0 + sc0 + st.values)
            res = list(loop.results)
            main, tmp0 = res[:size], res[size:size + n]
            sc0 = res[size + n:size + n + n_sc]
            st = B.PipelineState.carried(res[-2:], cfg.stages)
        rest = count - 1 - bodies * unroll
        if rest:  # the K tiles left (an odd count leaves the last in temporary 1)
            return run(tile, main, tmp0, sc0, st, 1 + bodies * unroll, rest)
        return main, tmp0, sc0, st

    def store(tile, main):
        if stash is not None:  # a K slice's promoted sums: the cluster adds them up
            stash.put(arena, main, tid)
            return
        if epi is not None:  # through shared sub-tiles and TMA stores
            epi.store(lambda r, j: main[r * acc.size + j], tid, tile.m0, tile.n0, row_base,
                      tile.bz, c_mem, alpha, beta, bias, out_t)
            return
        pairs_ = [((r, j), r * WGMMA_M + drow, dcol)
                  for r in range(n) for j, drow, dcol in acc.pairs()]
        regs = _Registers(pairs_, lambda key, i: main[key[0] * acc.size + key[1] + i])
        _epilogue(spec, cfg, regs, tid, tile.m0, tile.n0, row_base, tile.bz, c_mem, alpha, beta,
                  bias, out_t)

    st = B.PipelineState.at(g0, cfg.stages)  # the CTA's ring from its first tile (g0) on
    first = Tile(0)
    if cfg.stagger:  # consumer 1 starts once consumer 0's first group is done
        lead = B.eq(row_base, 0)
        with B.if_(irb.lt(0, row_base)):
            B.named_barrier(STAGGER_BARRIER, 2 * WARPGROUP)
    tmp0, sc0 = issue(first, st, 0)
    complete(st)
    if cfg.stagger:
        with B.if_(lead):
            nvvm.barrier_arrive(irb.const_i32(2 * WARPGROUP),
                                barrier_id=irb.const_i32(STAGGER_BARRIER))
    last = first
    if not (isinstance(count, int) and count == 1):
        # tiles 0 .. count - 2, each with the next tile's first K tile issued under its end
        loop = scf.ForOp(irb.const_index(0), irb.val(irb.sub(count, 1)), irb.const_index(1),
                         tmp0 + sc0 + st.values)
        with ir.InsertionPoint(loop.body):
            i = loop.induction_variable
            c = list(loop.inner_iter_args)
            tile = Tile(i)
            main, tmp_l, sc_l, st = k_loop(tile, B.PipelineState.carried(c[-2:], cfg.stages),
                                           c[:n], c[n:n + n_sc])
            # the last K tile in the temporary the next tile starts in (after the issue,
            # ptxas spills), or the only one: promoted before the next tile's first issue
            early = k_count % 2 or cfg.temporaries == 1
            if early:
                main = promote(tile, main, tmp_l, sc_l)
            st = st.advance()
            nxt_tmp, nxt_sc = issue(Tile(irb.add(i, 1)), st, 0,
                                    into=tmp_l if cfg.temporaries == 1 else None)
            store(tile, main if early else promote(tile, main, tmp_l, sc_l))
            complete(st)
            scf.yield_(nxt_tmp + nxt_sc + st.values)
        res = list(loop.results)
        tmp0, sc0 = res[:n], res[n:n + n_sc]
        st = B.PipelineState.carried(res[-2:], cfg.stages)
        last = Tile(irb.sub(count, 1))
    main, tmp_l, sc_l, st = k_loop(last, st, tmp0, sc0)
    store(last, promote(last, main, tmp_l, sc_l))
    if tail is None:
        return
    # tail_split: the cluster's tile of the last round, this CTA on its half of K (tail.ks),
    # the halves' promoted sums added through distributed shared memory (over the drained ring)
    with B.if_(tail.active):
        unit = Tile(None, origin=tail.origin, k_first=tail.ks.first, k_count=tail.ks.count)
        st = st.advance()
        tmp0, sc0 = issue(unit, st, 0)
        complete(st)
        main, tmp_l, sc_l, st = k_loop(unit, st, tmp0, sc0, count=tail.ks.count)
        halves = _Stash(cfg, slices=2)
        halves.put(arena, promote(unit, main, tmp_l, sc_l), tid)
        B.cluster_sync()
        _cluster_reduce(spec, cfg, halves, arena, tid, unit.m0, unit.n0, row_base, unit.bz,
                        c_mem, alpha, beta, bias, out_t)


class _StagedScales:
    """smem_scales (block scales): per ring stage the K tile's BM scale_a values of the
    tile's rows, at scale_offset + stage x BM x 4 (after the ring; config.scale_bytes): the
    producer's TMA box of scale_a at (kb, m0) (_scale_a_tma) completes on the
    stage's full barrier with A and B (`bytes` more transaction bytes); the consumers read
    their rows with ld.shared once the stage is full, before they release it."""

    def __init__(self, cfg: WgmmaConfig, spec: GemmSpec, arena, desc):
        self.arena, self.desc = arena, desc
        self.offset, self.bytes = scale_offset(cfg, spec), cfg.BM * SCALE_BYTES

    def _at(self, stage, row=0) -> ir.Value:
        return self.arena.ptr(irb.add(irb.add(self.offset, irb.mul(stage, self.bytes)),
                                      irb.mul(row, SCALE_BYTES)))

    def load(self, stage, kb, m0, full) -> None:
        B.tma_load(self.desc, self._at(stage), (m0, kb), full)

    def read(self, stage, row) -> ir.Value:
        return llvm.load(ir.F32Type.get(), self._at(stage, row))


def _prefetch_row(mem, row, first, count: int, lane) -> None:
    """prefetch.global.L1 of mem[row, first .. first + count) (a 2-d f32 memref): lane l
    the line of the element l x 32 on, the lanes past the end that of the last (none past
    the row: a warp covers 1024 elements), so the K loop's loads of them hit L1 instead of
    waiting on L2 each K tile."""
    cols = ir.MemRefType(mem.type).shape[1]
    base = memref.extract_aligned_pointer_as_index(mem)
    start = irb.add(base, irb.mul(irb.add(irb.mul(row, cols), first), SCALE_BYTES))
    offset = irb.min_(irb.mul(lane, 128), (count - 1) * SCALE_BYTES)
    address = arith.index_cast(ir.IntegerType.get_signless(64), irb.val(irb.add(start, offset)))
    nvvm.prefetch(llvm.inttoptr(llvm.PointerType.get(1), address),
                  cache_level=nvvm.PrefetchCacheLevel.L1)


def _opaque_index(value: int) -> ir.Value:
    """The constant `value` as an index LLVM cannot see through (a mov in inline asm): a
    loop bound that keeps the loop a loop. Unrolled (a trip count of 1), the temporaries
    lose the fixed registers the loop's carried values give them, and ptxas copied one in
    flight (spills, every wgmma serialized: C7512)."""
    i32 = ir.IntegerType.get_signless(32)
    return arith.index_cast(irb.index_type(),
                            llvm.inline_asm(i32, [], f"mov.u32 $0, {value};", "=r"))


def _fence_operands(values: list) -> list:
    """values passed through an empty volatile inline asm ("+f" each: CUTLASS's
    warpgroup_fence_operand): computed where they stand, not sunk by LLVM past the wgmma
    issued after them (where the registers they free would still be live)."""
    f32 = ir.F32Type.get()
    return [llvm.inline_asm(f32, [v], "", "=f,0", has_side_effects=True) for v in values]


class _Registers:
    """The accumulator registers a store covers, as pairs of neighbouring columns: `pairs`
    yields (key, row, column) of each pair within the consumer's rows of the tile (the
    thread's own part left out: row + 16 warp + lane / 4, column + 2 (lane mod 4)), static
    ints or index values; value(key, i) is register i (0 or 1) of the pair."""

    def __init__(self, pairs, value):
        self._pairs, self.value = pairs, value

    def pairs(self):
        return iter(self._pairs)

    @classmethod
    def whole(cls, cfg, acc: B.Accumulator, accs) -> _Registers:
        """Every register of the consumer's slabs (B.Accumulator.pairs)."""
        pairs = [((r, j), r * WGMMA_M + drow, dcol)
                 for r in range(cfg.slabs) for j, drow, dcol in acc.pairs()]
        return cls(pairs, lambda key, i: acc.get(accs[key[0]], key[1] + i))

    @classmethod
    def group(cls, acc: B.Accumulator, g, values) -> _Registers:
        """Register group g (an index value: registers 4 g' .. 4 g' + 3 of slab r, g = r x
        groups per slab + g'): two pairs, rows 0 and 8 of the slab at column 8 g';
        `values` the group's four registers."""
        per_slab = acc.size // 4
        row = irb.mul(irb.div(g, per_slab), WGMMA_M)
        col = irb.mul(irb.rem(g, per_slab), 8)
        return cls([(0, row, col), (1, irb.add(row, 8), col)],
                    lambda key, i: values[2 * key + i])


class _Stash:
    """Cluster reduce: a CTA's f32 accumulator in its own shared memory, over the drained
    ring: register group g (4 consecutive registers, slabs in order) of consumer thread t at
    byte 16 (g x consumer threads + t), so that a warp's 16-byte stores and loads are one
    contiguous 512 bytes."""

    BARRIER_ID = 3  # named barrier of the consumer threads (ping-pong's turns use 1 and 2)

    def __init__(self, cfg: WgmmaConfig, slices: int | None = None):
        self.cfg = cfg
        self.slices = cfg.split_k if slices is None else slices  # the cluster's CTAs
        self.threads = cfg.consumers * WARPGROUP
        self.groups = cfg.accumulator_registers // 4

    def offset(self, g: int, tid) -> ir.Value:
        return irb.mul(irb.add(irb.sub(tid, WARPGROUP), g * self.threads), 16)

    def put(self, arena, values: list, tid) -> None:
        """Every consumer's wgmma done reading the ring (named barrier), then the stash of
        `values`, the thread's f32 accumulator registers (slabs in order)."""
        nvvm.barrier(None, barrier_id=irb.const_i32(self.BARRIER_ID),
                     number_of_threads=irb.const_i32(self.threads))
        f32 = ir.F32Type.get()
        for g in range(self.groups):
            v = vector.from_elements(irb.vector_type(4, f32), values[4 * g:4 * g + 4])
            llvm.store(v, arena.ptr(self.offset(g, tid)), alignment=16)

    def peers(self, arena, tid) -> list:
        """This thread's group 0 in each CTA of the cluster (shared::cluster addresses)."""
        local = arena.ptr(self.offset(0, tid))
        return [nvvm.mapa(llvm.PointerType.get(7), local, irb.const_i32(s))
                for s in range(self.slices)]

    def sum(self, peers, g) -> list:
        """Group g (an index value) of this thread's registers summed over the cluster's CTAs
        in slice order."""
        vt = irb.vector_type(4, ir.F32Type.get())
        offset = irb.mul(g, self.threads * 16)
        total = None
        for peer in peers:
            v = llvm.load(vt, B.gep(peer, offset), alignment=16)
            total = v if total is None else arith.addf(total, v)
        return [vector.extract(total, [], [i]) for i in range(4)]


def _cluster_reduce(spec, cfg, stash: _Stash, arena, tid, m0, n0, row_base, bz, c_mem, alpha,
                    beta, bias, out_t, scales=None) -> None:
    """Cluster reduce: this CTA (rank = its K slice) sums its share of the register groups,
    groups rank x G / split_k up to (rank + 1) x G / split_k of G, over the cluster's stashes
    and stores them through the epilogue chain, one group per iteration (a loop rather than
    a branch per rank: LLVM turns those into a jump table that ptxas spills around)."""
    acc = B.Accumulator(cfg.BN)
    rank = arith.index_cast(irb.index_type(), nvvm.read_ptx_sreg_cluster_ctarank(
        ir.IntegerType.get_signless(32)))
    first = irb.div(irb.mul(rank, stash.groups), stash.slices)
    last = irb.div(irb.mul(irb.add(rank, 1), stash.groups), stash.slices)
    peers = stash.peers(arena, tid)
    loop = scf.ForOp(irb.val(first), irb.val(last), irb.const_index(1))
    with ir.InsertionPoint(loop.body):
        g = loop.induction_variable
        regs = _Registers.group(acc, g, stash.sum(peers, g))
        if cfg.swap_ab:
            _store_transposed(spec, cfg, regs, tid, m0, n0, row_base, bz, None, c_mem, alpha,
                              beta, bias, out_t, scales)
        else:
            _epilogue(spec, cfg, regs, tid, m0, n0, row_base, bz, c_mem, alpha, beta, bias,
                      out_t, scales)
        scf.yield_([])


def _epilogue(spec, cfg, regs: _Registers, tid, m0, n0, row_base, bz, c_mem, alpha, beta,
              bias, out_t, scales=None, m_bound=None) -> None:
    """Registers -> C through the epilogue chain: each pair of neighbouring columns as a
    2-vector (one column at a time where N is odd), stores guarded by the bounds; `scales`
    (rowwise: scale_a over M, scale_b over N) multiply first."""
    lane = irb.rem(tid, 32)
    warp = irb.rem(irb.div(tid, 32), 4)
    row0 = irb.add(irb.add(m0, row_base), irb.add(irb.mul(warp, 16), irb.div(lane, 4)))
    col0 = irb.add(n0, irb.mul(irb.rem(lane, 4), 2))
    steps = spec.epilogue.steps
    f32 = ir.F32Type.get()
    width = 2 if spec.N % 2 == 0 else 1
    out_bytes = DTYPE_BYTES[spec.out_dtype]
    rows = spec.M if m_bound is None else m_bound
    # rowwise scales: each row's and column pair's loaded once, before the stores
    ops = StoreOperands(row0, col0, rows, spec.N) if StoreOperands.serves(scales) else None
    for key, drow, dcol in regs.pairs():
        row = irb.add(row0, drow)
        for half in range(2 // width):
            col = irb.add(irb.add(col0, dcol), half)
            guard = arith.andi(irb.lt(row, rows), irb.lt(col, spec.N))
            with B.if_(guard):
                idx = [irb.val(bz), irb.val(row), irb.val(col)]
                if width == 2:
                    x = vector.from_elements(irb.vector_type(2, f32),
                                             [regs.value(key, 0), regs.value(key, 1)])
                    vt = irb.vector_type(2, out_t)
                    load_c = lambda: vector.load(vt, c_mem, idx, alignment=2 * out_bytes)
                else:
                    x = regs.value(key, half)
                    load_c = lambda: memref.load(c_mem, idx)
                operands = scale_args(ops, scales, drow, irb.add(dcol, half),
                                      2 if width == 2 else None)
                y = emit(x, steps, alpha=alpha, beta=beta, load_c=load_c, bias=bias,
                         row=row, col=col, **operands)
                y = irb.truncf(y, out_t)
                if width == 2:
                    vector.store(y, c_mem, idx, alignment=2 * out_bytes)
                else:
                    memref.store(y, c_mem, idx)


def _fragment_origin(cfg, tid, m0, n0, row_base):
    """(row, column) of a consumer thread's first accumulator register in C: the rows of
    its warp's 16 (lane / 4), the column pair of its lane (2 (lane mod 4))."""
    lane = irb.rem(tid, 32)
    warp = irb.rem(irb.div(tid, 32), 4)
    row0 = irb.add(irb.add(m0, row_base), irb.add(irb.mul(warp, 16), irb.div(lane, 4)))
    return row0, irb.add(n0, irb.mul(irb.rem(lane, 4), 2))


def _store_partials(spec, cfg, regs: _Registers, tid, m0, n0, row_base, z, w_mem) -> None:
    """split_k: the raw f32 accumulator into the workspace W[z] (z = batch element x
    split_k + slice), pairs of neighbouring columns as 2-vectors (one column at a time where
    N is odd), guarded by the bounds; deepgen-split-k's reduce applies the epilogue."""
    row0, col0 = _fragment_origin(cfg, tid, m0, n0, row_base)
    width = 2 if spec.N % 2 == 0 else 1
    f32 = ir.F32Type.get()
    for key, drow, dcol in regs.pairs():
        row = irb.add(row0, drow)
        for half in range(2 // width):
            col = irb.add(irb.add(col0, dcol), half)
            with B.if_(arith.andi(irb.lt(row, spec.M), irb.lt(col, spec.N))):
                idx = [irb.val(z), irb.val(row), irb.val(col)]
                if width == 2:
                    x = vector.from_elements(irb.vector_type(2, f32),
                                             [regs.value(key, 0), regs.value(key, 1)])
                    vector.store(x, w_mem, idx, alignment=8)
                else:
                    memref.store(regs.value(key, half), w_mem, idx)


def _store_transposed(spec, cfg, regs: _Registers, tid, n0, m0, row_base, bz, ks, out, alpha,
                      beta, bias, out_t, scales=None) -> None:
    """swap_ab: the accumulator holds a tile of C^T (rows over N from n0, columns over M from
    m0); each register goes to C[m, n] (neighbouring registers lie in neighbouring rows of C,
    so one element per store), guarded by the bounds: the raw f32 partial into W[z] with
    split_k, else through the epilogue chain with C's own (row, column), so a bias per column
    of C is indexed by n, the accumulator's row."""
    n_first, m_first = _fragment_origin(cfg, tid, n0, m0, row_base)
    ops = (StoreOperands(m_first, n_first, spec.M, spec.N)
           if StoreOperands.serves(scales) and not cfg.workspace_reduce else None)
    for key, drow, dcol in regs.pairs():
        n = irb.add(n_first, drow)
        for half in range(2):
            m = irb.add(irb.add(m_first, dcol), half)
            with B.if_(arith.andi(irb.lt(m, spec.M), irb.lt(n, spec.N))):
                x = regs.value(key, half)
                if cfg.workspace_reduce:
                    memref.store(x, out, [irb.val(ks.z), irb.val(m), irb.val(n)])
                    continue
                idx = [irb.val(bz), irb.val(m), irb.val(n)]
                operands = scale_args(ops, scales, irb.add(dcol, half), drow, None)
                y = emit(x, spec.epilogue.steps, alpha=alpha, beta=beta,
                         load_c=lambda idx=idx: memref.load(out, idx), bias=bias,
                         row=m, col=n, **operands)
                memref.store(irb.truncf(y, out_t), out, idx)


def finish_lowered(module, cfg: WgmmaConfig) -> None:
    """After the NVVM lowering, on the kernel's llvm.func: the TMA descriptors become
    by-value 128-byte `__grid_constant__` parameters (a gpu.func cannot carry
    nvvm.grid_constant and the lowering drops llvm.byval), and the kernel gets a register cap
    at entry (maxntid with minctasm ctas_per_sm, __launch_bounds__(threads, ctas_per_sm)) so
    that setmaxnreg applies."""
    f = B.lowered_kernel(module, ENTRY)
    extra = (2,) if cfg.epilogue == "tma" else ()
    if cfg.smem_scales:  # scale_a's descriptor: the last parameter (_scale_a_tma)
        extra += (len(f.regions[0].blocks[0].arguments) - 1,)
    B.mark_grid_constants(f, TMA_PARAMS + extra)
    f.attributes["nvvm.minctasm"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(32),
                                                       cfg.ctas_per_sm)
