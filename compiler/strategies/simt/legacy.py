"""Legacy DeepGen tuning-config keys -> SimtConfig fields. Later files renamed some keys; both
spellings are read."""
from __future__ import annotations

from deepgen.spec import SpecError

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
    """Map one legacy point (key -> single value) onto SimtConfig fields (a dict)."""
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
        out[field] = value  # (UNROLL_NUM: the inner-K unroll factor, validated against BK)
    return out
