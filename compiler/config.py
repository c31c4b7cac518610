"""TileConfig: how a GEMM is tiled onto the GPU, validated against the spec and the target.

Thread arrangement (the SIMT path). A block has warps_m x warps_n warps; a warp has
lanes_m x lanes_n threads; each thread owns a TM x TN register tile of C. Along M, a thread's
TM rows come in chunks of `warp_scatter_m` rows per warp pass, and within those in groups of
`thread_scatter_m` consecutive rows (the width of one shared-memory fragment load), so that
the threads of a warp read neighbouring vectors (no bank conflicts) while each keeps a
vector-wide slice. The same holds along N. Hence BM = warps_m * lanes_m * TM.

The legacy DeepGen tuning-config keys map onto these fields (see LEGACY_KEYS).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from deepgen.spec import DTYPE_BYTES, GemmSpec, SpecError

from .target import Target, get_target


@dataclass(frozen=True)
class TileConfig:
    BM: int = 128  # block tile rows (M)
    BN: int = 128  # block tile columns (N)
    BK: int = 8  # block tile depth (K) per main-loop step
    TM: int = 8  # thread tile rows
    TN: int = 8  # thread tile columns
    warps_m: int = 2  # warps per block along M
    warps_n: int = 4
    lanes_m: int = 8  # threads per warp along M
    lanes_n: int = 4
    warp_scatter_m: int = 4  # rows a warp covers per pass, per thread
    warp_scatter_n: int = 4
    thread_scatter_m: int = 4  # consecutive rows per thread = shared fragment vector width
    thread_scatter_n: int = 4
    load_width_a: int = 4  # elements per global vector load of A
    load_width_b: int = 4
    store_width: int = 4  # elements per global vector store of C
    fetch_contiguous: bool = True  # neighbouring threads fetch neighbouring vectors
    smem_pad: int = 0  # extra elements at the end of each shared-memory row
    shared_stages: int = 2  # 1 = single buffer, 2 = double-buffered shared memory
    register_prefetch: bool = False  # load fragments of step k+1 before the FMAs of step k
    kk_unroll: int = 0  # unroll factor of the inner K loop; 0 = fully unrolled
    split_k: int = 1  # number of K slices reduced after the main kernel
    block_swizzle: int = 1  # group size of the grouped block order (L2 reuse); 1 = row order
    local_split_k: int = 1  # legacy LOCAL_SPLIT_U (intra-block K split); only 1 is built
    reduce_c_contiguous: bool = False  # legacy REDUCE_C_CONTINUOUS, used with local_split_k
    # Tensor cores: "none" = SIMT FMAs; "m16n8k16" = mma.sync on f16/bf16 (warp tiles of
    # BM/warps_m x BN/warps_n; TM, TN and the scatter fields then do not apply).
    mma: str = "none"
    # Tensor-core path: copy tiles global -> shared with cp.async in a ring of shared_stages
    # (2 to 4) instead of staging them through registers.
    async_copy: bool = False
    # Tensor-core path, f16/bf16: shared tiles without padding, their 16-byte chunks XOR-swizzled
    # by row (deepgen-vectorize's swizzle_col) so that ldmatrix and cp.async touch 8 different bank groups.
    smem_swizzle: bool = False
    # Tensor-core path: write C through shared memory, one 16-row slab of each warp tile at a
    # time, so that the global stores are store_width-element vectors along whole rows.
    epilogue_smem: bool = False

    @property
    def warp_tile(self) -> tuple[int, int]:
        return self.BM // self.warps_m, self.BN // self.warps_n

    @property
    def threads_m(self) -> int:
        return self.warps_m * self.lanes_m

    @property
    def threads_n(self) -> int:
        return self.warps_n * self.lanes_n

    @property
    def threads(self) -> int:
        return self.threads_m * self.threads_n

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TileConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in d.items():
            if key not in known:
                raise SpecError(f"{key}: not a TileConfig field (fields: {list(known)})")
            want = {"bool": bool, "str": str}.get(str(known[key].type), int)
            if want is str and not isinstance(value, str):
                raise SpecError(f"{key}: must be a string, got {value!r}")
            if want is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise SpecError(f"{key}: must be an int, got {value!r}")
            if want is bool and not isinstance(value, (bool, int)):
                raise SpecError(f"{key}: must be a bool, got {value!r}")
        return cls(**{k: (bool(v) if known[k].type in ("bool", bool) else v) for k, v in d.items()})

    def replace(self, **changes) -> "TileConfig":
        return dataclasses.replace(self, **changes)


def as_config(cfg: "TileConfig | dict | None", spec: GemmSpec, target: Target) -> TileConfig:
    if cfg is None:
        return default_config(spec, target)
    if isinstance(cfg, dict):
        return TileConfig.from_dict(cfg)
    if isinstance(cfg, TileConfig):
        return cfg
    raise SpecError(f"tile_cfg: expected TileConfig, dict or None, got {type(cfg).__name__}")


# ---------------------------------------------------------------------------------------------
# Validation


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise SpecError(f"{field}: {message}")


def _pow2(x: int) -> bool:
    return x >= 1 and (x & (x - 1)) == 0


MMA_SHAPES = ("m16n8k16", "m16n8k8")  # f16/bf16, tf32


def mma_depth(cfg: TileConfig) -> int:
    """K extent of one MMA instruction."""
    return 8 if cfg.mma == "m16n8k8" else 16


def k_contiguous(spec: GemmSpec, operand: str) -> bool:
    """Whether the operand's memory is contiguous along K (row-major A, column-major B)."""
    return (operand == "A") != (spec.b_transposed if operand == "B" else spec.a_transposed)


