"""TileConfig / GemmSpec validation: every error names the field and the limit."""
import itertools

import pytest

from deepgen.compiler.config import (TileConfig, default_config, from_legacy, register_estimate,
                                     shared_bytes, validate)
from deepgen.spec import GemmSpec, SpecError

SPEC = GemmSpec(M=4096, N=4096, K=4096)


@pytest.mark.parametrize("changes, field, words", [
    ({"BM": 64}, "BM", "warps_m*lanes_m*TM = 128"),
    ({"lanes_m": 4}, "lanes_m*lanes_n", "warp size 32"),
    ({"warps_m": 8, "warps_n": 8, "BM": 512, "BN": 256}, "threads", "limit 1024"),
    ({"TM": 16, "TN": 16, "BM": 256, "BN": 256}, "registers", "limit 255"),
    ({"split_k": 1000}, "split_k", "512 K tiles"),
    ({"local_split_k": 2}, "local_split_k", "only 1"),
    ({"kk_unroll": 3}, "kk_unroll", "divide BK=8"),
    ({"thread_scatter_m": 8}, "thread_scatter_m", None),
    ({"warp_scatter_m": 2, "thread_scatter_m": 4}, "warp_scatter_m", "multiple of thread_scatter_m"),
    ({"store_width": 8}, "store_width", "dividing thread_scatter_n"),
    ({"smem_pad": 2}, "smem_pad", "multiple"),
    ({"shared_stages": 3}, "shared_stages", "must be 1 to 2"),
    ({"async_copy": True, "shared_stages": 3}, "async_copy", "tensor-core path"),
    ({"BN": 96}, "BN", "power of two"),
])
def test_invalid_configs_name_field(changes, field, words):
    cfg = TileConfig(**{**TileConfig().to_dict(), **changes})
    with pytest.raises(SpecError) as e:
        validate(cfg, SPEC, "sm_90a")
    assert str(e.value).startswith(field + ":"), str(e.value)
    if words:
        assert words in str(e.value)


def test_shared_memory_limit_is_the_targets():
    cfg = TileConfig(BK=128, BM=128, BN=128)
    assert shared_bytes(cfg, SPEC) > 227 * 1024
    with pytest.raises(SpecError, match=r"^shared memory: .* exceed the limit 232448 of sm_90a"):
        validate(cfg, SPEC)


def test_misaligned_vector_loads_rejected_for_odd_leading_dimension():
    spec = GemmSpec(M=1000, N=1234, K=777)
    with pytest.raises(SpecError, match=r"^load_width_a: rows of A in memory hold 777 elements"):
        validate(TileConfig(store_width=2), spec)
    with pytest.raises(SpecError, match=r"^store_width: C rows of N=1234"):
        validate(TileConfig(load_width_a=1, load_width_b=2), spec)


def test_default_config_is_valid_for_every_shape_layout_dtype():
    sizes = [1, 7, 33, 127, 1000, 4097]
    for (m, n, k), layout, dtype in itertools.product(
            itertools.product(sizes, repeat=3), ("NN", "NT", "TN", "TT"), ("f32", "f16", "bf16")):
        spec = GemmSpec(M=m, N=n, K=k, layout=layout, dtype=dtype)
        cfg = default_config(spec)  # validates
        assert register_estimate(cfg, spec) <= 255


def test_default_config_uses_wide_loads_when_aligned_and_split_k_when_few_blocks():
    # layout TN: mma_sync's (wgmma with swapped operands takes NN/NT at this size)
    cfg = default_config(GemmSpec(M=16, N=4096, K=4096, dtype="bf16", layout="TN"))
    assert cfg.strategy == "mma_sync" and cfg.load_width_b == 8  # 16 bytes of bf16
    assert cfg.split_k > 1  # 32 blocks cannot fill 132 SMs
    assert default_config(GemmSpec(M=4096, N=4096, K=4096)).split_k == 1


def test_from_dict_rejects_unknown_and_mistyped_fields():
    with pytest.raises(SpecError, match="^BLOCK_M: not a TileConfig field"):
        TileConfig.from_dict({"BLOCK_M": 64})
    with pytest.raises(SpecError, match="^BM: must be an int"):
        TileConfig.from_dict({"BM": "64"})
    assert TileConfig.from_dict({"BM": 64, "register_prefetch": 1}).register_prefetch is True


