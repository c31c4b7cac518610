"""The wgmma kernel's TMA epilogue (WgmmaConfig.epilogue "tma"): a consumer warpgroup's
accumulator goes out through shared memory rather than by per-thread stores.

Per consumer warpgroup two sub-tile buffers of 64 x epilogue_n output elements (one wgmma
slab's rows; rows of epilogue_n x 2 bytes = the TMA box's inner dimension and its swizzle
span, 32, 64 or 128 bytes), after the ring (config.ring_bytes). For each sub-tile of the
warpgroup's rows of the tile, slab by slab, left to right, in buffer i mod 2:

    every thread: the epilogue chain on its pairs of registers (alpha, beta x C, bias,
        activation: C, bias and scales read at indices clamped into the matrix, so a
        partial tile reads nothing outside it; its clipped elements are never stored),
        converted to 16 bits, packed, stmatrix.x4 per 16 columns (a warp's 16 rows) into
        the swizzled buffer; fence.proxy.async.shared::cta
    the warpgroup's leader: cp.async.bulk.wait_group.read 0 (the previous sub-tile's store
        has read the other buffer, which the next sub-tile fills)
    named barrier of the warpgroup's 128 threads (config: barrier EPILOGUE_BARRIER + c)
    the leader: the TMA store of the buffer at (n0 + columns, m0 + rows, batch), committed;
        TMA clips the rows and columns outside C

so one sub-tile's store runs while the next is computed and written. A tile with an odd
number of sub-tiles starts with the wait and the barrier (its first buffer is the one the
previous tile's last store may still read). Before the CTA exits the leader waits for its
stores' reads (drain). The swizzle: 16-byte chunk c of row r lies at chunk
c xor ((r x span / 128) mod (span / 16)), TMA's 32/64/128-byte swizzle (buffers 1024-byte
aligned), so the 8 rows of each stmatrix matrix fall in distinct banks.
"""
from __future__ import annotations

import copy

from mlir import ir
from mlir.dialects import vector

from deepgen.spec import DTYPE_BYTES, GemmSpec

from ... import irb
from ...epilogue import StoreOperands, emit, scale_args
from . import builders as B
from .config import EPILOGUE_BUFFERS, WARPGROUP, WGMMA_M, WgmmaConfig, ring_bytes

EPILOGUE_BARRIER = 4  # + consumer index (turns use 1 and 2, the cluster stash 3)


