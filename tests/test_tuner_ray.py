"""The Ray backend on a local Ray instance (2 CPUs): compile tasks (real compiles of tiny
candidates, and a worker that dies), and bench actors driving a fake worker on the CPU."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'deepgen-mlir[ray]')")

import tuner_fakes as fakes  # noqa: E402
from deepgen.tuner import ray_backend  # noqa: E402
from deepgen.tuner import run as run_mod  # noqa: E402
from deepgen.tuner.journal import latest, read_journal  # noqa: E402
from deepgen.tuner.manifest import load_index  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    # Ray's workers inherit the environment: let them import the fakes beside this file.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), old]))
    try:  # two GPUs declared (none here): Ray hands each GPU actor one of them
        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_compile_on_ray_writes_the_same_bundle(local_ray, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"format": "deepgen-tuning/1", "dtype": "f32",
                               "shapes": [{"size": 64}], "space": {"BK": [8, 16]}}))
    out = tmp_path / "b"
    opts = run_mod.Options(out=out, workers=2, compile_only=True, ray="local", progress=False)
    assert run_mod.tune(cfg, opts) == 0
    _, cands = load_index(out)
    assert 2 <= len(cands) <= 3  # the two points, and the default config unless among them
    for c in cands:
        assert c.compile["ok"], c.compile
        assert (out / c.dir / "kernel.cubin").exists()
    assert len(latest(read_journal(out), "compile")) == len(cands)


def test_a_ray_compile_worker_that_dies_fails_only_its_candidate(local_ray, tmp_path):
    tasks = [{"id": f"t{i}", "action": a, "out": str(tmp_path / f"t{i}")}
             for i, a in enumerate(["ok", "die", "ok"])]
    out = {r["id"]: r for r in ray_backend.compile_ray(tasks, "local", 2, timeout=120,
                                                       fn=fakes.ray_compile_fn)}
    assert out["t0"]["ok"] and out["t2"]["ok"]
    assert out["t1"]["ok"] is False and out["t1"]["crashed"]


def test_bench_actors_restart_their_worker(local_ray, tmp_path):
    tasks = []
    for i, action in enumerate(["ok", "die", "ok", "ok"]):
        d = tmp_path / f"k{i}"
        d.mkdir()
        (d / "kernel.json").write_text("{}")
        tasks.append({"id": f"t{i}", "action": action, "dir": str(d)})
    got = {t["id"]: rec for t, rec in ray_backend.bench_ray(
        tasks, "local", timeout=60, fn=fakes.bench_fn, init=fakes.bench_init, num_gpus=0,
        actors=1)}
    assert set(got) == {"t0", "t1", "t2", "t3"}
    assert got["t1"]["crashed"] and not got["t1"]["ok"]
    assert all(got[t]["ok"] for t in ("t0", "t2", "t3"))
    assert got["t0"]["pid"] != got["t2"]["pid"]  # a fresh worker process after the death


def test_bench_actors_spread_over_the_gpus_and_a_crash_stays_in_one(local_ray, tmp_path):
    """One actor per GPU of the cluster (two declared): Ray gives each its own GPU, which its
    worker process sees (CUDA_VISIBLE_DEVICES); a worker that dies costs only its task."""
    tasks = []
    for i, action in enumerate(["ok"] * 3 + ["die"] + ["ok"] * 4):
        d = tmp_path / f"k{i}"
        d.mkdir()
        (d / "kernel.json").write_text("{}")
        tasks.append({"id": f"t{i}", "action": action, "dir": str(d)})
    got = {t["id"]: rec for t, rec in ray_backend.bench_ray(
        tasks, "local", timeout=60, fn=fakes.bench_fn, init=fakes.bench_init)}
    assert len(got) == 8 and got["t3"]["crashed"] and not got["t3"]["ok"]
    ok = [rec for t, rec in got.items() if t != "t3"]
    assert all(rec["ok"] for rec in ok)
    assert {rec["visible"] for rec in ok} == {"0", "1"}
