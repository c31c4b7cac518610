"""A small builder layer for Hopper kernels on upstream MLIR's NVVM ops, so that the kernel
reads like the algorithm (kernel.py). Every helper emits at the current insertion point.

    SharedArena      the dynamic shared memory (one 1024-byte-aligned extern array): byte
                     offsets -> pointers (address space 3) and 32-bit shared addresses
    PipelineState    CuTe's (stage, phase) of a ring: at an iteration (once per tile), advanced
                     without a division (per K tile), carried through loops
    MbarrierRing     full/empty mbarrier pairs per stage: init, producer_acquire /
                     producer_commit (arrive.expect_tx), consumer_wait / consumer_release
    WarpgroupTurns   warpgroups taking turns in a fixed order on named barriers (ping-pong's
                     tensor cores)
    tma_load         cp.async.bulk.tensor global -> shared, completing on an mbarrier
    tma_store        cp.async.bulk.tensor shared -> global (bulk_commit, bulk_wait_read),
                     stmatrix_x4, fence_async_shared, named_barrier: the TMA epilogue's steps
    smem_descriptor  a wgmma matrix descriptor (128-byte swizzle, K- or MN-major)
    Accumulator      the accumulator of one m64nNk16 (k8: tf32, k32: fp8, int8) wgmma (an
                     !llvm.struct of N/2 f32, or s32 for int8, per thread), its registers
                     read as f32, and where each of them lies in the 64 x N tile
    wgmma            nvvm.wgmma.mma_async (f16, bf16, tf32, e4m3, e5m2, int8 as s8),
                     zero-initialised (scale-d 0) when asked
    if_, elect_one, warpgroup_role   control flow as context managers
"""
from __future__ import annotations

import contextlib

from mlir import ir
from mlir.dialects import arith, llvm, nvvm, scf

from ... import irb

DESCRIPTOR_BYTES = 128
# wgmma's K by input type (32 bytes each)
WGMMA_K = {"f16": 16, "bf16": 16, "tf32": 8, "e4m3": 32, "e5m2": 32, "int8": 32}
WGMMA_TYPES = {"int8": "s8"}  # DeepGen's name -> #nvvm.wgmma_type where they differ
SW128_LAYOUT = 1  # wgmma descriptor bits 62-63: 1 = 128-byte swizzle


def lowered_kernel(module, entry: str):
    """The llvm.func `entry` of a lowered module (exactly one)."""
    found = [f for f in irb.walk_ops(module, "llvm.func")
             if ir.StringAttr(f.attributes["sym_name"]).value == entry]
    if len(found) != 1:
        raise ValueError(f"{entry}: {len(found)} llvm.func of that name after lowering")
    return found[0]


def mark_grid_constants(f, indices) -> None:
    """Parameters `indices` of the lowered kernel `f` (an llvm.func) become by-value 128-byte
    `__grid_constant__` TMA descriptors (PTX `.param .align 64 .b8 entry_param_N[128]`): a
    gpu.func cannot carry nvvm.grid_constant and the NVVM lowering drops llvm.byval, so this
    runs after it."""
    n = len(f.regions[0].blocks[0].arguments)
    old = list(ir.ArrayAttr(f.attributes["arg_attrs"])) if "arg_attrs" in f.attributes else []
    attrs = [ir.DictAttr(a) for a in old] + [ir.DictAttr.get({})] * (n - len(old))
    for index in indices:
        entries = {a.name: a.attr for a in attrs[index]}
        entries.update({
            "llvm.byval": ir.TypeAttr.get(ir.Type.parse(f"!llvm.array<{DESCRIPTOR_BYTES} x i8>")),
            "llvm.align": irb.int_attr(64),
            "nvvm.grid_constant": ir.UnitAttr.get(),
        })
        attrs[index] = ir.DictAttr.get(entries)
    f.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)


def i32_t():
    return ir.IntegerType.get_signless(32)


def i64_t():
    return ir.IntegerType.get_signless(64)


def to_i32(x) -> ir.Value:
    x = irb.val(x)
    if x.type == i32_t():
        return x
    return arith.index_cast(i32_t(), x)


def to_i64(x) -> ir.Value:
    x = irb.val(x)
    return arith.index_cast(i64_t(), x)


def const_i64(v: int) -> ir.Value:
    return arith.constant(i64_t(), v)


