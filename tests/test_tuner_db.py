"""The tuned database: `deepgen tune install` writes it, deepgen.runtime.tuned.lookup reads it
(exact shape, else, through deepgen.build.tuned_config which supplies the compiler's check,
the nearest comparable tuned shape whose config still validates)."""
from __future__ import annotations

import json

import pytest

from deepgen import cli
from deepgen.build import tuned_config
from deepgen.compiler.config import TileConfig, default_config
from deepgen.runtime import tuned
from deepgen.spec import GemmSpec
from deepgen.tuner import database
from deepgen.tuner.journal import write_json

BIG = TileConfig(BM=128, BN=128, BK=16, block_swizzle=8).to_dict()
SMALL = TileConfig(BM=64, BN=64, BK=16, TM=4, TN=4).to_dict()


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _results(tmp_path, shapes, name="r") -> str:
    d = tmp_path / name
    d.mkdir()
    write_json(d / "results.json", {
        "format": "deepgen-tune-results/1", "name": name, "target": "sm_90a",
        "device": "NVIDIA H100", "shapes": [
            {"key": "k", "spec": spec.to_dict(), "baseline": {"ms": 2.0, "tflops": 50.0},
             "top": [{"config": cfg, "ms": 1.0, "tflops": 60.0}] if cfg else []}
            for spec, cfg in shapes]})
    return str(d)


def _entries(cache_root):
    data = json.loads((cache_root / "tuned.json").read_text())
    assert data["format"] == tuned.FORMAT
    return data["entries"]


def test_install_then_exact_lookup(tmp_path, cache_root, capsys):
    spec = GemmSpec(4096, 4096, 4096)
    d = _results(tmp_path, [(spec, BIG), (GemmSpec(8, 8, 8), None)])
    assert cli.main(["tune", "install", d]) == 0
    assert "installed 1 tuned configs" in capsys.readouterr().out
    (entry,) = _entries(cache_root)
    assert entry["target"] == "sm_90a" and entry["tflops"] == 60.0
    assert entry["baseline_tflops"] == 50.0 and entry["device"] == "NVIDIA H100"
    assert tuned.lookup(spec, "sm_90a") == BIG
    assert tuned.lookup(spec, "sm_80") is None  # another target's winner is not borrowed


def test_install_merges_and_replaces(tmp_path, cache_root):
    a, b = GemmSpec(4096, 4096, 4096), GemmSpec(1024, 1024, 1024)
    cache_root.mkdir()
    keep = {"spec": {"M": 7, "N": 7, "K": 7}, "config": {"BM": 16}, "mine": True}
    (cache_root / "tuned.json").write_text(json.dumps({"format": tuned.FORMAT,
                                                       "entries": [keep]}))
    assert database.install(_results(tmp_path, [(a, BIG)], "one"))[:2] == (1, 0)
    added, replaced, path = database.install(_results(tmp_path, [(a, SMALL), (b, SMALL)], "two"))
    assert (added, replaced) == (1, 1)
    entries = _entries(cache_root)
    assert entries[0] == keep and len(entries) == 3
    assert tuned.lookup(a, "sm_90a") == SMALL and tuned.lookup(b, "sm_90a") == SMALL
    assert sorted(p.name for p in cache_root.iterdir()) == ["tuned.json"]  # atomic, no temp


def test_install_refuses_a_foreign_file(tmp_path, cache_root):
    cache_root.mkdir()
    (cache_root / "tuned.json").write_text('{"format": "other/1"}')
    with pytest.raises(ValueError, match="not a deepgen-tuned/1 database"):
        database.install(_results(tmp_path, [(GemmSpec(64, 64, 64), SMALL)]))


def test_install_needs_results(tmp_path, cache_root, capsys):
    assert cli.main(["tune", "install", str(tmp_path)]) == 1
    assert "no results" in capsys.readouterr().err


def _db(cache_root, entries):
    cache_root.mkdir(exist_ok=True)
    (cache_root / "tuned.json").write_text(json.dumps({"format": tuned.FORMAT,
                                                       "entries": entries}))


def test_nearest_tuned_shape_by_log_distance(cache_root):
    _db(cache_root, [{"spec": GemmSpec(4096, 4096, 4096).to_dict(), "config": BIG},
                     {"spec": GemmSpec(1024, 1024, 1024).to_dict(), "config": SMALL}])
    assert tuned_config(GemmSpec(3000, 3000, 3000)) == BIG
    assert tuned.lookup(GemmSpec(3000, 3000, 3000)) is None  # no validate: no neighbour
    assert tuned.lookup(GemmSpec(3000, 3000, 3000), validate=lambda c, s, t: True) == BIG
    assert tuned_config(GemmSpec(1500, 1500, 1500)) == SMALL
    assert tuned_config(GemmSpec(2048, 4096, 512)) == SMALL  # sum of ln^2: 2.9 vs 4.8
    # Not comparable: another dtype, layout or batched-ness.
    assert tuned_config(GemmSpec(3000, 3000, 3000, dtype="bf16")) is None
    assert tuned_config(GemmSpec(3000, 3000, 3000, layout="NT")) is None
    assert tuned_config(GemmSpec(300, 300, 300, batch=4)) is None


def test_nearest_config_must_validate_for_the_new_shape(cache_root):
    split = TileConfig(BK=16, split_k=16).to_dict()  # needs >= 16 K tiles of 16
    _db(cache_root, [{"spec": GemmSpec(512, 512, 4096).to_dict(), "config": split},
                     {"spec": GemmSpec(512, 512, 16384).to_dict(), "config": BIG}])
    assert tuned_config(GemmSpec(512, 512, 2048)) == split  # 128 K tiles: fine
    # K=128 has 8 K tiles: the nearest (split) does not fit, the next one does.
    assert tuned_config(GemmSpec(512, 512, 128)) == BIG
    vec = TileConfig(load_width_b=4, store_width=4).to_dict()
    _db(cache_root, [{"spec": GemmSpec(512, 512, 512).to_dict(), "config": vec}])
    # N=510 is not a multiple of 4: no tuned config fits; the default heuristic applies.
    assert tuned_config(GemmSpec(512, 510, 512)) is None
    default_config(GemmSpec(512, 510, 512))  # which exists


def test_nearest_prefers_target_specific_entries(cache_root):
    spec = GemmSpec(2048, 2048, 2048).to_dict()
    _db(cache_root, [{"spec": spec, "config": SMALL},
                     {"spec": spec, "target": "sm_90a", "config": BIG}])
    assert tuned_config(GemmSpec(2000, 2000, 2000), "sm_90a") == BIG
    assert tuned_config(GemmSpec(2000, 2000, 2000), "sm_80") == SMALL
