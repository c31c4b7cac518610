"""What the strategies share: field checks, the limits every kernel meets (vector widths,
stages, split-K, shared memory, registers) and the fitting of widths, split-K and block
swizzle to a shape. Each strategy's own rules live in its folder."""
from __future__ import annotations

import dataclasses

from deepgen.spec import DTYPE_BYTES, GemmSpec, SpecError

from ..config import k_contiguous
from ..target import Target


def check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise SpecError(f"{field}: {message}")


def check_not_fp8(spec: GemmSpec, strategy: str) -> None:
    """fp8 inputs are the wgmma strategy's alone, int8 inputs (deepgen.dtypes.QUANTIZED_DTYPES)
    the wgmma and mma_sync strategies'."""
    also = " and the mma_sync strategy (sm_80+, mma m16n8k32)" if spec.is_int8 else ""
    check(not spec.is_quantized, "dtype",
          f"the {strategy} strategy does not multiply {'int8' if spec.is_int8 else 'fp8'} "
          f"({spec.dtype}) inputs: only the wgmma strategy (sm_90a){also} does, layout NT "
          f"(A stored M x K, B stored N x K)")


def pow2(x: int) -> bool:
    return x >= 1 and (x & (x - 1)) == 0


def check_ints(cfg, zero_ok=("kk_unroll", "smem_pad")) -> None:
    """Every int field is an int >= 1 (>= 0 for `zero_ok`)."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.type in ("int", int):
            check(isinstance(v, int) and not isinstance(v, bool), f.name,
                  f"must be an int, got {v!r}")
            lo = 0 if f.name in zero_ok else 1
            check(v >= lo, f.name, f"must be >= {lo}, got {v}")


def check_pow2(cfg, names) -> None:
    for name in names:
        check(pow2(getattr(cfg, name)), name, f"must be a power of two, got {getattr(cfg, name)}")


def check_threads(cfg, target: Target) -> None:
    check(cfg.threads <= target.max_threads_per_block, "threads",
          f"{cfg.threads} threads exceed the limit {target.max_threads_per_block} of {target.name}")


def check_io(cfg, spec: GemmSpec, target: Target) -> None:
    """Vector widths of the global loads of A and B and of the stores of C."""
    elt = DTYPE_BYTES[spec.dtype]
    max_vec = target.max_vector_bytes
    check(cfg.store_width * DTYPE_BYTES[spec.out_dtype] <= max_vec, "store_width",
          f"{cfg.store_width} x {spec.out_dtype} exceeds the {max_vec}-byte vector limit")
    check(spec.N % cfg.store_width == 0, "store_width",
          f"C rows of N={spec.N} elements are not a multiple of store_width={cfg.store_width} "
          "(vector stores would be misaligned)")
    for op, rows in (("A", cfg.BM), ("B", cfg.BN)):
        field = f"load_width_{op.lower()}"
        w = getattr(cfg, field)
        check(pow2(w) and w * elt <= max_vec, field,
              f"must be a power of two with {w} x {spec.dtype} <= {max_vec} bytes, got {w}")
        # The tile's contiguous dimension in memory: K for row-major A / column-major B.
        k_contig = k_contiguous(spec, op)
        tile_contig = cfg.BK if k_contig else rows
        check(tile_contig % w == 0, field,
              f"the tile's contiguous extent ({'BK' if k_contig else ('BM' if op == 'A' else 'BN')}"
              f"={tile_contig}) is not a multiple of {w}")
        check((rows * cfg.BK) % (cfg.threads * w) == 0, field,
              f"the {op} tile ({rows}x{cfg.BK}) does not split evenly into {cfg.threads} "
              f"threads x {w} elements")
        ld = spec.stored_shape(op)[1]
        check(ld % w == 0, field,
              f"rows of {op} in memory hold {ld} elements, not a multiple of {w} "
              "(vector loads would be misaligned); use a narrower load width")


def check_stages(cfg, max_stages: int, note: str = "") -> None:
    check(1 <= cfg.shared_stages <= max_stages, "shared_stages",
          f"must be 1 to {max_stages}{note}, got {cfg.shared_stages}")


def check_split_k(cfg, spec: GemmSpec) -> None:
    k_tiles = -(-spec.K // cfg.BK)
    check(cfg.split_k <= k_tiles, "split_k",
          f"{cfg.split_k} slices exceed the {k_tiles} K tiles of K={spec.K} with BK={cfg.BK}")


def check_resources(cfg, est: dict, target: Target) -> None:
    """The strategy's estimates against the target: shared memory and registers."""
    smem, regs = est["shared_bytes"], est["registers"]
    check(smem <= target.max_shared_bytes_per_block, "shared memory",
          f"{smem} bytes exceed the limit {target.max_shared_bytes_per_block} of {target.name}")
    check(regs <= target.max_registers_per_thread, "registers",
          f"estimated {regs} per thread exceed the limit {target.max_registers_per_thread}")
    check(regs * cfg.threads <= target.registers_per_sm, "registers",
          f"estimated {regs} x {cfg.threads} threads exceed {target.registers_per_sm} per SM")


