"""Strategies: each config's validation (errors name field and limit), the default heuristic's
choice, legacy flat configs and keys, partial configs completed by the strategy, pipelines."""
import pytest

from deepgen.compiler import strategies
from deepgen.compiler.config import TileConfig, from_legacy
from deepgen.compiler.strategies import MmaSyncConfig, SimtConfig
from deepgen.compiler.target import get_target
from deepgen.spec import GemmSpec, SpecError

F32 = GemmSpec(M=4096, N=4096, K=4096)
BF16 = GemmSpec(M=4096, N=4096, K=4096, dtype="bf16")
H100 = get_target("sm_90a")
PARTIAL = {"BM": 128, "BN": 128, "BK": 32, "mma": "m16n8k16", "warps_m": 2, "warps_n": 2}


def test_registry_and_what_a_strategy_provides():
    assert {"simt", "mma_sync", "gemv"} <= set(strategies.STRATEGIES)
    for name in ("simt", "mma_sync"):  # gemv (small M): tests/test_gemv.py
        s = strategies.get(name)
        assert s.name == name == s.config_class.strategy
        cfg = s.default_config(BF16, H100)
        assert cfg.to_dict()["strategy"] == name
        assert set(s.estimates(cfg, BF16)) == {"shared_bytes", "registers"}
        assert s.pipeline(cfg)[0] == "deepgen-gemm-to-affine"
        assert s.config_class.from_dict(cfg.to_dict()) == cfg  # round trip
    assert "deepgen-mma-sync-pipeline" in strategies.get("mma_sync").pipeline(MmaSyncConfig())
    assert "deepgen-pipeline" in strategies.get("simt").pipeline(SimtConfig())
    # each config holds its own fields only
    assert not {"TM", "TN", "lanes_m", "thread_scatter_m"} & set(MmaSyncConfig.field_names())
    assert not {"mma", "async_copy", "smem_swizzle", "epilogue_smem"} & set(SimtConfig.field_names())


@pytest.mark.parametrize("spec, target, name", [
    (F32, "sm_90a", "simt"),
    (BF16, "sm_90a", "wgmma"),  # large: measured faster (wgmma/config.py preferred)
    (GemmSpec(M=128, N=4096, K=4096, dtype="bf16"), "sm_90a", "wgmma"),  # swap_ab, 64-row tiles
    (GemmSpec(M=128, N=1024, K=4096, dtype="bf16"), "sm_90a", "mma_sync"),  # not measured
    (BF16, "sm_80", "mma_sync"),
    (GemmSpec(M=64, N=64, K=64, dtype="f16"), "sm_80", "mma_sync"),
    (GemmSpec(M=64, N=64, K=64, allow_tf32=True), "sm_90a", "mma_sync"),
    (BF16, "gfx942", "simt"),  # AMD: the SIMT path
    (GemmSpec(M=64, N=64, K=64, dtype="f16"), "gfx90a", "simt"),
])
def test_default_heuristic_picks_the_strategy(spec, target, name):
    assert strategies.choose(spec, target).name == name
    cfg = strategies.default_config(spec, target)
    assert cfg.strategy == name
    strategies.validate(cfg, spec, target)


@pytest.mark.parametrize("cfg, spec, field, words", [
    (SimtConfig(BM=64), F32, "BM", "warps_m*lanes_m*TM = 128"),
    (SimtConfig(lanes_m=4), F32, "lanes_m*lanes_n", "warp size 32"),
    (SimtConfig(shared_stages=3), F32, "shared_stages", "must be 1 to 2"),
    (SimtConfig(TM=16, TN=16, BM=256, BN=256), F32, "registers", "limit 255"),
    (MmaSyncConfig(BM=96), BF16, "BM", "power of two"),
    (MmaSyncConfig(BK=8), BF16, "BK", "MMA depth 16"),
    (MmaSyncConfig(), F32, "mma", "f16 or bf16"),
    (MmaSyncConfig(store_width=4), BF16, "store_width", "1 or 2"),
    (MmaSyncConfig(smem_swizzle=True, smem_pad=8), BF16, "smem_pad", "must be 0"),
    (MmaSyncConfig(shared_stages=5, async_copy=True), BF16, "shared_stages", "1 to 4"),
    (MmaSyncConfig(BM=256, BN=256, BK=128, shared_stages=4, async_copy=True, warps_m=4,
                   warps_n=4), BF16, "shared memory", "limit 232448"),
    (MmaSyncConfig(split_k=1000), BF16, "split_k", "128 K tiles"),
])
def test_strategy_validation_names_field_and_limit(cfg, spec, field, words):
    with pytest.raises(SpecError) as e:
        strategies.validate(cfg, spec, H100)
    assert str(e.value).startswith(field + ":"), str(e.value)
    assert words in str(e.value), str(e.value)