def gep(base, offset) -> ir.Value:
    """`base` + `offset` bytes (an int or an index/i32 Value)."""
    dynamic = -2**31  # GEPOp's marker of a dynamic index
    if isinstance(offset, int):
        if offset == 0:
            return base
        return llvm.getelementptr(base.type, base, [], [offset], ir.IntegerType.get_signless(8), 0)
    return llvm.getelementptr(base.type, base, [to_i32(offset)], [dynamic],
                              ir.IntegerType.get_signless(8), 0)


@contextlib.contextmanager
def if_(cond):
    """`with if_(cond):` emits an scf.if without results; its body goes inside."""
    op = scf.IfOp(cond)
    with ir.InsertionPoint(op.then_block):
        yield op
        scf.yield_([])


@contextlib.contextmanager
def if_else(cond):
    """`with if_else(cond) as (then, other):` then `with then:` / `with other:`."""
    op = scf.IfOp(cond, [], has_else=True)

    @contextlib.contextmanager
    def branch(block):
        with ir.InsertionPoint(block):
            yield
            scf.yield_([])

    yield branch(op.then_block), branch(op.else_block)


def eq(a, b) -> ir.Value:
    return arith.cmpi(arith.CmpIPredicate.eq, irb.val(a), irb.val(b))


def warp_uniform(x) -> ir.Value:
    """`x` (index) as lane 0 of the warp has it (shfl.sync.idx): equal in all lanes, and
    ptxas knows it, so what is derived from it stays in uniform registers and branches on it
    are uniform (CUTLASS's canonical_warp_group_idx). A warpgroup index from the thread id
    otherwise puts the ring state and the wgmma descriptors in per-thread registers, moved to
    uniform ones (R2UR) before every wgmma."""
    i32 = i32_t()
    v = nvvm.shfl_sync(i32, irb.const_i32(-1), to_i32(x), irb.const_i32(0), irb.const_i32(31),
                       nvvm.ShflKind.idx)
    return arith.index_cast(irb.index_type(), v)


def elect_one() -> ir.Value:
    """elect.sync: true in one lane of the (converged) warp."""
    return nvvm.elect_sync(ir.IntegerType.get_signless(1))


def setmaxnreg(count: int, increase: bool) -> None:
    action = nvvm.SetMaxRegisterAction.increase if increase else nvvm.SetMaxRegisterAction.decrease
    nvvm.setmaxregister(count, action)


# -- shared memory --------------------------------------------------------------------------

class SharedArena:
    """The kernel's dynamic shared memory: `extern .shared .align 1024 .b8 name[]`."""

    def __init__(self, gm, name: str = "deepgen_smem", align: int = 1024):
        self.name, self.align = name, align
        with ir.InsertionPoint(gm.bodyRegion.blocks[0]):
            llvm.GlobalOp(ir.Type.parse("!llvm.array<0 x i8>"), name,
                          ir.Attribute.parse("#llvm.linkage<external>"), alignment=align,
                          addr_space=3)
        self._base = None

    def base(self) -> ir.Value:
        """The arena's pointer (emit once per function, at its entry)."""
        if self._base is None:
            self._base = llvm.AddressOfOp(llvm.PointerType.get(3), self.name).result
            self._addr = llvm.ptrtoint(i32_t(), self._base)
        return self._base

    def ptr(self, offset) -> ir.Value:
        return gep(self.base(), offset)

    def addr32(self, offset=0) -> ir.Value:
        """The 32-bit shared-window address of byte `offset`."""
        self.base()
        return self._addr if offset == 0 else arith.addi(self._addr, to_i32(offset))


# -- the mbarrier ring ------------------------------------------------------------------------