def fetch_vectors(cfg, operand: str) -> int:
    """Global vectors each thread loads per K step for operand A or B."""
    rows = cfg.BM if operand == "A" else cfg.BN
    width = cfg.load_width_a if operand == "A" else cfg.load_width_b
    return rows * cfg.BK // (cfg.threads * width)


def staged_words(cfg, spec: GemmSpec) -> int:
    """32-bit registers holding the next tile's global loads (register-staged copies)."""
    def words(n, w):  # whole 32-bit registers; a sub-word load also keeps a 64-bit address live
        nbytes = w * DTYPE_BYTES[spec.dtype]
        return n * (-(-nbytes // 4) + (2 if nbytes < 4 else 0))
    return words(fetch_vectors(cfg, "A"), cfg.load_width_a) + words(fetch_vectors(cfg, "B"),
                                                                    cfg.load_width_b)


# ---------------------------------------------------------------------------------------------
# Fitting a tile to a shape (the default heuristic, and partial configs' left-out fields)


def widest(ld: int, limit: int) -> int:
    w = limit
    while w > 1 and ld % w:
        w //= 2
    return w


def fit_load_widths(cfg, spec: GemmSpec, target: Target) -> dict:
    """The widest vectors that keep every access aligned and split evenly over the threads."""
    elt = DTYPE_BYTES[spec.dtype]
    changes = {}
    for op, rows in (("A", cfg.BM), ("B", cfg.BN)):
        tile_contig = cfg.BK if k_contiguous(spec, op) else rows
        w = widest(spec.stored_shape(op)[1], target.max_vector_bytes // elt)
        while w > 1 and (tile_contig % w or (rows * cfg.BK) % (cfg.threads * w)):
            w //= 2
        changes[f"load_width_{op.lower()}"] = w
    return changes


def fit_grid(cfg, spec: GemmSpec, target: Target) -> dict:
    """split_k (few blocks and a long K: split K so that the GPU fills up) and block_swizzle."""
    k_tiles = -(-spec.K // cfg.BK)
    blocks = -(-spec.M // cfg.BM) * -(-spec.N // cfg.BN) * spec.batch
    split = 1
    while blocks * split * 2 <= target.multiprocessors and k_tiles >= split * 2 * 8:
        split *= 2
    changes = {"split_k": split}
    if blocks >= 256:
        changes["block_swizzle"] = 8
    return changes


def first_valid(strategy, candidates, spec: GemmSpec, target: Target, fit):
    """The first candidate base tile that validates once fitted to the shape."""
    for i, base in enumerate(candidates):
        cfg = fit(base)
        try:
            strategy.validate(cfg, spec, target)
            return cfg
        except SpecError:
            if i == len(candidates) - 1:
                raise