def test_legacy_keys_map_to_fields_and_unknown_keys_are_named():
    point = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 16, "THREAD_SIZE_M": 4,
             "THREAD_SIZE_N": 8, "BLOCK_LAYOUT_Y": 2, "WARP_LAYOUT_X": 4, "SHARED_PREFETCH": 1,
             "REG_PREFETCH": 0, "UNROLL_NUM": 8, "BLOCK_MAPPING": 8, "M_SIZE": 2048, "WARP_SIZE": 32}
    fields = from_legacy(point)
    assert fields == {"BM": 64, "BN": 128, "BK": 16, "TM": 4, "TN": 8, "warps_m": 2,
                      "lanes_n": 4, "shared_stages": 2, "register_prefetch": 0, "kk_unroll": 8,
                      "block_swizzle": 8}
    with pytest.raises(SpecError, match="^MAGIC_KNOB: legacy tuning-config key"):
        from_legacy({"MAGIC_KNOB": 1})


@pytest.mark.parametrize("fields, field", [
    (dict(M=0, N=1, K=1), "M"), (dict(M=1, N=1, K=1, dtype="f64"), "dtype"),
    (dict(M=1, N=1, K=1, layout="NX"), "layout"), (dict(M=1, N=1, K=1, batch=0), "batch"),
    (dict(M=1, N=1, K=1, dtype="f16", allow_tf32=True), "allow_tf32"),
    (dict(M=70000, N=70000, K=1), "C size"),
])
def test_spec_errors_name_field(fields, field):
    with pytest.raises(SpecError) as e:
        GemmSpec(**fields)
    assert str(e.value).startswith(field + ":")


@pytest.mark.parametrize("m, n, k, layout, tile", [
    (1000, 1234, 777, "TN", (128, 64, 2, 2, True)),   # 40 tiles of 256 x 128: 128 x 64
    (1000, 1234, 777, "NN", (64, 64, 4, 2, False)),   # 1234-wide rows: register-staged
    (127, 4097, 33, "NT", (64, 64, 4, 2, False)),
    (4097, 33, 1000, "TN", (64, 64, 4, 2, False)),
])
def test_default_tile_follows_the_odd_shape_measurements(m, n, k, layout, tile):
    """mma_sync's default (H200, tuning_configs/odd_shapes.json): smaller tiles where the large
    ones leave SMs idle; 8 warps on 64 x 64 where copies go through registers."""
    cfg = default_config(GemmSpec(M=m, N=n, K=k, layout=layout, dtype="bf16"))
    assert cfg.strategy == "mma_sync"
    assert (cfg.BM, cfg.BN, cfg.warps_m, cfg.warps_n, cfg.async_copy) == tile


@pytest.mark.parametrize("m, n, k, layout, bk", [
    (4097, 33, 1000, "NN", 64),  # 2 K slices: the measured 64-deep tile
    (1000, 7, 4097, "NN", 32),   # more than 2 K slices (at BK 64: 8, 8 bytes spilled)
    (4097, 33, 7, "NT", 32),     # a K tile past K (at BK 64: 12 bytes spilled)
    (1000, 17, 33, "NN", 32),
])
def test_narrow_staged_tile_halves_its_depth_where_it_spilled(m, n, k, layout, bk):
    """The narrow register-staged default (NARROW_STAGED, 128 x 32) keeps BK 64 except where
    a K tile outruns K or split-K makes more than NARROW_STAGED_MAX_SPLIT slices."""
    from deepgen.compiler.strategies.mma_sync import config as mma
    cfg = default_config(GemmSpec(M=m, N=n, K=k, layout=layout, dtype="bf16"))
    assert (cfg.strategy, cfg.BM, cfg.BN, cfg.async_copy, cfg.BK) == ("mma_sync", 128, 32,
                                                                      False, bk)
    assert bk == 32 or cfg.split_k <= mma.NARROW_STAGED_MAX_SPLIT


def test_large_tiles_stay_where_they_fill_the_gpu():
    from deepgen.compiler.strategies.mma_sync import config as mma
    spec = GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", layout="TN")
    assert (mma.base_tiles(spec, 132)[0].BM, mma.base_tiles(spec, 132)[0].BN) == (256, 128)
    few = GemmSpec(M=1000, N=1234, K=777, dtype="bf16", layout="TN")
    assert mma.base_tiles(few, None)[0].BM == 256  # without a target: the old order
    assert mma.base_tiles(few, 132)[0] == mma.FEW_TILES
