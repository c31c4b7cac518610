"""Tuning range kernels (issue 17) on the CPU: a config whose shape's M is a range is read as
the range spec, enumerated over the range path's wgmma configs, compiled (compile-only: real
compiles), benchmarked by a fake GPU worker at min / geometric middle / max, and installed
under the key deepgen/range_table.py looks up; the GPU worker's range path with a fake
measure module."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import tuner_fakes as fakes
from deepgen.runtime import tuned

from deepgen import range_table
from deepgen.dims import Dim
from deepgen.spec import GemmSpec, SpecError
from deepgen.tuner import configfile, database, ranges
from deepgen.tuner import run as run_mod
from deepgen.tuner.manifest import load_index
from deepgen.tuner.run import Options

RANGE = {"format": "deepgen-tuning/1", "name": "range", "dtype": "bf16", "layouts": ["NT"],
         "shapes": [{"M": {"max": 256, "min": 65}, "N": 256, "K": 128}],
         "space": {"strategy": ["wgmma"], "BN": [64, 128], "stages": [2, 4]}}


def _config(tmp_path, **changes) -> Path:
    path = tmp_path / "range.json"
    path.write_text(json.dumps({**RANGE, **changes}))
    return path


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPGEN_MAX_M", raising=False)
    return tmp_path / "cache"


def test_a_range_shape_is_the_range_spec(tmp_path):
    cfg = configfile.load(_config(tmp_path, shapes=[
        {"M": {"max": 2048, "min": 257}, "N": 4096, "K": 4096}, {"M": 16, "N": 64, "K": 64}]))
    assert [s.M for s in cfg.specs] == [Dim(max=2048, min=257), 16]
    # the key range_table looks up for any M of the range
    assert cfg.specs[0] == range_table.range_spec(GemmSpec(M=300, N=4096, K=4096,
                                                           dtype="bf16", layout="NT"))


@pytest.mark.parametrize("M, where, message", [
    ({"max": 64, "min": 65}, "$.shapes[0].M", "M.min: 65 exceeds M.max 64"),
    ({"max": 0}, "$.shapes[0].M.max", "less than the minimum of 1"),
    ({"max": 64, "from": 1}, "$.shapes[0].M", ""),
])
def test_bad_range_names_the_place(tmp_path, M, where, message):
    with pytest.raises(configfile.TuningConfigError) as e:
        configfile.load(_config(tmp_path, shapes=[{"M": M, "N": 64, "K": 64}]))
    assert (e.value.where, message in e.value.reason) == (where, True), e.value


def test_sample_ms():
    assert ranges.sample_ms(Dim(max=2048, min=257)) == [257, 725, 2048]
    assert ranges.sample_ms(Dim(max=16)) == [1, 4, 16]
    assert ranges.sample_ms(Dim(max=64, min=64)) == [64]
    assert ranges.sample_ms(Dim(max=100, min=3, multiple_of=8)) == [8, 24, 96]
    assert ranges.geomean([1.0, 4.0]) == pytest.approx(2.0)


def test_range_space_takes_the_range_paths_configs():
    spec = GemmSpec(M=Dim(max=256, min=65), N=256, K=128, dtype="bf16", layout="NT")
    walk = ranges.RangeSpace(spec, {"strategy": ["wgmma"], "BN": [128],
                                    "swap_ab": [False, True]})
    kept = list(walk)
    assert kept and all(not c.swap_ab and c.split_k == 1 for c in kept)
    assert walk.report.kept == len(kept) and walk.report.shape.startswith("65..256x256x128")
    assert any("swap_ab: with a range M" in r for r in walk.report.pruned)
    with pytest.raises(SpecError, match='space must name "strategy": \\["wgmma"\\]'):
        ranges.RangeSpace(spec, {"BN": [64]})


@pytest.fixture(scope="module")
def range_bundle(tmp_path_factory) -> Path:
    pytest.importorskip("deepgen.compiler")
    tmp = tmp_path_factory.mktemp("range")
    out = tmp / "b"
    assert run_mod.tune(_config(tmp), Options(out=out, workers=2, progress=False,
                                              compile_only=True)) == 0
    return out


def test_range_config_compiles_range_kernels(range_bundle):
    index, cands = load_index(range_bundle)
    (shape,) = index["shapes"]
    assert shape["key"].startswith("65..256x256x128_bf16") and shape["space"]["kept"] == 4
    assert len(cands) == 5 and sum(c.default for c in cands) == 1  # + the range default
    for c in cands:
        assert c.spec.M == Dim(max=256, min=65) and c.compile.get("ok"), c.compile
        meta = json.loads((range_bundle / c.dir / "kernel.json").read_text())
        assert meta["spec"]["M"] == {"max": 256, "multiple_of": 1, "min": 65}
        assert meta["config"]["strategy"] == "wgmma" and not meta["config"]["swap_ab"]
        params = [p["name"] for l in meta["launches"] for p in l["params"]]
        assert "M" in params  # M is a kernel argument: one binary for the range


def test_range_winner_installs_under_the_range_tables_key(range_bundle, tmp_path, cache_root):
    out = tmp_path / "results"
    assert run_mod.bench(range_bundle, out, Options(
        out=out, progress=False, bench_worker=(fakes.bench_fn_range, fakes.bench_init))) == 0
    res = json.loads((out / "results.json").read_text())
    (sh,) = res["shapes"]
    best = sh["top"][0]
    assert best["config"]["BN"] == 128 and best["config"]["stages"] == 4
    assert [p["M"] for p in best["points"]] == [65, 129, 256]  # min, geometric middle, max
    assert best["ms"] == pytest.approx(ranges.geomean(p["ms"] for p in best["points"]))
    assert sh["baseline"]["ms"] == 1.0 and sh["baseline"]["tflops"] == 2.0
    added, _, path = database.install(out)
    assert added == 1
    (entry,) = json.loads(path.read_text())["entries"]
    assert [set(p) >= {"M", "ms", "baseline_ms"} for p in entry["points"]] == [True] * 3
    for M in (65, 100, 256):  # every M of the range: range_table's key finds the winner
        rspec = range_table.range_spec(GemmSpec(M=M, N=256, K=128, dtype="bf16",
                                                layout="NT"))
        assert tuned.lookup(rspec, "sm_90a") == best["config"]
    other = range_table.range_spec(GemmSpec(M=300, N=256, K=128, dtype="bf16", layout="NT"))
    assert tuned.lookup(other, "sm_90a") is None
    # an exact spec borrows no range entry's config (and the range entry breaks nothing)
    exact = GemmSpec(M=100, N=256, K=128, dtype="bf16", layout="NT")
    assert tuned.lookup(exact, "sm_90a", validate=lambda c, s, t: True) is None


def test_bench_task_times_a_range_at_each_sampled_m(monkeypatch):
    """The GPU worker's range path (benching.bench_task -> ranges.bench_range) with a fake
    measure module: checked and timed at min / middle / max, geometric means; wrong at one
    M is wrong."""
    from deepgen.runtime import measure

    from deepgen import runtime
    from deepgen.tuner import benching

    calls = []

    class Bound:
        def __init__(self, M):
            self.M = M

        def __call__(self, a, b, c):
            calls.append(("run", self.M))

    class FakeRange:
        def for_m(self, M):
            return Bound(M)

    wrong_at = {"M": None}
    monkeypatch.setattr(runtime, "load", lambda d: FakeRange())
    monkeypatch.setattr(measure, "input_sets", lambda spec: [("a", spec.M)])
    monkeypatch.setattr(measure, "torch_baseline", lambda spec: ("torch", spec.M))
    monkeypatch.setattr(measure, "operand", lambda spec, name: None)
    monkeypatch.setattr(measure, "check", lambda k, spec: 1.0 if spec.M == wrong_at["M"]
                        else 1e-4)

    def time_ms(fn, sets):
        if isinstance(fn, tuple):
            return 2.0
        fn("a", "b")
        return calls[-1][1] / 100

    monkeypatch.setattr(measure, "time_ms", time_ms)
    spec = GemmSpec(M=Dim(max=400, min=25), N=256, K=128, dtype="bf16", layout="NT")
    task = {"id": "x", "dir": "d", "spec": spec.to_dict()}
    state = {"gpu": 0, "device": "Fake GPU", "shape": None}
    rec = benching.bench_task(task, state)
    assert rec["ok"] and [p["M"] for p in rec["points"]] == [25, 100, 400]
    assert rec["ms"] == pytest.approx(1.0) and rec["baseline_ms"] == pytest.approx(2.0)
    assert rec["vs_baseline"] == pytest.approx(2.0)
    wrong_at["M"] = 100
    rec = benching.bench_task(task, state)
    assert not rec["ok"] and rec["wrong"] and "at M=100" in rec["error"]
