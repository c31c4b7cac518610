"""The tuned database DeepGen ships for the H200 (runtime/data, runtime/shipped_db.py, built by
deepgen/tuner/shipped.py) and the routing per M range to range kernels (deepgen.routing):
the build is deterministic and keeps only checked results, a broken shipped file is ignored
with a warning, the user's entry wins over the shipped one, another GPU does not use it."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from deepgen.runtime import cache, shipped_db, tuned

import deepgen
from deepgen import api, range_table
from deepgen import routing as optimize
from deepgen.dims import Dim
from deepgen.spec import GemmSpec
from deepgen.tuner import shipped

H200 = "NVIDIA H200"


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPGEN_DEVICE_NAME", raising=False)
    monkeypatch.delenv("DEEPGEN_SHIPPED_DB", raising=False)
    monkeypatch.delenv("DEEPGEN_DISABLE", raising=False)
    shipped_db.clear()
    optimize.reset()
    cache.clear_memory()
    yield
    shipped_db.clear()
    optimize.reset()


def spec_of(M, N=256, K=128, dtype="bf16"):
    return GemmSpec(M=M, N=N, K=K, dtype=dtype, layout="NT")


def _ship(directory, entries, device=H200, target="sm_90a", name="tuned-test.json"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps({
        "format": "deepgen-tuned/1", "shipped": {"target": target, "device": device},
        "entries": entries}))


def _user(entries):
    root = cache.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    (root / "tuned.json").write_text(json.dumps({"format": "deepgen-tuned/1",
                                                 "entries": entries}))


def _e(spec, ms, base, config=None, device=H200, **extra):
    return {"spec": spec.to_dict(), "target": "sm_90a", "device": device, "ms": ms,
            "baseline_ms": base, "config": config or {"strategy": "wgmma", "BM": 128}, **extra}


@pytest.fixture
def ship_dir(tmp_path, monkeypatch):
    d = tmp_path / "shipped"
    monkeypatch.setattr(shipped_db, "DATA_DIR", d)
    return d


# -- the build script ------------------------------------------------------------------------

def test_committed_database_is_what_the_script_builds():
    """Deterministic (input order does not matter) and equal to the committed file."""
    validate = shipped._validator()
    committed = json.loads(shipped.DEFAULT_OUT.read_text())
    # the inputs it records (results committed later join at its next build)
    inputs = [shipped.ROOT / i["file"] for i in committed["shipped"]["inputs"]]
    assert inputs and set(inputs) <= set(shipped.default_inputs())
    one = shipped.dumps(shipped.build(inputs, validate=validate))
    two = shipped.dumps(shipped.build(list(reversed(inputs)), validate=validate))
    assert one == two
    if validate is not None:  # the committed file was built with the compiler's validation
        assert shipped.DEFAULT_OUT.read_text() == one
    db = json.loads(one)
    assert db["shipped"]["device"] == H200 and db["shipped"]["target"] == "sm_90a"
    assert all(e["source"].startswith("benchmarks/results/") and e["device"] == H200
               and e["ms"] > 0 and e["baseline_ms"] > 0 for e in db["entries"])
    assert {i["file"] for i in db["shipped"]["inputs"]} >= {
        "benchmarks/results/tune_odd_shapes-h200-2026-12-02.json"}
    assert "installed" not in one  # no timestamps of the build


def test_build_keeps_only_checked_results_of_the_device(tmp_path):
    spec = {"M": 4, "N": 4096, "K": 4096, "dtype": "bf16", "layout": "NT"}
    decode = {"format": "deepgen-decode-suite/1", "date": "2026-12-02T01:00:00",
              "device": H200, "results": [{
                  **spec, "name": "bf16-4x4096x4096", "runners": {
                      "fast_wrong": {"config": {"strategy": "gemv", "rows": 4}, "ms": 0.001,
                                     "check": "wrong"},
                      "default": {"config": {"strategy": "gemv", "rows": 2}, "ms": 0.012,
                                  "check": "ok"},
                      "cublas": {"ms": 0.013, "check": "ok"}}}]}
    suite = {"format": "deepgen-gemm-suite/1", "date": "2026-12-02T02:00:00", "device": H200,
             "results": [{"name": "bad", "spec": {**spec, "M": 1024}, "config": {"BM": 1},
                          "deepgen_check": "wrong", "torch_check": "ok", "deepgen_ms": 0.1,
                          "torch_ms": 0.2}]}
    other = {**decode, "device": "NVIDIA H100 80GB HBM3"}
    paths = []
    for name, data in (("d.json", decode), ("s.json", suite), ("o.json", other)):
        (tmp_path / name).write_text(json.dumps(data))
        paths.append(tmp_path / name)
    db = shipped.build(paths)
    (e,) = db["entries"]
    assert e["config"] == {"strategy": "gemv", "rows": 2} and e["source_key"].endswith(":default")
    assert (e["ms"], e["baseline_ms"]) == (0.012, 0.013)
    dropped = " ".join(db["shipped"]["dropped"])
    assert "check not ok" in dropped and "NVIDIA H100" in dropped
    # a validator that refuses it leaves it out, counted
    db = shipped.build(paths, validate=lambda c, s, t: False)
    assert db["entries"] == [] and "no longer validates" in " ".join(db["shipped"]["dropped"])


def test_build_keeps_a_range_entry_with_its_points(tmp_path):
    """A range problem's tune result (tuner/ranges.py: M a range, the best candidate's
    "points") ships with its points; routing then sends that M range to the range kernel."""
    rspec = range_table.range_spec(spec_of(40))
    points = [{"M": 17, "ms": 0.020, "baseline_ms": 0.030, "rel_err": 1e-3},
              {"M": 64, "ms": 0.025, "baseline_ms": 0.030, "rel_err": 1e-3}]
    res = {"format": "deepgen-tune-results/1", "updated": "2026-12-03 00:00:00",
           "device": H200, "target": "sm_90a", "shapes": [
               {"key": "range", "spec": rspec.to_dict(), "baseline": {"ms": 0.03},
                "top": [{"config": {"strategy": "wgmma"}, "ms": 0.022, "points": points}]},
               {"key": "range-no-points", "spec": range_table.range_spec(
                   spec_of(300)).to_dict(), "baseline": {"ms": 0.03},
                "top": [{"config": {"strategy": "wgmma"}, "ms": 0.022}]}]}
    (tmp_path / "r.json").write_text(json.dumps(res))
    db = shipped.build([tmp_path / "r.json"])
    (e,) = db["entries"]
    assert e["points"] == [{k: p[k] for k in ("M", "ms", "baseline_ms")} for p in points]
    assert e["tflops"] is None and "range-no-points" in " ".join(db["shipped"]["dropped"])
    ship = tmp_path / "ship"
    ship.mkdir()
    (ship / "tuned-r.json").write_text(shipped.dumps(db))
    import deepgen.runtime.shipped_db as sdb

    saved = sdb.DATA_DIR
    sdb.DATA_DIR = ship
    try:
        assert optimize.route_of(spec_of(33), "sm_90a", H200) == "range"
    finally:
        sdb.DATA_DIR = saved


def test_package_data_is_in_the_wheel():
    """scikit-build-core copies every file of the package folders that git does not ignore."""
    path = shipped_db.DATA_DIR / "tuned-sm_90a-h200.json"
    assert path.is_file() and shipped_db.parse(path)["device"] == H200
    pathutil = pytest.importorskip("scikit_build_core.build._pathutil")
    try:
        files = {str(t) for _, t in pathutil.iter_package_files(
            packages={"deepgen/runtime": str(shipped.ROOT / "runtime")}, include=[],
            src_exclude=[], target_exclude=["**/__pycache__"], build_dir="build",
            mode="default")}
    except TypeError:
        pytest.skip("another scikit-build-core: iter_package_files' arguments differ")
    assert "deepgen/runtime/data/tuned-sm_90a-h200.json" in files


# -- shipped_db and the tuned lookup -----------------------------------------------------------

def test_shipped_entry_used_on_its_gpu_only(ship_dir, monkeypatch):
    _ship(ship_dir, [_e(spec_of(64), 0.01, 0.02, {"strategy": "wgmma", "BM": 64})])
    assert tuned.lookup(spec_of(64), "sm_90a") is None  # no GPU here: device unknown
    monkeypatch.setenv("DEEPGEN_DEVICE_NAME", H200)
    assert tuned.lookup(spec_of(64), "sm_90a") == {"strategy": "wgmma", "BM": 64}
    assert tuned.find(spec_of(64), "sm_90a")[1:] == ("shipped", str(ship_dir /
                                                                    "tuned-test.json"))
    assert tuned.lookup(spec_of(64), "sm_80") is None  # another target
    assert tuned.lookup(spec_of(65), "sm_90a") is None  # own spec only: no neighbours
    monkeypatch.setenv("DEEPGEN_DEVICE_NAME", "NVIDIA H100 80GB HBM3")
    assert tuned.lookup(spec_of(64), "sm_90a") is None  # another GPU name
    monkeypatch.setenv("DEEPGEN_DEVICE_NAME", H200)
    monkeypatch.setenv("DEEPGEN_SHIPPED_DB", "0")
    assert tuned.lookup(spec_of(64), "sm_90a") is None  # switched off
    monkeypatch.delenv("DEEPGEN_SHIPPED_DB")
    # a config that does not validate here is not taken (validate given, as deepgen.gemm does)
    assert tuned.lookup(spec_of(64), "sm_90a", validate=lambda c, s, t: False) is None


def test_user_entry_wins_over_the_shipped_one(ship_dir, monkeypatch):
    monkeypatch.setenv("DEEPGEN_DEVICE_NAME", H200)
    _ship(ship_dir, [_e(spec_of(64), 0.01, 0.02, {"strategy": "wgmma", "BM": 64})])
    _user([_e(spec_of(64), 0.03, 0.02, {"strategy": "mma_sync", "BM": 32})])
    assert tuned.lookup(spec_of(64), "sm_90a") == {"strategy": "mma_sync", "BM": 32}
    assert tuned.find(spec_of(64), "sm_90a")[1] == "user"
    # routing: the user's entry in that M range says torch is faster: no route
    assert not optimize.wins(spec_of(64), "sm_90a", H200)
    assert optimize.database_entry(spec_of(64), "sm_90a", H200)["origin"] == "user"


def test_a_heuristic_entry_is_evidence_for_routing_but_does_not_pick_the_config(ship_dir,
                                                                               monkeypatch):
    """A suite's default runner (the heuristic of its day) ships as routing's evidence only:
    deepgen.gemm keeps today's heuristic for the spec, optimize still reads the times."""
    monkeypatch.setenv("DEEPGEN_DEVICE_NAME", H200)
    _ship(ship_dir, [{**_e(spec_of(64), 0.01, 0.02, {"strategy": "mma_sync", "BM": 64}),
                      "heuristic": True}])
    assert tuned.lookup(spec_of(64), "sm_90a") is None
    assert tuned.find(spec_of(64), "sm_90a") is None
    assert optimize.wins(spec_of(64), "sm_90a", H200)


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "other"}),
                                     json.dumps({"format": "deepgen-tuned/1",
                                                 "entries": []}),  # no shipped header
                                     json.dumps({"format": "deepgen-tuned/1",
                                                 "shipped": {"target": "sm_90a",
                                                             "device": H200},
                                                 "entries": [{"spec": {"M": -1}}]})])