def tile_shapes(cfg: TileConfig, spec: GemmSpec) -> dict:
    """Shape of one shared-memory stage of each operand tile (rows padded by smem_pad).

    SIMT reads fragments along M/N, so tiles are stored K-major: [BK][BM]. The tensor-core
    path copies tiles as they lie in global memory (16-byte copies cannot transpose) and lets
    ldmatrix transpose: [BM][BK] when the operand is contiguous along K."""
    shapes = {}
    for op, rows in (("A", cfg.BM), ("B", cfg.BN)):
        if cfg.mma != "none" and k_contiguous(spec, op):  # (async copies cannot transpose)
            shapes[op] = [rows, cfg.BK + cfg.smem_pad]
        else:
            shapes[op] = [cfg.BK, rows + cfg.smem_pad]
    return shapes


def shared_bytes(cfg: TileConfig, spec: GemmSpec) -> int:
    shapes = tile_shapes(cfg, spec)
    per_stage = sum(r * c for r, c in shapes.values())
    tiles = cfg.shared_stages * per_stage * DTYPE_BYTES[spec.dtype]
    if cfg.mma != "none" and cfg.epilogue_smem:  # reuses the tiles' memory after the loop
        return max(tiles, epilogue_slab_bytes(cfg))
    return tiles


EPILOGUE_PAD = 8  # f32 words past each 16-row slab row: the accumulator writes avoid conflicts