class PipelineState:
    """CuTe's PipelineState: the (stage, phase) of one iteration of a ring of `stages` (index
    values or ints). `at(i)` computes it from an iteration count, stage = i mod stages, phase =
    (i div stages) mod 2: a division (in 32 bits), so once per tile, not per K tile, where a
    ring of 6 stages made it a 64-bit multiply-high chain in every iteration. `advance()` is
    the next iteration's state without one: stage + 1, wrapping to 0 with the phase flipped.
    `values` / `carried` move a state through a loop's iter_args."""

    def __init__(self, stage, phase, stages: int):
        self.stage, self.phase, self.stages = stage, phase, stages

    @classmethod
    def at(cls, i, stages: int) -> "PipelineState":
        if isinstance(i, int):
            return cls(i % stages, (i // stages) % 2, stages)
        i32 = to_i32(i)
        n = irb.const_i32(stages)
        stage = arith.remui(i32, n)
        phase = arith.andi(arith.divui(i32, n), irb.const_i32(1))
        return cls(arith.index_cast(irb.index_type(), stage),
                   arith.index_cast(irb.index_type(), phase), stages)

    def advance(self) -> "PipelineState":
        if isinstance(self.stage, int) and isinstance(self.phase, int):
            wrap = self.stage + 1 == self.stages
            return PipelineState(0 if wrap else self.stage + 1, self.phase ^ wrap, self.stages)
        nxt = irb.add(self.stage, 1)
        wrap = eq(nxt, self.stages)
        return PipelineState(arith.select(wrap, irb.const_index(0), irb.val(nxt)),
                             arith.select(wrap, irb.val(irb.xor(self.phase, 1)),
                                          irb.val(self.phase)), self.stages)

    @property
    def values(self) -> list:
        return [irb.val(self.stage), irb.val(self.phase)]

    @classmethod
    def carried(cls, values, stages: int) -> "PipelineState":
        """The state held in two loop-carried values (`values` of a state)."""
        stage, phase = values
        return cls(stage, phase, stages)


class MbarrierRing:
    """Per stage a `full` barrier (the producer's one arrival with the TMA bytes) and an
    `empty` barrier (one arrival per consumer warpgroup once its wgmma read the stage).
    `consumers`: the warpgroups that read each stage (all of them when they share a tile; 1
    in ping-pong, where each stage belongs to one warpgroup's tile)."""

    def __init__(self, arena: SharedArena, offset: int, stages: int, consumers: int,
                 cluster: int = 1):
        self.arena, self.offset, self.stages, self.consumers = arena, offset, stages, consumers
        # with a cluster whose CTAs multicast into each other, a stage is free once the
        # consumers of every CTA released it: each releases the stage in all of them
        self.cluster = cluster

    bytes_per_stage = 16

    def full(self, stage) -> ir.Value:
        return self.arena.ptr(irb.add(self.offset, irb.mul(stage, 8)))

    def empty(self, stage) -> ir.Value:
        return self.arena.ptr(irb.add(self.offset + 8 * self.stages, irb.mul(stage, 8)))

    def init(self) -> None:
        """Initialise every barrier (one thread), then make the init visible to the async
        proxy (TMA) and the cluster."""
        for s in range(self.stages):
            nvvm.mbarrier_init(self.full(s), irb.const_i32(1))
            nvvm.mbarrier_init(self.empty(s), irb.const_i32(self.consumers * self.cluster))
        nvvm.fence_mbarrier_init()
        nvvm.fence_proxy(nvvm.ProxyKind.async_shared, space=nvvm.SharedSpace.shared_cta)

    @staticmethod
    def _wait(bar, parity) -> None:
        nvvm.mbarrier_try_wait_parity(bar, to_i32(parity), irb.const_i32(10_000_000))

    def producer_acquire(self, st: PipelineState) -> None:
        """Wait until the consumers released the stage (a fresh ring passes at once: the
        producer waits on the opposite parity)."""
        self._wait(self.empty(st.stage), irb.xor(st.phase, 1))

    def producer_commit(self, st: PipelineState, tx_bytes: int) -> None:
        """Arrive on `full` expecting `tx_bytes` from the TMA loads issued next."""
        nvvm.mbarrier_arrive_expect_tx(None, self.full(st.stage), irb.const_i32(tx_bytes))

    def consumer_wait(self, st: PipelineState) -> None:
        self._wait(self.full(st.stage), st.phase)

    def consumer_release(self, st: PipelineState) -> None:
        if self.cluster == 1:
            nvvm.mbarrier_arrive(i64_t(), self.empty(st.stage))
            return
        for rank in range(self.cluster):  # mapa: the same barrier in CTA `rank`
            remote = nvvm.mapa(llvm.PointerType.get(7), self.empty(st.stage),
                               irb.const_i32(rank))
            nvvm.mbarrier_arrive(None, remote)


class WarpgroupTurns:
    """`n` warpgroups taking turns in a fixed cyclic order (CUTLASS's OrderedSequenceBarrier,
    here on hardware named barriers, which need no shared memory and no phase): the turn of
    warpgroup c is named barrier `first_id + c` over both sides' 2 x 128 threads; c waits for
    it (bar.sync), its predecessor passes it on (bar.arrive) when done. A named barrier keeps
    the arrivals of an unmatched pass, so every pass must be matched by exactly one wait: the
    caller passes only to a warpgroup that has a next turn."""

    def __init__(self, first_id: int = 1, n: int = 2, threads: int = 128):
        self.first_id, self.n, self.threads = first_id, n, threads

    def _id(self, c) -> ir.Value:
        return to_i32(irb.add(c, self.first_id))

    def wait(self, c) -> None:
        """Warpgroup `c` (an index or int) blocks until its predecessor passed it the turn."""
        nvvm.barrier(None, barrier_id=self._id(c), number_of_threads=irb.const_i32(2 * self.threads))

    def pass_on(self, c) -> None:
        """Warpgroup `c` hands the turn to the next one, (c + 1) mod n, without waiting."""
        nxt = irb.rem(irb.add(c, 1), self.n)
        nvvm.barrier_arrive(irb.const_i32(2 * self.threads), barrier_id=self._id(nxt))


def tma_load(desc, dst: ir.Value, coords, bar: ir.Value, multicast: int | None = None) -> None:
    """cp.async.bulk.tensor of the box at `coords` (innermost first) into shared `dst`; with
    `multicast` (a mask of cluster CTA ranks), into `dst` and `bar`'s offsets in each."""
    dst = llvm.AddrSpaceCastOp(llvm.PointerType.get(7), dst).result  # shared::cluster
    mask = None if multicast is None else arith.constant(ir.IntegerType.get_signless(16),
                                                         multicast)
    nvvm.cp_async_bulk_tensor_shared_cluster_global(dst, desc, [to_i32(c) for c in coords],
                                                    bar, [], multicast_mask=mask)


def tma_store(desc, src: ir.Value, coords) -> None:
    """cp.async.bulk.tensor of shared `src` (shared::cta) into the box at `coords` (innermost
    first) of `desc`'s tensor; elements outside the tensor are not written. Completes
    asynchronously: commit_group, then wait_group_read before `src` is written again."""
    nvvm.cp_async_bulk_tensor_global_shared_cta(desc, src, [to_i32(c) for c in coords])


def bulk_commit() -> None:
    """cp.async.bulk.commit_group: the thread's bulk copies issued since the last one."""
    nvvm.cp_async_bulk_commit_group()


def bulk_wait_read(pending: int) -> None:
    """cp.async.bulk.wait_group.read: at most `pending` of the thread's committed groups
    still read their shared source (the rest may still be writing global memory)."""
    nvvm.cp_async_bulk_wait_group(pending, read=ir.UnitAttr.get())


def fence_async_shared() -> None:
    """fence.proxy.async.shared::cta: this thread's shared-memory writes visible to the async
    proxy (a TMA store issued after a barrier)."""
    nvvm.fence_proxy(nvvm.ProxyKind.async_shared, space=nvvm.SharedSpace.shared_cta)


def named_barrier(barrier_id, threads: int) -> None:
    """bar.sync on named barrier `barrier_id` (an int or index value) of `threads` threads."""
    nvvm.barrier(None, barrier_id=to_i32(barrier_id), number_of_threads=irb.const_i32(threads))


def stmatrix_x4(ptr: ir.Value, regs) -> None:
    """stmatrix.sync.aligned.m8n8.x4.b16: four 8 x 8 matrices of 16-bit elements from the
    warp, register i of each lane (two neighbouring columns of row lane / 4, columns
    2 (lane mod 4)) into matrix i, whose 8 rows (16 bytes each) lanes 8 i .. 8 i + 7 address."""
    nvvm.stmatrix(ptr, list(regs), nvvm.MMALayout.row,
                  ir.Attribute.parse("#nvvm.ld_st_matrix_shape<m = 8, n = 8>"),
                  nvvm.LdStMatrixEltType.B16)


def pack_i32(v: ir.Value) -> ir.Value:
    """A vector<2 x 16-bit> as one i32 register (the first element in the low half)."""
    return llvm.bitcast(i32_t(), v)


def cluster_sync() -> None:
    """barrier.cluster.arrive + wait (every thread of every CTA of the cluster)."""
    nvvm.cluster_arrive(aligned=True)
    nvvm.cluster_wait(aligned=True)


# -- wgmma ------------------------------------------------------------------------------------

def smem_descriptor(addr32: ir.Value, *, leading_bytes: int, stride_bytes: int) -> ir.Value:
    """The 64-bit wgmma matrix descriptor of a 128-byte-swizzled tile at shared address
    `addr32` (1024-byte-aligned atoms): start address >> 4 in bits 0-13, leading-dimension
    byte offset >> 4 in bits 16-29, stride-dimension byte offset >> 4 in bits 32-45, the
    swizzle mode in bits 62-63."""
    hi = (SW128_LAYOUT << 62) | ((stride_bytes >> 4) << 32) | ((leading_bytes >> 4) << 16)
    lo = arith.andi(arith.shrui(arith.extui(i64_t(), addr32), const_i64(4)),
                    const_i64(0x3FFF))
    return arith.ori(lo, const_i64(hi))


def add_bytes(desc: ir.Value, nbytes: int) -> ir.Value:
    """The descriptor of the tile `nbytes` further on (the start address field; it must not
    carry out of its 14 bits, which holds for shared addresses below 256 KiB)."""
    return desc if nbytes == 0 else arith.addi(desc, const_i64(nbytes >> 4))


class Accumulator:
    """The accumulator of an m64nNkK wgmma: N/2 registers per thread of the warpgroup, f32, or
    s32 (dtype "s32": int8 inputs). Register j of lane l in warp w holds row
    16 w + l / 4 + 8 ((j / 2) mod 2) and column 8 (j / 4) + 2 (l mod 4) + (j mod 2)."""

    def __init__(self, n: int, dtype: str = "f32"):
        if dtype not in ("f32", "s32"):
            raise ValueError(f"Accumulator: dtype f32 or s32, got {dtype!r}")
        self.n, self.dtype = n, dtype
        self.size = n // 2
        elem = "i32" if dtype == "s32" else "f32"
        self.type = ir.Type.parse("!llvm.struct<(" + ", ".join([elem] * self.size) + ")>")

    def undef(self) -> ir.Value:
        return llvm.UndefOp(self.type).result

    def get(self, acc: ir.Value, j: int) -> ir.Value:
        """Register j as f32: an s32 register converted (cvt.rn.f32.s32, exact while its
        magnitude is below 2^24)."""
        if self.dtype == "s32":
            return arith.sitofp(ir.F32Type.get(), llvm.extractvalue(i32_t(), acc, [j]))
        return llvm.extractvalue(ir.F32Type.get(), acc, [j])

    def pairs(self):
        """(register j, row within the warp's 16, column) of each pair of neighbouring
        columns j, j + 1, the lane's part left out: row + l / 4, column + 2 (l mod 4)."""
        for j in range(0, self.size, 2):
            yield j, 8 * ((j // 2) % 2), 8 * (j // 4)


def wgmma(acc: Accumulator, value: ir.Value, desc_a, desc_b, *, dtype: str, zero: bool,
          b_mn_major: bool, a_mn_major: bool = False) -> ir.Value:
    """One wgmma.mma_async (A and B from shared memory, f32 accumulator): m64nNk16 for f16
    and bf16, m64nNk8 for dtype "tf32" (f32 data in shared memory, read as tf32), m64nNk32
    for fp8 ("e4m3", "e5m2"; K-major operands only, as tf32) and for "int8" (.s32.s8.s8 into
    an s32 accumulator, Accumulator(n, "s32"); K-major only).
    zero: scale-d = 0, the product overwrites the accumulator (the first MMA of a tile).
    a_mn_major / b_mn_major: the operand's transpose bit (16-bit types only: tf32 has none),
    its tile stored with M (N) contiguous rather than K."""
    a = ir.Attribute.parse
    k = WGMMA_K[dtype]
    t = WGMMA_TYPES.get(dtype, dtype)
    return nvvm.wgmma_mma_async(
        acc.type, value, desc_a, desc_b,
        a(f"#nvvm.shape<m = 64, n = {acc.n}, k = {k}>"),
        a(f"#nvvm.wgmma_type<{t}>"), a(f"#nvvm.wgmma_type<{t}>"),
        a(f"#nvvm.wgmma_type<{acc.dtype}>"),
        a(f"#nvvm.wgmma_scale_out<{'zero' if zero else 'one'}>"),
        a("#nvvm.wgmma_scale_in<one>"), a("#nvvm.wgmma_scale_in<one>"),
        a(f"#nvvm.mma_layout<{'col' if a_mn_major else 'row'}>"),
        a(f"#nvvm.mma_layout<{'row' if b_mn_major else 'col'}>"))