def test_a_broken_shipped_file_is_ignored_with_a_warning(ship_dir, monkeypatch, content):
    monkeypatch.setenv("DEEPGEN_DEVICE_NAME", H200)
    ship_dir.mkdir()
    (ship_dir / "tuned-broken.json").write_text(content)
    _ship(ship_dir, [_e(spec_of(64), 0.01, 0.02)], name="tuned-good.json")
    with pytest.warns(UserWarning, match="ignoring the shipped tuned database"):
        found = tuned.lookup(spec_of(64), "sm_90a")
    assert found == {"strategy": "wgmma", "BM": 128}  # the good file still counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: not again
        assert tuned.lookup(spec_of(64), "sm_90a") == found
        assert optimize.wins(spec_of(64), "sm_90a", H200)


def test_routing_uses_the_shipped_database_on_its_gpu(ship_dir):
    _ship(ship_dir, [_e(spec_of(4096), 0.05, 0.07), _e(spec_of(128), 0.02, 0.01)])
    assert optimize.wins(spec_of(3000), "sm_90a", H200)
    assert not optimize.wins(spec_of(3000), "sm_90a", "NVIDIA H100 80GB HBM3")
    assert not optimize.wins(spec_of(3000), "sm_90a", None)  # unknown GPU: not shipped's
    assert not optimize.wins(spec_of(100), "sm_90a", H200)  # DeepGen slower there
    info = optimize.database_entry(spec_of(4096), "sm_90a", H200)
    assert info["origin"] == "shipped" and info["database"].endswith("tuned-test.json")
    assert optimize.database_entry(spec_of(4096), "sm_90a", "Other") is None