def epilogue_slab_shape(cfg: TileConfig) -> list[int]:
    """[warps][16][warp tile columns + pad] f32: each warp's staging slab for epilogue_smem."""
    return [cfg.warps_m * cfg.warps_n, 16, cfg.BN // cfg.warps_n + EPILOGUE_PAD]


def epilogue_slab_bytes(cfg: TileConfig) -> int:
    w, r, c = epilogue_slab_shape(cfg)
    return w * r * c * 4


def fetch_vectors(cfg: TileConfig, operand: str) -> int:
    """Global vectors each thread loads per K step for operand A or B."""
    rows = cfg.BM if operand == "A" else cfg.BN
    width = cfg.load_width_a if operand == "A" else cfg.load_width_b
    return rows * cfg.BK // (cfg.threads * width)


def register_estimate(cfg: TileConfig, spec: GemmSpec) -> int:
    """Rough 32-bit registers per thread: accumulators, fragments, staged global loads, indices."""
    frag = (cfg.TM + cfg.TN) * (2 if cfg.register_prefetch else 1)
    def words(n, w):  # whole 32-bit registers; a sub-word load also keeps a 64-bit address live
        nbytes = w * DTYPE_BYTES[spec.dtype]
        return n * (-(-nbytes // 4) + (2 if nbytes < 4 else 0))
    staged = words(fetch_vectors(cfg, "A"), cfg.load_width_a) + words(fetch_vectors(cfg, "B"),
                                                                      cfg.load_width_b)
    if cfg.shared_stages < 2 or cfg.async_copy:
        staged = 0
    if cfg.mma != "none":
        wm, wn = cfg.warp_tile
        acc = (wm // 16) * (wn // 8) * 4
        frag = (wm // 16) * 4 + (wn // 8) * 2
        return acc + frag + staged + 24
    return cfg.TM * cfg.TN + frag + staged + 24


def validate(cfg: TileConfig, spec: GemmSpec, target: Target | str = "sm_90a") -> None:
    """Raise SpecError naming the first field that breaks a limit of the spec or the target."""
    if isinstance(target, str):
        target = get_target(target)
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.type in ("int", int):
            _check(isinstance(v, int) and not isinstance(v, bool), f.name, f"must be an int, got {v!r}")
            lo = 0 if f.name in ("kk_unroll", "smem_pad") else 1
            _check(v >= lo, f.name, f"must be >= {lo}, got {v}")
    for name in ("BM", "BN", "BK", "TM", "TN", "warps_m", "warps_n", "lanes_m", "lanes_n"):
        _check(_pow2(getattr(cfg, name)), name, f"must be a power of two, got {getattr(cfg, name)}")
    _check(cfg.lanes_m * cfg.lanes_n == target.warp_size, "lanes_m*lanes_n",
           f"must equal the warp size {target.warp_size} of {target.name}, "
           f"got {cfg.lanes_m}*{cfg.lanes_n}")
    _check(cfg.threads <= target.max_threads_per_block, "threads",
           f"{cfg.threads} threads exceed the limit {target.max_threads_per_block} of {target.name}")
    elt = DTYPE_BYTES[spec.dtype]
    max_vec = target.max_vector_bytes
    _check(not cfg.async_copy or cfg.mma != "none", "async_copy",
           "cp.async staging is built for the tensor-core path (mma) only")
    if cfg.mma == "none":
        _validate_simt(cfg, spec, target)
    else:
        _validate_mma(cfg, spec, target)
    _check(cfg.store_width * DTYPE_BYTES[spec.out_dtype] <= max_vec, "store_width",
           f"{cfg.store_width} x {spec.out_dtype} exceeds the {max_vec}-byte vector limit")
    _check(spec.N % cfg.store_width == 0, "store_width",
           f"C rows of N={spec.N} elements are not a multiple of store_width={cfg.store_width} "
           "(vector stores would be misaligned)")
    for op, rows in (("A", cfg.BM), ("B", cfg.BN)):
        field = f"load_width_{op.lower()}"
        w = getattr(cfg, field)
        _check(_pow2(w) and w * elt <= max_vec, field,
               f"must be a power of two with {w} x {spec.dtype} <= {max_vec} bytes, got {w}")
        # The tile's contiguous dimension in memory: K for row-major A / column-major B.
        k_contig = k_contiguous(spec, op)
        tile_contig = cfg.BK if k_contig else rows
        _check(tile_contig % w == 0, field,
               f"the tile's contiguous extent ({'BK' if k_contig else ('BM' if op == 'A' else 'BN')}"
               f"={tile_contig}) is not a multiple of {w}")
        _check((rows * cfg.BK) % (cfg.threads * w) == 0, field,
               f"the {op} tile ({rows}x{cfg.BK}) does not split evenly into {cfg.threads} "
               f"threads x {w} elements")
        ld = spec.stored_shape(op)[1]
        _check(ld % w == 0, field,
               f"rows of {op} in memory hold {ld} elements, not a multiple of {w} "
               "(vector loads would be misaligned); use a narrower load width")
    max_stages = 4 if cfg.async_copy else 2
    _check(1 <= cfg.shared_stages <= max_stages, "shared_stages",
           f"must be 1 to {max_stages}{' with async_copy' if cfg.async_copy else ''}, "
           f"got {cfg.shared_stages}")
    _check(cfg.kk_unroll == 0 or (cfg.BK % cfg.kk_unroll == 0), "kk_unroll",
           f"must be 0 (full) or divide BK={cfg.BK}, got {cfg.kk_unroll}")
    _check(cfg.local_split_k == 1, "local_split_k",
           f"intra-block K split (legacy LOCAL_SPLIT_U) is not built yet; only 1 is supported, "
           f"got {cfg.local_split_k}")
    k_tiles = -(-spec.K // cfg.BK)
    _check(cfg.split_k <= k_tiles, "split_k",
           f"{cfg.split_k} slices exceed the {k_tiles} K tiles of K={spec.K} with BK={cfg.BK}")
    smem = shared_bytes(cfg, spec)
    _check(smem <= target.max_shared_bytes_per_block, "shared memory",
           f"{smem} bytes exceed the limit {target.max_shared_bytes_per_block} of {target.name}")
    regs = register_estimate(cfg, spec)
    _check(regs <= target.max_registers_per_thread, "registers",
           f"estimated {regs} per thread exceed the limit {target.max_registers_per_thread}")
    _check(regs * cfg.threads <= target.registers_per_sm, "registers",
           f"estimated {regs} x {cfg.threads} threads exceed {target.registers_per_sm} per SM")


def _validate_simt(cfg: TileConfig, spec: GemmSpec, target: Target) -> None:
    _check(cfg.BM == cfg.threads_m * cfg.TM, "BM",
           f"must equal warps_m*lanes_m*TM = {cfg.threads_m * cfg.TM}, got {cfg.BM}")
    _check(cfg.BN == cfg.threads_n * cfg.TN, "BN",
           f"must equal warps_n*lanes_n*TN = {cfg.threads_n * cfg.TN}, got {cfg.BN}")
    max_vec = target.max_vector_bytes
    for axis, t in (("m", cfg.TM), ("n", cfg.TN)):
        ws, ts = getattr(cfg, f"warp_scatter_{axis}"), getattr(cfg, f"thread_scatter_{axis}")
        _check(_pow2(ts) and ts * 4 <= max_vec, f"thread_scatter_{axis}",
               f"must be a power of two with {ts}*4 bytes <= {max_vec}, got {ts}")
        _check(_pow2(ws) and ws % ts == 0 and t % ws == 0, f"warp_scatter_{axis}",
               f"must be a power of two, a multiple of thread_scatter_{axis}={ts} and divide "
               f"T{axis.upper()}={t}, got {ws}")
    _check(_pow2(cfg.store_width) and cfg.thread_scatter_n % cfg.store_width == 0, "store_width",
           f"must be a power of two dividing thread_scatter_n={cfg.thread_scatter_n}, "
           f"got {cfg.store_width}")
    for op, rows, ts, w, contig_k in (("A", cfg.BM, cfg.thread_scatter_m, cfg.load_width_a,
                                       not spec.a_transposed),
                                      ("B", cfg.BN, cfg.thread_scatter_n, cfg.load_width_b,
                                       spec.b_transposed)):
        vec = max(ts, 1 if contig_k else w)  # widest vector access along a shared row
        _check((rows + cfg.smem_pad) % vec == 0, "smem_pad",
               f"shared rows of {op} ({rows} + {cfg.smem_pad}) must stay a multiple of the "
               f"{vec}-element vector accesses")


def _validate_mma(cfg: TileConfig, spec: GemmSpec, target: Target) -> None:
    _check(cfg.mma in MMA_SHAPES, "mma",
           f"must be 'none' or one of {MMA_SHAPES}, got {cfg.mma!r}")
    _check(target.is_nvidia and target.name >= "sm_80", "mma",
           f"mma.sync needs an NVIDIA GPU of sm_80 or later, got {target.name}")
    if cfg.mma == "m16n8k8":
        _check(spec.dtype == "f32" and spec.allow_tf32, "mma",
               f"m16n8k8 multiplies tf32: f32 inputs with allow_tf32=True, got dtype "
               f"{spec.dtype}, allow_tf32={spec.allow_tf32}")
    else:
        _check(spec.dtype in ("f16", "bf16"), "mma",
               f"{cfg.mma} multiplies f16 or bf16, got dtype {spec.dtype}")
    wm, wn = cfg.warp_tile
    _check(cfg.BM % (cfg.warps_m * 16) == 0, "BM",
           f"must be a multiple of warps_m*16 = {cfg.warps_m * 16} (16-row MMA tiles), got {cfg.BM}")
    _check(cfg.BN % (cfg.warps_n * 16) == 0, "BN",
           f"must be a multiple of warps_n*16 = {cfg.warps_n * 16} (pairs of 8-column MMA tiles), "
           f"got {cfg.BN}")
    depth = mma_depth(cfg)
    _check(cfg.BK % depth == 0, "BK", f"must be a multiple of the MMA depth {depth}, got {cfg.BK}")
    if cfg.epilogue_smem:
        _check(_pow2(cfg.store_width) and (cfg.BN // cfg.warps_n) % cfg.store_width == 0,
               "store_width", f"must be a power of two dividing the warp tile's "
               f"{cfg.BN // cfg.warps_n} columns, got {cfg.store_width}")
    else:
        _check(cfg.store_width in (1, 2), "store_width",
               f"an MMA accumulator holds 2 neighbouring columns: 1 or 2, got {cfg.store_width}")
    row_vec = 16 // DTYPE_BYTES[spec.dtype]  # shared rows stay 16-byte aligned (ldmatrix, cp.async)
    if cfg.smem_swizzle:
        _check(cfg.mma == "m16n8k16", "smem_swizzle",
               f"the XOR swizzle is built for 16-bit tiles (f16/bf16, mma m16n8k16), got {cfg.mma}")
        _check(cfg.smem_pad == 0, "smem_pad", f"must be 0 with smem_swizzle, got {cfg.smem_pad}")
    _check(cfg.smem_pad % row_vec == 0, "smem_pad",
           f"shared rows must stay 16-byte aligned: a multiple of {row_vec}, got {cfg.smem_pad}")
    if cfg.async_copy:
        _check(cfg.shared_stages >= 2, "shared_stages",
               f"async_copy pipelines at least 2 stages, got {cfg.shared_stages}")
        for op in ("a", "b"):
            w = getattr(cfg, f"load_width_{op}") * DTYPE_BYTES[spec.dtype]
            _check(w in (4, 8, 16), f"load_width_{op}",
                   f"cp.async copies 4, 8 or 16 bytes; {w} bytes with async_copy")


# ---------------------------------------------------------------------------------------------
# Default heuristic (before tuning)


def _widest(ld: int, limit: int) -> int:
    w = limit
    while w > 1 and ld % w:
        w //= 2
    return w


def _base_tiles(spec: GemmSpec, use_mma: bool) -> list[TileConfig]:
    """Candidate base tiles for a shape, preferred first (widths etc. are filled in later).

    Tensor cores (measured on the H100: 128 x 256 x 32 with 2 x 4 warps of 64 x 64 reached
    330 TFLOP/s on bf16 4096^3) fall back to smaller tiles when a large one does not fit,
    e.g. register-staged copies of unaligned operands that cannot use cp.async."""
    if use_mma and spec.allow_tf32:  # tf32: half the depth per instruction, 4-element padding
        mma = dict(mma="m16n8k8", BK=32, smem_pad=4, shared_stages=3, epilogue_smem=True)
        return [TileConfig(BM=128, BN=128, warps_m=2, warps_n=4, **mma),
                TileConfig(BM=64, BN=64, warps_m=2, warps_n=2, **mma)]
    if use_mma:
        # swizzled tiles, fragments prefetched across K tiles, C through shared memory: each
        # gained on the H100 (benchmarks/NOTES.md); 64 x 64 warp tiles where the shape allows
        mma = dict(mma="m16n8k16", smem_swizzle=True, register_prefetch=True, epilogue_smem=True)
        small = [TileConfig(BM=128, BN=128, BK=64, warps_m=2, warps_n=2, shared_stages=3, **mma),
                 TileConfig(BM=64, BN=128, BK=32, warps_m=2, warps_n=2, shared_stages=3, **mma),
                 TileConfig(BM=64, BN=64, BK=32, warps_m=2, warps_n=2, shared_stages=3, **mma)]
        if spec.M <= 16:
            return [TileConfig(BM=16, BN=128, BK=32, warps_m=1, warps_n=4, shared_stages=3,
                               **mma)] + small[1:]
        if spec.M >= 256 and spec.N >= 128:
            return [TileConfig(BM=256, BN=128, BK=64, warps_m=4, warps_n=2, shared_stages=4,
                               **mma)] + small
        if spec.M >= 128 and spec.N >= 128:
            return small
        return small[1:]
    if spec.M >= 128 and spec.N >= 128:
        return [TileConfig()]  # 128x128x8, 256 threads, 8x8 per thread
    if spec.M <= 32:
        # Skinny M (decode): 16 x 128 tiles, 128 threads with 2 x 8 each, a deeper K step.
        return [TileConfig(BM=16, BN=128, BK=16, TM=2, TN=8, warps_m=1, warps_n=4, lanes_m=8,
                           lanes_n=4, warp_scatter_m=2, warp_scatter_n=4, thread_scatter_m=2,
                           thread_scatter_n=4)]
    return [TileConfig(BM=64, BN=64, BK=16, TM=4, TN=4, warps_m=2, warps_n=4, lanes_m=8,
                       lanes_n=4, warp_scatter_m=4, warp_scatter_n=4, thread_scatter_m=4,
                       thread_scatter_n=4)]


def default_config(spec: GemmSpec, target: Target | str = "sm_90a") -> TileConfig:
    """A reasonable config chosen from the problem size; tuning finds better ones.

    The first candidate base tile that validates once widths, split-K and staging are fitted
    to the shape wins."""
    if isinstance(target, str):
        target = get_target(target)
    use_mma = ((spec.dtype in ("f16", "bf16") or spec.allow_tf32) and target.is_nvidia
               and target.name >= "sm_80")
    candidates = _base_tiles(spec, use_mma)
    for i, base in enumerate(candidates):
        cfg = _fit(base, spec, target, use_mma)
        try:
            validate(cfg, spec, target)
            return cfg
        except SpecError:
            if i == len(candidates) - 1:
                raise


def _fit(cfg: TileConfig, spec: GemmSpec, target: Target, use_mma: bool) -> TileConfig:
    elt = DTYPE_BYTES[spec.dtype]
    # The base tiles assume 32-lane warps. A wider warp (AMD's 64-lane wavefront) takes more
    # lanes along N and fewer warps, so the block keeps its threads and its BM x BN tile.
    wide = target.warp_size // (cfg.lanes_m * cfg.lanes_n)  # 1 on NVIDIA, 2 on AMD
    if wide > 1:
        cfg = cfg.replace(lanes_n=cfg.lanes_n * wide, warps_n=cfg.warps_n // wide)
    # The widest vectors that keep every access aligned and split evenly over the threads.
    changes = {}
    for op, rows in (("A", cfg.BM), ("B", cfg.BN)):
        tile_contig = cfg.BK if k_contiguous(spec, op) else rows
        w = _widest(spec.stored_shape(op)[1], target.max_vector_bytes // elt)
        while w > 1 and (tile_contig % w or (rows * cfg.BK) % (cfg.threads * w)):
            w //= 2
        changes[f"load_width_{op.lower()}"] = w
    # contiguous C columns per thread: an MMA accumulator pair, a whole 16-byte vector when C
    # goes through shared memory, or the SIMT thread tile's vector
    per_thread = (16 // DTYPE_BYTES[spec.out_dtype] if cfg.epilogue_smem else 2) if use_mma \
        else cfg.thread_scatter_n
    changes["store_width"] = _widest(spec.N, min(per_thread, target.max_vector_bytes
                                                 // DTYPE_BYTES[spec.out_dtype]))
    if use_mma and cfg.epilogue_smem and changes["store_width"] * DTYPE_BYTES[spec.out_dtype] < 8:
        # rows of C too narrow for wide vectors: staging gains nothing (and cost spills)
        changes.update(epilogue_smem=False, store_width=min(changes["store_width"], 2))
    k_tiles = -(-spec.K // cfg.BK)
    blocks = -(-spec.M // cfg.BM) * -(-spec.N // cfg.BN) * spec.batch
    # Few blocks and a long K: split K so that the GPU fills up.
    split = 1
    while blocks * split * 2 <= target.multiprocessors and k_tiles >= split * 2 * 8:
        split *= 2
    changes["split_k"] = split
    if blocks >= 256:
        changes["block_swizzle"] = 8
    if use_mma and all(changes[f"load_width_{o}"] * elt >= 4 for o in ("a", "b")):
        changes["async_copy"] = True
        if spec.M % cfg.BM or spec.N % cfg.BN or spec.K % cfg.BK:
            # partial tiles: their guards take the registers the prefetched fragments need
            changes["register_prefetch"] = False
    elif use_mma:  # rows too narrow for cp.async: tiles staged through registers, padded and
        # without fragment prefetch (swizzled element stores and prefetched fragments cost
        # registers that this path, holding the next tile, does not have)
        changes.update(shared_stages=2, smem_swizzle=False, register_prefetch=False,
                       smem_pad=cfg.smem_pad if cfg.mma == "m16n8k8" else 16 // elt)
    return cfg.replace(**changes)


# ---------------------------------------------------------------------------------------------
# Legacy DeepGen tuning-config keys. Later files renamed some keys; both spellings are read.

LEGACY_KEYS = {
    "BLOCK_SIZE_M": "BM", "BLOCK_SIZE_N": "BN", "BLOCK_SIZE_K": "BK",
    "THREAD_SIZE_M": "TM", "THREAD_SIZE_N": "TN",
    "BLOCK_LAYOUT_M": "warps_m", "BLOCK_LAYOUT_N": "warps_n",
    "BLOCK_LAYOUT_Y": "warps_m", "BLOCK_LAYOUT_X": "warps_n",
    "WARP_LAYOUT_M": "lanes_m", "WARP_LAYOUT_N": "lanes_n",
    "WARP_LAYOUT_Y": "lanes_m", "WARP_LAYOUT_X": "lanes_n",
    "WARP_SCATTER_WIDTH_A": "warp_scatter_m", "WARP_SCATTER_WIDTH_B": "warp_scatter_n",
    "WARP_SCATTER_WIDTH_M": "warp_scatter_m", "WARP_SCATTER_WIDTH_N": "warp_scatter_n",
    "THREAD_SCATTER_WIDTH_A": "thread_scatter_m", "THREAD_SCATTER_WIDTH_B": "thread_scatter_n",
    "BLOCK_SCATTER_WIDTH_M": "thread_scatter_m", "BLOCK_SCATTER_WIDTH_N": "thread_scatter_n",
    "GLOB_LOAD_WIDTH_A": "load_width_a", "GLOB_LOAD_WIDTH_B": "load_width_b",
    "GLOB_STORE_WIDTH": "store_width",
    "LOAD_CONTINUOUS": "fetch_contiguous",
    "SHARED_PREFETCH": "shared_stages",  # 0/1 -> 1/2 stages
    "REG_PREFETCH": "register_prefetch",
    "UNROLL_NUM": "kk_unroll",
    "BLOCK_MAPPING": "block_swizzle",
    "LOCAL_SPLIT_U": "local_split_k",
    "REDUCE_C_CONTINUOUS": "reduce_c_contiguous",
    "STORE_CONTINUOUS": "reduce_c_contiguous",
}
# Keys that describe the problem or the machine rather than the tiling.
LEGACY_SPEC_KEYS = {"M_SIZE": "M", "N_SIZE": "N", "K_SIZE": "K", "BATCH_SIZE": "batch",
                    "IS_ATRANS": "layout", "DATATYPE_A": "dtype", "DATATYPE_B": "dtype",
                    "DATATYPE_C": "out_dtype", "WARP_SIZE": "warp_size"}
LEGACY_DTYPES = {4: "f32", 2: "f16"}


def from_legacy(values: dict) -> dict:
    """Map one legacy point (key -> single value) onto TileConfig fields (a dict)."""
    out = {}
    for key, value in values.items():
        if key in LEGACY_SPEC_KEYS:
            continue
        if key not in LEGACY_KEYS:
            raise SpecError(f"{key}: legacy tuning-config key that DeepGen cannot map "
                            f"(known: {sorted(LEGACY_KEYS) + sorted(LEGACY_SPEC_KEYS)})")
        field = LEGACY_KEYS[key]
        if key == "SHARED_PREFETCH":
            value = 2 if value else 1
        elif key == "UNROLL_NUM":
            value = value  # inner-K unroll factor; validated against BK
        out[field] = value
    return out