class TmaEpilogue:
    """One kernel's TMA epilogue: its buffers in `arena` and C's store descriptor `desc`."""

    def __init__(self, cfg: WgmmaConfig, spec: GemmSpec, arena: B.SharedArena, desc):
        self.cfg, self.spec, self.arena, self.desc = cfg, spec, arena, desc
        self.cols = cfg.epilogue_n
        self.span = self.cols * DTYPE_BYTES[spec.out_dtype]  # bytes per buffer row
        self.buffer_bytes = WGMMA_M * self.span
        self.offset = ring_bytes(cfg, spec)
        self.per_row = cfg.BN // self.cols  # sub-tiles across the tile
        self.per_tile = cfg.slabs * self.per_row  # sub-tiles of a warpgroup's rows

    def narrowed(self, columns: int) -> "TmaEpilogue":
        """The same buffers and descriptor for tiles of `columns` < BN (narrow_column's
        strip: BN / 2 wide)."""
        out = copy.copy(self)
        out.per_row = columns // self.cols
        out.per_tile = self.cfg.slabs * out.per_row
        return out

    def _swizzled(self, row, chunk) -> ir.Value:
        """The byte offset of 16-byte chunk `chunk` of row `row` in a buffer."""
        mask = self.span // 16 - 1
        line = irb.mul(row, self.span)
        phase = irb.rem(irb.div(line, 128), mask + 1)
        return irb.add(line, irb.mul(irb.xor(chunk, phase), 16))

    def store(self, value, tid, m0, n0, row_base, bz, c_mem, alpha, beta, bias, out_t,
              scales=None, m_bound=None) -> None:
        """The warpgroup's rows of the tile (from row_base) through the chain into C;
        value(r, j): accumulator register j of slab r as f32."""
        cfg, spec = self.cfg, self.spec
        lane = irb.rem(tid, 32)
        warp = irb.rem(irb.div(tid, 32), 4)
        consumer = irb.sub(B.warp_uniform(irb.div(tid, WARPGROUP)), 1)
        barrier = irb.add(consumer, EPILOGUE_BARRIER)
        leader = B.eq(irb.rem(tid, WARPGROUP), 0)
        # the thread's registers: rows row0 (+ 8), columns col0 (+ 1) of each 8-column group
        row0 = irb.add(irb.add(m0, row_base), irb.add(irb.mul(warp, 16), irb.div(lane, 4)))
        col0 = irb.add(n0, irb.mul(irb.rem(lane, 4), 2))
        rows = spec.M if m_bound is None else m_bound
        last_row = irb.sub(rows, 1)
        # the row and 16-byte half a lane addresses in each stmatrix: matrix lane / 8 is
        # rows 8 ((lane / 8) mod 2).. of the warp's 16, columns 8 (lane / 16)..
        st_row = irb.add(irb.mul(warp, 16),
                         irb.add(irb.rem(lane, 8), irb.mul(irb.rem(irb.div(lane, 8), 2), 8)))
        st_half = irb.div(lane, 16)
        buffers = irb.add(self.offset,
                          irb.mul(consumer, EPILOGUE_BUFFERS * self.buffer_bytes))
        steps = spec.epilogue.steps
        # rowwise scales: each row's and column pair's loaded once, before the sub-tiles
        ops = StoreOperands(row0, col0, rows, spec.N) if StoreOperands.serves(scales) else None
        f32 = ir.F32Type.get()
        vt = irb.vector_type(2, out_t)
        out_bytes = DTYPE_BYTES[spec.out_dtype]
        if self.per_tile % 2:  # the first buffer may still be read by the last tile's store
            with B.if_(leader):
                B.bulk_wait_read(0)
            B.named_barrier(barrier, WARPGROUP)
        for r in range(cfg.slabs):
            for s in range(self.per_row):
                i = r * self.per_row + s
                base = irb.add(buffers, (i % EPILOGUE_BUFFERS) * self.buffer_bytes)
                for q in range(self.cols // 16):  # 16 columns: registers 8 g .. 8 g + 7
                    g = s * self.cols // 16 + q
                    packed = []
                    for m in range(4):  # (rows 0-7 | 8-15) x (columns 0-7 | 8-15)
                        j = 8 * g + 2 * m
                        row = irb.add(row0, r * WGMMA_M + 8 * (m % 2))
                        col = irb.add(col0, 16 * g + 8 * (m // 2))
                        # in-bounds indices for the reads (C's N is a multiple of 8)
                        idx = [irb.val(bz), irb.val(irb.min_(row, last_row)),
                               irb.val(irb.min_(col, spec.N - 2))]
                        x = vector.from_elements(irb.vector_type(2, f32),
                                                 [value(r, j), value(r, j + 1)])
                        operands = scale_args(ops, scales, r * WGMMA_M + 8 * (m % 2),
                                              16 * g + 8 * (m // 2), 2)
                        y = emit(x, steps, alpha=alpha, beta=beta, bias=bias,
                                 load_c=lambda idx=idx: vector.load(vt, c_mem, idx,
                                                                    alignment=2 * out_bytes),
                                 row=idx[1], col=idx[2], **operands)
                        packed.append(B.pack_i32(irb.truncf(y, out_t)))
                    chunk = irb.add(st_half, 2 * q)
                    B.stmatrix_x4(self.arena.ptr(irb.add(base, self._swizzled(st_row, chunk))),
                                  packed)
                B.fence_async_shared()
                with B.if_(leader):
                    B.bulk_wait_read(0)  # the other buffer's store has read it
                B.named_barrier(barrier, WARPGROUP)
                with B.if_(leader):
                    coords = (irb.add(n0, s * self.cols),
                              irb.add(irb.add(m0, row_base), r * WGMMA_M), bz)
                    B.tma_store(self.desc, self.arena.ptr(base), coords)
                    B.bulk_commit()

    def drain(self, tid) -> None:
        """Before the CTA exits: the leader's stores have read their buffers."""
        with B.if_(B.eq(irb.rem(tid, WARPGROUP), 0)):
            B.bulk_wait_read(0)


def box(cfg: WgmmaConfig) -> tuple[int, int, int]:
    """C's TMA store box (batch, rows, columns): one sub-tile."""
    return 1, WGMMA_M, cfg.epilogue_n


def swizzle(cfg: WgmmaConfig, spec: GemmSpec) -> int:
    """The store descriptor's swizzle: the sub-tile's row bytes (32, 64 or 128)."""
    return cfg.epilogue_n * DTYPE_BYTES[spec.out_dtype]