def test_explain_names_the_database(ship_dir, monkeypatch):
    pytest.importorskip("mlir")
    a, w = torch.randn(64, 128).bfloat16(), torch.randn(256, 128).bfloat16()
    cfg = {"strategy": "wgmma", "BM": 64, "BN": 128, "BK": 64}
    _ship(ship_dir, [_e(spec_of(64), 0.01, 0.02, cfg)])
    ex = deepgen.explain(a, w.t(), target="sm_90a", device_name=H200)
    assert ex.source == "tuned" and ex.database.startswith("shipped ")
    assert "shipped for this GPU" in ex.reason and "(shipped database)" in str(ex)
    ex = deepgen.explain(a, w.t(), target="sm_90a", device_name="Other GPU")
    assert ex.source != "tuned" and not (ex.database or "").startswith("shipped")
    _user([_e(spec_of(64), 0.01, 0.02, {**cfg, "BN": 64})])
    ex = deepgen.explain(a, w.t(), target="sm_90a", device_name=H200)
    assert ex.database.startswith("user ") and ex.config["BN"] == 64


# -- routing per M range to range kernels -----------------------------------------------------

def _range_entry(M, points, device=H200):
    """A tuned entry for the range kernel deepgen.gemm(dynamic_m=True) runs at M."""
    rspec = range_table.range_spec(spec_of(M))
    return {"spec": rspec.to_dict(), "target": "sm_90a", "device": device,
            "config": {"strategy": "wgmma"},
            "points": [{"M": m, "ms": ms, "baseline_ms": base} for m, ms, base in points]}


