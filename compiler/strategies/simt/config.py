"""SimtConfig: the SIMT strategy's fields, validation, estimates, default heuristic and fitting.

Thread arrangement. A block has warps_m x warps_n warps; a warp has lanes_m x lanes_n threads;
each thread owns a TM x TN register tile of C. Along M, a thread's TM rows come in chunks of
`warp_scatter_m` rows per warp pass, and within those in groups of `thread_scatter_m`
consecutive rows (the width of one shared-memory fragment load), so that the threads of a warp
read neighbouring vectors (no bank conflicts) while each keeps a vector-wide slice. The same
holds along N. Hence BM = warps_m * lanes_m * TM.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deepgen.spec import DTYPE_BYTES, GemmSpec

from ...config import SimtFields, TileConfig
from ...target import Target
from .. import common
from ..base import StrategyConfig
from ..common import check


@dataclass(frozen=True)
class SimtConfig(StrategyConfig, SimtFields):
    strategy: ClassVar[str] = "simt"

    def lowering(self) -> TileConfig:
        return TileConfig(**{f: getattr(self, f) for f in self.field_names()}, mma="none")


# -- validation -----------------------------------------------------------------------------


def estimates(cfg: SimtConfig, spec: GemmSpec) -> dict:
    """Shared memory: K-major tiles [BK][BM + pad] and [BK][BN + pad] per stage. Registers
    (rough, 32-bit per thread): accumulators, fragments, staged global loads, indices."""
    per_stage = cfg.BK * (cfg.BM + cfg.smem_pad) + cfg.BK * (cfg.BN + cfg.smem_pad)
    shared = cfg.shared_stages * per_stage * DTYPE_BYTES[spec.dtype]
    frag = (cfg.TM + cfg.TN) * (2 if cfg.register_prefetch else 1)
    staged = common.staged_words(cfg, spec) if cfg.shared_stages >= 2 else 0
    return {"shared_bytes": shared, "registers": cfg.TM * cfg.TN + frag + staged + 24}


def validate(cfg: SimtConfig, spec: GemmSpec, target: Target) -> None:
    common.check_not_fp8(spec, "simt")
    common.check_ints(cfg)
    common.check_pow2(cfg, ("BM", "BN", "BK", "TM", "TN", "warps_m", "warps_n", "lanes_m",
                            "lanes_n"))
    check(cfg.lanes_m * cfg.lanes_n == target.warp_size, "lanes_m*lanes_n",
          f"must equal the warp size {target.warp_size} of {target.name}, "
          f"got {cfg.lanes_m}*{cfg.lanes_n}")
    common.check_threads(cfg, target)
    check(cfg.BM == cfg.threads_m * cfg.TM, "BM",
          f"must equal warps_m*lanes_m*TM = {cfg.threads_m * cfg.TM}, got {cfg.BM}")
    check(cfg.BN == cfg.threads_n * cfg.TN, "BN",
          f"must equal warps_n*lanes_n*TN = {cfg.threads_n * cfg.TN}, got {cfg.BN}")
    max_vec = target.max_vector_bytes
    for axis, t in (("m", cfg.TM), ("n", cfg.TN)):
        ws, ts = getattr(cfg, f"warp_scatter_{axis}"), getattr(cfg, f"thread_scatter_{axis}")
        check(common.pow2(ts) and ts * 4 <= max_vec, f"thread_scatter_{axis}",
              f"must be a power of two with {ts}*4 bytes <= {max_vec}, got {ts}")
        check(common.pow2(ws) and ws % ts == 0 and t % ws == 0, f"warp_scatter_{axis}",
              f"must be a power of two, a multiple of thread_scatter_{axis}={ts} and divide "
              f"T{axis.upper()}={t}, got {ws}")
    check(common.pow2(cfg.store_width) and cfg.thread_scatter_n % cfg.store_width == 0,
          "store_width", f"must be a power of two dividing thread_scatter_n={cfg.thread_scatter_n}, "
          f"got {cfg.store_width}")
    for op, rows, ts, w, contig_k in (("A", cfg.BM, cfg.thread_scatter_m, cfg.load_width_a,
                                       not spec.a_transposed),
                                      ("B", cfg.BN, cfg.thread_scatter_n, cfg.load_width_b,
                                       spec.b_transposed)):
        vec = max(ts, 1 if contig_k else w)  # widest vector access along a shared row
        check((rows + cfg.smem_pad) % vec == 0, "smem_pad",
              f"shared rows of {op} ({rows} + {cfg.smem_pad}) must stay a multiple of the "
              f"{vec}-element vector accesses")
    common.check_io(cfg, spec, target)
    common.check_stages(cfg, 2)
    check(cfg.kk_unroll == 0 or (cfg.BK % cfg.kk_unroll == 0), "kk_unroll",
          f"must be 0 (full) or divide BK={cfg.BK}, got {cfg.kk_unroll}")
    check(cfg.local_split_k == 1, "local_split_k",
          f"intra-block K split (legacy LOCAL_SPLIT_U) is not built yet; only 1 is supported, "
          f"got {cfg.local_split_k}")
    common.check_split_k(cfg, spec)
    common.check_resources(cfg, estimates(cfg, spec), target)


# -- default heuristic and fitting ----------------------------------------------------------


def base_tiles(spec: GemmSpec) -> list[SimtConfig]:
    """Candidate base tiles for a shape, preferred first (widths etc. are fitted later)."""
    if spec.M >= 128 and spec.N >= 128:
        return [SimtConfig()]  # 128x128x8, 256 threads, 8x8 per thread
    if spec.M <= 32:
        # Skinny M (decode): 16 x 128 tiles, 128 threads with 2 x 8 each, a deeper K step.
        return [SimtConfig(BM=16, BN=128, BK=16, TM=2, TN=8, warps_m=1, warps_n=4, lanes_m=8,
                           lanes_n=4, warp_scatter_m=2, warp_scatter_n=4, thread_scatter_m=2,
                           thread_scatter_n=4)]
    return [SimtConfig(BM=64, BN=64, BK=16, TM=4, TN=4, warps_m=2, warps_n=4, lanes_m=8,
                       lanes_n=4, warp_scatter_m=4, warp_scatter_n=4, thread_scatter_m=4,
                       thread_scatter_n=4)]


def fit(cfg: SimtConfig, spec: GemmSpec, target: Target, given=frozenset()) -> SimtConfig:
    """Fit widths, split-K and block swizzle (and the lanes of a wider warp) to the shape;
    fields in `given` are the user's and stay as they are."""
    # The base tiles assume 32-lane warps. A wider warp (AMD's 64-lane wavefront) takes more
    # lanes along N and fewer warps, so the block keeps its threads and its BM x BN tile.
    wide = target.warp_size // (cfg.lanes_m * cfg.lanes_n)  # 1 on NVIDIA, 2 on AMD
    if wide > 1 and not given & {"lanes_m", "lanes_n"}:
        cfg = cfg.replace(lanes_n=cfg.lanes_n * wide,
                          **({} if "warps_n" in given else {"warps_n": max(1, cfg.warps_n // wide)}))
    changes = common.fit_load_widths(cfg, spec, target)
    changes["store_width"] = common.widest(spec.N, min(cfg.thread_scatter_n, target.max_vector_bytes
                                                       // DTYPE_BYTES[spec.out_dtype]))
    changes.update(common.fit_grid(cfg, spec, target))
    return cfg.replace(**{k: v for k, v in changes.items() if k not in given})


AXES = (("BM", "warps_m", "lanes_m", "TM"), ("BN", "warps_n", "lanes_n", "TN"))


def derive(base: SimtConfig, given: dict, warp_size: int) -> SimtConfig:
    """Structural fields left out follow from the given ones: lanes_m*lanes_n = the warp size,
    BM = warps_m*lanes_m*TM (one of the three left out follows from the other two; BM alone
    keeps the base's thread tile, halved until whole warps fit), scatters capped by the tile."""
    v = {**{f: getattr(base, f) for f in base.field_names()}, **given}
    if ("lanes_m" in given) != ("lanes_n" in given):
        lm = given.get("lanes_m")
        if lm is not None and lm >= 1 and warp_size % lm == 0:
            v["lanes_n"] = warp_size // lm
        ln = given.get("lanes_n")
        if ln is not None and ln >= 1 and warp_size % ln == 0:
            v["lanes_m"] = warp_size // ln
    for B, W, L, T in AXES:
        lanes = v[L]
        if B in given and not (W in given and T in given):
            b = given[B]
            if T in given:
                if lanes * given[T] and b % (lanes * given[T]) == 0:
                    v[W] = max(1, b // (lanes * given[T]))
            elif W in given:
                if v[W] * lanes and b % (v[W] * lanes) == 0:
                    v[T] = max(1, b // (v[W] * lanes))
            else:
                t = v[T]
                while t > 1 and b % (lanes * t):
                    t //= 2
                v[T], v[W] = t, max(1, b // (lanes * t))
        elif B not in given and (W in given or T in given or L in given):
            v[B] = v[W] * lanes * v[T]
    for axis, T in (("m", "TM"), ("n", "TN")):
        ws, ts = f"warp_scatter_{axis}", f"thread_scatter_{axis}"
        if ws not in given:
            v[ws] = min(v[ws], v[T])
        if ts not in given:
            v[ts] = min(v[ts], v[ws])
    return SimtConfig(**v)
