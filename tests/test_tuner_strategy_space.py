"""Spaces of the strategies with their own config fields (wgmma, gemv): points are the
strategy's config, pruned through its validate, deduplicated; the shipped files dry-run; a
compile-only run writes wgmma bundles; a tuned wgmma/gemv config is used for its spec."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepgen import cli
from deepgen.build import config_fits, tuned_config
from deepgen.compiler import strategies
from deepgen.compiler.strategies import GemvConfig, WgmmaConfig
from deepgen.spec import GemmSpec, SpecError
from deepgen.tuner import configfile
from deepgen.tuner import run as run_mod
from deepgen.tuner.manifest import load_index
from deepgen.tuner.space import Space

ROOT = Path(__file__).resolve().parents[1]
# a large GEMM whose default is the cooperative 128x256 (K above wgmma PINGPONG_MAX_K)
BIG = GemmSpec(4096, 4096, 14336, dtype="bf16", layout="NT")
DECODE = GemmSpec(4, 4096, 4096, dtype="bf16", layout="NT")


def walk(spec, values, **kw):
    sp = Space(spec, values, **kw)
    configs = list(sp)
    r = sp.report
    assert r.kept == len(configs) and sum(r.pruned.values()) + r.kept == r.total
    for cfg in configs:  # what resolve gives for the dict is the point itself, valid
        assert strategies.resolve(cfg.to_dict(), spec, sp.target) == cfg
    assert len(set(configs)) == len(configs)
    return configs, r


def test_wgmma_space_points_are_wgmma_configs_over_the_default():
    configs, r = walk(BIG, {"strategy": ["wgmma"], "BN": [128, 256], "stages": [3, 4]})
    assert r.total == 4 and r.kept == 4
    assert all(isinstance(c, WgmmaConfig) for c in configs)
    default = strategies.default_config(BIG, "sm_90a")  # wgmma 128x256, 2 consumers
    assert default.strategy == "wgmma"
    assert {(c.BN, c.stages) for c in configs} == {(128, 3), (128, 4), (256, 3), (256, 4)}
    assert all(c.replace(BN=default.BN, stages=default.stages) == default for c in configs)
    assert configs[0].to_dict()["strategy"] == "wgmma"


def test_wgmma_pruning_names_the_field_and_the_limit():
    _, r = walk(BIG, {"strategy": ["wgmma"], "BM": [128, 256], "consumers": [1, 2],
                      "BN": [256], "stages": [4, 5], "persistent": [False, True],
                      "cluster_m": [1, 2]})
    rules = r.by_rule()
    assert rules["stages: N stages of N bytes (+ barriers) = N bytes exceed the N bytes of "
                 "shared memory per block of sm_90a"] > 0
    assert rules["persistent: clusters with the persistent grid: built for block-scaled fp8 in "
                 "N clusters only"] > 0  # (by_rule writes numbers as N)
    assert any(k.startswith("BN: N slab(s) x BN/N = N accumulator registers") for k in rules)
    assert ("stages: 5 stages of 65536 bytes (+ barriers) = 327760 bytes exceed the 232448 "
            "bytes of shared memory per block of sm_90a") in r.pruned
    lines = r.lines()
    assert lines[0].startswith("4096x4096x14336_bf16_NT: 32 points -> ")


def test_wgmma_tiles_larger_than_the_problem_and_duplicates_are_pruned():
    spec = GemmSpec(128, 14336, 4096, dtype="bf16", layout="NT")
    # BN and stages given: the default there (the narrow 64 x 224 tile in clusters, 6 stages)
    # would not fit 128 rows in shared memory
    configs, r = walk(spec, {"strategy": ["wgmma"], "BM": [128, 256], "BN": [128], "stages": [4],
                             "cluster_m": [1, 2], "group_m": [1, 8, 16],
                             "warp_specialized": [True, False]})
    assert {c.BM for c in configs} == {128} and {c.cluster_m for c in configs} == {1}
    assert {c.group_m for c in configs} == {1}  # one tile row: every group_m is the same
    assert r.pruned["BM: 256 is larger than M=128 needs (at most 128; idle threads)"] == 12
    assert r.pruned["cluster_m: 2 CTAs per cluster on the 1 tile row(s) of M=128 "
                    "(idle CTAs)"] == 6
    assert r.pruned["duplicate: group_m above the 1 tile rows of M=128 walks the same order as "
                    "group_m=1"] == 4
    assert len(configs) == 2
    # 1x2 clusters: the same on one tile column (N = 128 in 128-column tiles)
    narrow = GemmSpec(4096, 128, 4096, dtype="bf16", layout="NT")
    configs, r = walk(narrow, {"strategy": ["wgmma"], "BN": [64, 128], "cluster_n": [1, 2]})
    assert r.pruned["cluster_n: 2 CTAs per cluster on the 1 tile column(s) of N=128 "
                    "(idle CTAs)"] == 1
    assert {(c.BN, c.cluster_n) for c in configs} == {(64, 1), (64, 2), (128, 1)}


def test_wgmma_consumer_registers_follow_ctas_per_sm_unless_listed():
    configs, _ = walk(BIG, {"strategy": ["wgmma"], "BN": [128], "consumers": [1], "stages": [3],
                            "ctas_per_sm": [1, 2]})
    assert [(c.ctas_per_sm, c.consumer_registers) for c in configs] == [(1, 232), (2, 216)]
    configs, r = walk(BIG, {"strategy": ["wgmma"], "BN": [128], "consumers": [1],
                            "stages": [3], "ctas_per_sm": [2], "consumer_registers": [232]})
    assert not configs and list(r.by_rule()) == [
        "consumer_registers: N CTA(s) per SM: N x (N + N x N) = N registers exceed the N x N = "
        "N a CTA of N threads holds (setmaxnreg moves registers only within a CTA)"]


def test_gemv_space_points_are_gemv_configs():
    configs, r = walk(DECODE, {"strategy": ["gemv"], "rows": [1, 2], "warps": [4, 8],
                               "unroll": [4, 8], "split_k": [1, 2]})
    assert r.kept == r.total == 16
    assert all(isinstance(c, GemvConfig) and c.vec == 8 for c in configs)
    spec = GemmSpec(16, 4096, 256, dtype="bf16", layout="NT")
    configs, r = walk(spec, {"strategy": ["gemv"], "rows": [2, 8], "split_k": [1, 4],
                             "vec": [8, 8]})
    assert r.pruned["rows: M x rows = 16 x 8 accumulators exceed 64 per thread; use fewer "
                    "rows"] == 2
    assert r.pruned["split_k: 4 slices exceed the 1 K pieces of 256 elements of K=256"] == 1
    assert r.by_rule()["duplicate: the same point twice"] == 4
    assert [(c.rows, c.split_k) for c in configs] == [(2, 1)]


def test_strategy_space_errors_name_the_field():
    with pytest.raises(SpecError, match=r"^TM: not a field of strategy wgmma"):
        Space(BIG, {"strategy": ["wgmma"], "TM": [4]})
    with pytest.raises(SpecError, match=r"^strategy: 'wgmma' has its own config fields"):
        Space(BIG, {"strategy": ["mma_sync", "wgmma"]})
    with pytest.raises(SpecError, match=r"^stages:"):
        Space(BIG, {"strategy": ["wgmma"], "stages": ["4"]})


def test_fixed_base_starts_from_the_config_class_defaults():
    configs, _ = walk(BIG, {"strategy": ["wgmma"], "stages": [3]}, base="fixed")
    assert configs == [WgmmaConfig(stages=3)]


@pytest.mark.parametrize("name, strategy", [("wgmma_llm.json", "wgmma"),
                                            ("wgmma_decode.json", "wgmma"),
                                            ("gemv_decode.json", "gemv"),
                                            ("fp8_block.json", "wgmma"),
                                            ("quant_llm.json", "wgmma")])
def test_shipped_strategy_files_dry_run(name, strategy, capsys):
    path = ROOT / "tuning_configs" / name
    cfg = configfile.load(path)
    assert cfg.space["strategy"] == [strategy]
    assert cli.main(["tune", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    n = len(cfg.specs)
    assert f" candidates for {n} shapes on sm_90a" in out
    assert out.count(" after pruning (") == n


def test_wgmma_file_has_the_issue_shapes():
    cfg = configfile.load(ROOT / "tuning_configs" / "wgmma_llm.json")
    got = {(s.M, s.N, s.K) for s in cfg.specs}
    want = {(s, s, s) for s in (1024, 4096, 8192)} | {(128, 14336, 4096)} | {
        (m, n, k) for m in (2048, 4096) for n, k in ((4096, 4096), (14336, 4096), (4096, 14336))}
    assert got == want
    assert {(s.dtype, s.layout) for s in cfg.specs} == {(d, l) for d in ("bf16", "f16")
                                                        for l in ("NT", "NN")}


@pytest.mark.parametrize("name, dtype, scale, shapes", [
    ("fp8_block.json", "e4m3", "block", {(m, n, k) for m in (64, 128, 4096) for n, k in (
        (2112, 7168), (24576, 1536), (7168, 16384), (4096, 7168))}),
    ("quant_llm.json", "e4m3", "tensor", {(4096, 4096, 4096), (8192, 8192, 8192),
                                          (2048, 4096, 14336), (16, 4096, 4096)})])
def test_quantized_files_carry_dtype_and_scale_into_their_specs(name, dtype, scale, shapes):
    cfg = configfile.load(ROOT / "tuning_configs" / name)
    assert {(s.M, s.N, s.K) for s in cfg.specs} == shapes
    assert {(s.dtype, s.out_dtype, s.scale, s.layout) for s in cfg.specs} == {
        (dtype, "bf16", scale, "NT")}


def test_a_quantized_config_names_a_bad_scale(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"format": "deepgen-tuning/1", "dtype": "e4m3",
                                "out_dtype": "bf16", "scale": "per-row", "layouts": ["NT"],
                                "shapes": [{"size": 512}], "space": {"strategy": ["wgmma"]}}))
    with pytest.raises(configfile.TuningConfigError, match=r"\$\.scale: 'per-row' is not one of"):
        configfile.load(path)


def test_compile_only_block_fp8_space_writes_scaled_bundles(tmp_path):
    """A block-scaled candidate's bundle holds the scale operands in its signature (what the
    GPU worker passes: runtime/measure.scale_operands)."""
    path = tmp_path / "b.json"
    path.write_text(json.dumps({
        "format": "deepgen-tuning/1", "name": "tiny-block", "dtype": "e4m3", "out_dtype": "bf16",
        "scale": "block", "layouts": ["NT"], "shapes": [{"M": 256, "N": 256, "K": 512}],
        "space": {"strategy": ["wgmma"], "smem_scales": [False, True]}}))
    out = tmp_path / "b"
    opts = run_mod.Options(out=out, workers=2, progress=False, compile_only=True)
    assert run_mod.tune(path, opts) == 0
    _index, cands = load_index(out)
    assert {c.config["smem_scales"] for c in cands} == {False, True}  # (and the default)
    for c in cands:
        assert c.compile["ok"], c.compile
        meta = json.loads((out / c.dir / "kernel.json").read_text())
        names = [p["name"] for p in meta["launches"][0]["params"]]
        assert {"scale_a", "scale_b"} <= set(names), names


def test_compile_only_wgmma_space_writes_wgmma_bundles(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({
        "format": "deepgen-tuning/1", "name": "tiny-wgmma", "dtype": "bf16", "layouts": ["NT"],
        "shapes": [{"size": 512}], "space": {"strategy": ["wgmma"], "BN": [128], "BM": [128],
                                             "consumers": [1], "stages": [3, 4]}}))
    out = tmp_path / "b"
    opts = run_mod.Options(out=out, workers=2, progress=False, compile_only=True)
    assert run_mod.tune(path, opts) == 0
    index, cands = load_index(out)
    assert index["shapes"][0]["space"]["kept"] == 2
    wgmma = [c for c in cands if c.config["strategy"] == "wgmma"]
    assert len(wgmma) == 2
    for c in wgmma:
        assert c.compile["ok"], c.compile
        meta = json.loads((out / c.dir / "kernel.json").read_text())
        assert meta["config"]["strategy"] == "wgmma" and meta["config"] == c.config
        assert (out / c.dir / "kernel.cubin").exists()


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache"


def _db(root, entries):
    (root / "tuned.json").write_text(json.dumps({"format": "deepgen-tuned/1",
                                                 "entries": entries}))


def test_tuned_wgmma_and_gemv_configs_are_used(cache_root):
    w = WgmmaConfig(BM=128, BN=128, stages=3, consumers=1, persistent=True,
                    group_m=16).to_dict()
    g = GemvConfig(rows=4, warps=8, split_k=2, vec=8, unroll=2).to_dict()
    _db(cache_root, [{"spec": BIG.to_dict(), "target": "sm_90a", "config": w},
                     {"spec": DECODE.to_dict(), "target": "sm_90a", "config": g}])
    assert tuned_config(BIG, "sm_90a") == w
    assert tuned_config(DECODE, "sm_90a") == g
    # neighbours: validated through the strategy (no flat lowering needed)
    assert config_fits(w, GemmSpec(4000, 4096, 4096, dtype="bf16", layout="NT"), "sm_90a")
    assert tuned_config(GemmSpec(4096, 4096, 2048, dtype="bf16", layout="NT"), "sm_90a") == w
    assert tuned_config(GemmSpec(2, 4096, 4096, dtype="bf16", layout="NT"), "sm_90a") == g
    # a wgmma config does not fit where TMA cannot load (K of 4100 bf16 is 8200 bytes: fine;
    # K of 4097 is not 16-byte aligned): the nearest entry is skipped
    assert not config_fits(w, GemmSpec(4096, 4096, 4097, dtype="bf16", layout="NT"), "sm_90a")
    assert not config_fits(g, GemmSpec(64, 4096, 4096, dtype="bf16", layout="NT"), "sm_90a")