def test_range_entry_routes_its_m_range_to_a_range_kernel():
    rspec = range_table.range_spec(spec_of(40))
    assert isinstance(rspec.M, Dim) and (rspec.M.min, rspec.M.max) == (17, 64)
    _user([_range_entry(40, [(17, 0.020, 0.030), (64, 0.025, 0.030)]),
           _range_entry(300, [(300, 0.05, 0.06), (2048, 0.20, 0.19)]),  # one point loses
           _e(spec_of(1024), 0.10, 0.12)])                                # exact: wins
    for M in (17, 33, 64):
        assert optimize.route_of(spec_of(M), "sm_90a", H200) == "range"
    assert optimize.route_of(spec_of(16), "sm_90a", H200) is None  # another range
    assert optimize.route_of(spec_of(65), "sm_90a", H200) is None
    assert optimize.route_of(spec_of(40, N=512), "sm_90a", H200) is None  # other N
    assert optimize.route_of(spec_of(40), "sm_90a", "Other GPU") is None
    assert optimize.route_of(spec_of(1000), "sm_90a", H200) == "exact"  # range entry loses
    # host cost counts: a range kernel's win below the host floor does not route
    _user([_range_entry(40, [(17, 0.004, 0.0045)])])
    assert optimize.route_of(spec_of(20), "sm_90a", H200) is None


def test_range_entry_without_times_never_routes():
    e = _range_entry(40, [])
    e.pop("points")
    _user([e])  # neither points nor ms: never
    assert optimize.route_of(spec_of(40), "sm_90a", H200) is None
    _user([{**e, "ms": 0.02, "baseline_ms": 0.03}])  # its own times, at the range's maximum
    assert optimize.route_of(spec_of(40), "sm_90a", H200) == "range"


def test_shipped_range_entry_and_the_user_override(ship_dir):
    _ship(ship_dir, [_range_entry(40, [(17, 0.02, 0.03)])])
    assert optimize.route_of(spec_of(50), "sm_90a", H200) == "range"
    _user([_range_entry(40, [(17, 0.04, 0.03)])])  # the user's measurement: torch faster
    optimize.reset()
    assert optimize.route_of(spec_of(50), "sm_90a", H200) is None


def test_optimized_linear_calls_the_range_kernel(monkeypatch):
    monkeypatch.setattr(optimize, "_on_gpu", lambda t: True)
    monkeypatch.setattr(optimize, "_device", lambda index: ("sm_90a", H200))
    _user([_range_entry(40, [(17, 0.02, 0.03)]), _e(spec_of(4096), 0.05, 0.07)])
    calls = []

    def fake_gemm(a, b, **kw):
        calls.append((a.numel() // a.shape[-1], kw.get("dynamic_m")))
        return torch.nn.functional.linear(a, b.t(), kw.get("bias"))

    monkeypatch.setattr(api, "gemm", fake_gemm)
    lin = torch.nn.Linear(128, 256).bfloat16()
    deepgen.optimize(lin)
    assert type(lin).__name__ == "OptimizedLinear"
    for M in (20, 33, 4096, 8):
        lin(torch.randn(M, 128).bfloat16())
    assert calls == [(20, True), (33, True), (4096, False)]  # M = 8: torch
    calls.clear()
    with optimize.optimizing():
        torch.nn.functional.linear(torch.randn(50, 128).bfloat16(), lin.weight, lin.bias)
    assert calls == [(50, True)]