def test_mma_sync_is_refused_off_nvidia_ampere():
    with pytest.raises(SpecError, match="^mma: mma.sync needs an NVIDIA GPU of sm_80"):
        strategies.validate(MmaSyncConfig(), BF16, "gfx942")


def test_legacy_flat_configs_map_to_their_strategy():
    flat_simt = TileConfig(BM=64, BN=64, BK=16, TM=4, TN=4).to_dict()
    cfg = strategies.resolve(flat_simt, F32)
    assert isinstance(cfg, SimtConfig) and cfg.lowering() == TileConfig.from_dict(flat_simt)
    default_tc = strategies.get("mma_sync").default_config(BF16, H100)
    flat_tc = default_tc.lowering().to_dict()  # a tuned entry / bundle of the old format
    assert "strategy" not in flat_tc and flat_tc["mma"] == "m16n8k16"
    assert strategies.resolve(flat_tc, BF16) == default_tc
    # tensor-core fields without "mma": mma_sync; with mma "none": named
    assert strategies.resolve({"async_copy": True}, BF16).strategy == "mma_sync"
    with pytest.raises(SpecError, match="^async_copy: .*tensor-core path"):
        strategies.resolve({"mma": "none", "async_copy": True}, BF16)
    # a TileConfig object is read as a whole
    assert strategies.resolve(TileConfig(split_k=4), F32) == SimtConfig(split_k=4)
    # a strategy dict's lowering: what TileConfig.from_dict gives for the tile attribute
    assert TileConfig.from_dict(default_tc.to_dict()) == default_tc.lowering()


def test_unknown_strategy_and_fields_are_named():
    with pytest.raises(SpecError, match="^strategy: unknown strategy 'tcgen05'"):
        strategies.resolve({"strategy": "tcgen05"}, BF16)
    with pytest.raises(SpecError, match="^TM: not a mma_sync config field"):
        strategies.resolve({"strategy": "mma_sync", "TM": 4}, BF16)
    with pytest.raises(SpecError, match="^BM: must be an int"):
        strategies.resolve({"strategy": "simt", "BM": "64"}, F32)


def test_partial_tensor_core_dict_is_completed_from_the_given_fields():
    cfg = strategies.resolve(PARTIAL, BF16, H100)
    assert isinstance(cfg, MmaSyncConfig)
    assert (cfg.BM, cfg.BN, cfg.BK, cfg.warps_m, cfg.warps_n) == (128, 128, 32, 2, 2)
    assert cfg.store_width == 8 and cfg.epilogue_smem and cfg.async_copy  # followed
    # narrow C rows: store_width follows the shape instead of failing
    narrow = GemmSpec(M=256, N=258, K=256, dtype="bf16")
    assert strategies.resolve(PARTIAL, narrow, H100).store_width == 2
    # a given field is kept, and validated
    with pytest.raises(SpecError, match="^store_width: an MMA accumulator"):
        strategies.resolve(dict(PARTIAL, store_width=8, epilogue_smem=False), BF16, H100)
    # the same with an explicit strategy
    same = strategies.resolve({"strategy": "mma_sync", **{k: v for k, v in PARTIAL.items()}},
                              BF16, H100)
    assert same == cfg


def test_partial_simt_dict_derives_the_thread_arrangement():
    cfg = strategies.resolve({"strategy": "simt", "BM": 64, "BN": 64}, F32)
    assert cfg.BM == cfg.warps_m * cfg.lanes_m * cfg.TM == 64
    cfg = strategies.resolve({"BM": 64, "TM": 4}, F32)  # legacy flat, partial
    assert (cfg.BM, cfg.TM, cfg.warps_m) == (64, 4, 2)
    assert strategies.resolve({}, BF16) == strategies.default_config(BF16, H100)


def test_partial_tensor_core_dict_compiles_to_ptx():
    from deepgen.compiler import compile_artifact

    art = compile_artifact(BF16, PARTIAL, keep_ir=False)
    assert art.config["strategy"] == "mma_sync" and art.config["store_width"] == 8
    assert "mma.sync.aligned.m16n8k16" in art.assembly and "cp.async" in art.assembly


def test_legacy_keys_are_the_simt_strategys():
    assert strategies.get("simt").legacy_keys["BLOCK_SIZE_M"] == "BM"
    fields = from_legacy({"BLOCK_SIZE_M": 64, "THREAD_SIZE_M": 4, "SHARED_PREFETCH": 0})
    assert fields == {"BM": 64, "TM": 4, "shared_stages": 1}
    assert set(fields) <= set(SimtConfig.field_names())
