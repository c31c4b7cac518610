"""Tuning-config files: the deepgen-tuning/1 format, its schema, legacy DeepGen files."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from deepgen.compiler.config import TileConfig
from deepgen.spec import GemmSpec
from deepgen.tuner import configfile
from deepgen.tuner.configfile import TuningConfigError

ROOT = Path(__file__).resolve().parents[1]
LEGACY = Path(__file__).parent / "data" / "tuner" / "GEMM_configs_2048.json"
MINIMAL = {"format": "deepgen-tuning/1", "dtype": "f32", "shapes": [{"size": 256}],
           "space": {"BK": [8, 16]}}


def _write(tmp_path, data, name="cfg.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _error(tmp_path, data) -> TuningConfigError:
    path = _write(tmp_path, data)
    with pytest.raises(TuningConfigError) as e:
        configfile.load(path)
    assert str(e.value).startswith(f"{path}: ")  # the file is always named
    return e.value


# -- the native format -------------------------------------------------------------------------

def test_minimal_config_defaults(tmp_path):
    cfg = configfile.load(_write(tmp_path, MINIMAL))
    assert cfg.target == "sm_90a" and cfg.base == "heuristic" and not cfg.legacy
    assert cfg.specs == [GemmSpec(256, 256, 256)]
    assert cfg.space == {"BK": [8, 16]}
    assert cfg.name == "cfg"


def test_shapes_ranges_dtypes_and_layouts_expand(tmp_path):
    data = dict(MINIMAL, dtype=["f16", "bf16"], out_dtype="f32", layouts=["NN", "NT"],
                shapes=[{"size": {"from": 1024, "to": 8192, "times": 2}},
                        {"M": [1, 16], "N": 4096, "K": 4096, "batch": {"from": 1, "to": 3,
                                                                       "step": 2}}],
                space={"BM": {"from": 32, "to": 128, "times": 2}, "register_prefetch": [True]})
    cfg = configfile.load(_write(tmp_path, data))
    sizes = [(s.M, s.N, s.K, s.batch) for s in cfg.specs if s.dtype == "f16" and s.layout == "NN"]
    assert sizes == [(n, n, n, 1) for n in (1024, 2048, 4096, 8192)] + [
        (1, 4096, 4096, 1), (1, 4096, 4096, 3), (16, 4096, 4096, 1), (16, 4096, 4096, 3)]
    assert len(cfg.specs) == 2 * 2 * 8 and {s.out_dtype for s in cfg.specs} == {"f32"}
    assert cfg.space["BM"] == [32, 64, 128]


@pytest.mark.parametrize("change, where, reason", [
    ({"format": "deepgen-tuning/9"}, "$.format", "'deepgen-tuning/1' was expected"),
    ({"dtype": "f64"}, "$.dtype", "f64"),
    ({"space": {"BM": [64, "128"]}}, "$.space.BM[1]", "'128' is not of type 'integer'"),
    ({"space": {"BM": []}}, "$.space.BM", "should be non-empty"),
    ({"space": {"BMM": [64]}}, "$.space", "'BMM' was unexpected"),
    ({"space": {"register_prefetch": [1]}}, "$.space.register_prefetch[0]", "boolean"),
    ({"shapes": [{"M": 64, "N": 64}]}, "$.shapes[0]", "'K' is a required property"),
    ({"shapes": [{"size": 0}]}, "$.shapes[0].size", "less than the minimum of 1"),
    ({"shapes": [{"size": {"from": 8, "to": 64}}]}, "$.shapes[0].size",
     "exactly one of 'times' (geometric) or 'step'"),
    ({"shapes": [{"size": {"from": 64, "to": 8, "times": 2}}]}, "$.shapes[0].size",
     "empty range"),
    ({"shapes": [{"M": 2**20, "N": 2**20, "K": 4}]}, "$.shapes[0]", "C size"),
    ({"layouts": ["NX"]}, "$.layouts[0]", "'NX' is not one of"),
    ({"target": "sm_99"}, "$.target", "unknown target 'sm_99'"),
    ({"extra": 1}, "$", "'extra' was unexpected"),
])
def test_errors_name_file_field_and_reason(tmp_path, change, where, reason):
    e = _error(tmp_path, {**MINIMAL, **change})
    assert e.where == where, e
    assert reason in e.reason, e


def test_unknown_space_field_lists_the_known_ones(tmp_path):
    e = _error(tmp_path, {**MINIMAL, "space": {"BLOCK_M": [64]}})
    assert "BLOCK_M" in e.reason and "warps_m" in e.reason


def test_missing_file_and_broken_json(tmp_path):
    with pytest.raises(TuningConfigError, match="cannot read the file"):
        configfile.load(tmp_path / "nope.json")
    assert "not valid JSON" in _error(tmp_path, "{ broken").reason
    assert "must be a JSON object" in _error(tmp_path, "[1, 2]").reason


def test_a_repeated_key_in_the_native_format_is_an_error(tmp_path):
    text = json.dumps(MINIMAL)[:-1] + ', "dtype": "f16"}'
    e = _error(tmp_path, text)
    assert e.where == "$.dtype" and "more than once" in e.reason


def test_schema_covers_every_tileconfig_field_with_its_type():
    from deepgen.compiler.strategies import GemvConfig, WgmmaConfig

    space = configfile.schema()["properties"]["space"]["properties"]
    kinds = {"int": "ints", "bool": "bools", "str": "strings"}
    want = {}
    # the flat fields, then the own fields of the strategies without a flat lowering
    for cls in (TileConfig, WgmmaConfig, GemvConfig):
        for f in dataclasses.fields(cls):
            kind = kinds[f.type if isinstance(f.type, str) else f.type.__name__]
            assert want.setdefault(f.name, kind) == kind, f"{f.name}: two types"
    want = {"strategy": "strings", **want}  # and the strategy itself
    assert {k: v["$ref"] for k, v in space.items()} == {k: f"#/$defs/{v}"
                                                          for k, v in want.items()}
    assert (ROOT / "tuning_configs" / "schema.json").resolve() == configfile.SCHEMA_FILE


def test_shipped_configs_load():
    files = sorted((ROOT / "tuning_configs").glob("*.json"))
    names = {p.name for p in files}
    assert {"fp32_4096_full.json", "fp32_simt.json", "f16_bf16_simt.json",
            "llm_shapes.json", "batched.json", "wgmma_llm.json", "gemv_decode.json"} <= names
    for path in files:
        if path.name != "schema.json":
            cfg = configfile.load(path)
            assert cfg.specs and cfg.space, path


def test_llm_config_has_the_asked_shapes():
    cfg = configfile.load(ROOT / "tuning_configs" / "llm_shapes.json")
    got = {(s.M, s.N, s.K) for s in cfg.specs}
    assert got == {(m, n, k) for m in (1, 16, 128, 2048, 4096)
                   for n, k in ((4096, 4096), (14336, 4096), (4096, 14336))}


# -- legacy files --------------------------------------------------------------------------

def test_real_legacy_file_maps_onto_tileconfig_fields():
    cfg = configfile.load(LEGACY)
    assert cfg.legacy and cfg.target == "sm_90a"
    assert cfg.specs == [GemmSpec(2048, 2048, 2048, dtype="f32", layout="TN")]
    assert cfg.space["BM"] == [32, 64, 128] and cfg.space["warps_m"] == [1, 2, 4]
    assert cfg.space["lanes_m"] == [8, 4, 16, 2]
    assert cfg.space["shared_stages"] == [1, 2]  # SHARED_PREFETCH 0/1
    assert cfg.space["kk_unroll"] == [8, 16] and cfg.space["block_swizzle"] == [8, 16]
    assert cfg.space["fetch_contiguous"] == [0, 1]
    assert set(cfg.space) <= {f.name for f in dataclasses.fields(TileConfig)}
    assert not {"M_SIZE", "WARP_SIZE", "DATATYPE_A"} & set(cfg.space)


def test_legacy_duplicate_keys_keep_the_last_value_and_say_so(tmp_path):
    cfg = configfile.load(LEGACY)
    assert "BLOCK_SIZE_M appears 2 times; the last value is used" in cfg.notes
    text = LEGACY.read_text().replace('"BLOCK_SIZE_K" : [8,16,32]',
                                      '"BLOCK_SIZE_K" : [8],\n "BLOCK_SIZE_K" : [16, 32]')
    cfg = configfile.load(_write(tmp_path, text))
    assert cfg.space["BK"] == [16, 32]
    assert "BLOCK_SIZE_K appears 2 times; the last value is used" in cfg.notes


def test_legacy_unmappable_key_is_named(tmp_path):
    data = json.loads(LEGACY.read_text())
    data["PIPELINE_DEPTH"] = [2, 3]
    e = _error(tmp_path, data)
    assert e.where == "$.PIPELINE_DEPTH"
    assert "PIPELINE_DEPTH: legacy tuning-config key that DeepGen cannot map" in e.reason


def test_legacy_renamed_keys_batch_and_amd_warp(tmp_path):
    data = {"BLOCK_SIZE_M": [64], "BLOCK_SIZE_N": [64], "BLOCK_SIZE_K": [16],
            "BLOCK_LAYOUT_Y": [2], "BLOCK_LAYOUT_X": [2], "WARP_LAYOUT_Y": [4],
            "WARP_LAYOUT_X": [16], "BLOCK_SCATTER_WIDTH_M": [2], "WARP_SCATTER_WIDTH_N": [4],
            "STORE_CONTINUOUS": [1], "WARP_SIZE": [64], "BATCH_SIZE": [1, 8], "M_SIZE": [512],
            "N_SIZE": [512], "K_SIZE": [512], "DATATYPE_A": [2], "DATATYPE_B": [2],
            "DATATYPE_C": [4]}
    cfg = configfile.load(_write(tmp_path, data))
    assert cfg.target == "gfx942"
    assert [s.batch for s in cfg.specs] == [1, 8]
    assert {(s.dtype, s.out_dtype) for s in cfg.specs} == {("f16", "f32")}
    assert cfg.space["warps_m"] == [2] and cfg.space["lanes_n"] == [16]
    assert cfg.space["thread_scatter_m"] == [2] and cfg.space["reduce_c_contiguous"] == [1]


@pytest.mark.parametrize("change, where, reason", [
    ({"DATATYPE_A": [8]}, "$.DATATYPE_A[0]", "element size 8"),
    ({"DATATYPE_B": [2]}, "$.DATATYPE_B", "differs from DATATYPE_A"),
    ({"WARP_SIZE": [16]}, "$.WARP_SIZE", "must be one of [32, 64]"),
    ({"IS_ATRANS": [2]}, "$.IS_ATRANS[0]", "must be 0 or 1"),
    ({"BLOCK_SIZE_M": ["64"]}, "$.BLOCK_SIZE_M", "list of integers"),
    ({"M_SIZE": None}, "$", "M_SIZE: missing"),
])
def test_legacy_errors(tmp_path, change, where, reason):
    data = json.loads(LEGACY.read_text())
    for k, v in change.items():
        if v is None:
            del data[k]
        else:
            data[k] = v
    e = _error(tmp_path, data)
    assert e.where == where and reason in e.reason, e


def test_target_override(tmp_path):
    assert configfile.load(_write(tmp_path, MINIMAL), target="sm_80").target == "sm_80"
