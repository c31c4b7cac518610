"""The tuner's GPU side on a real GPU: `deepgen bench` checks, times, ranks, and survives
candidates that are wrong, that kill their CUDA context (trap) or that never end (hang).

Runs on the GPU host without MLIR: the bundle is made here from the runtime's reference PTX
GEMM (the driver compiles it), with variants broken on purpose. From the repository root:

    pip install --no-build-isolation --no-deps -e .      # builds the launcher there
    python -m pytest tests/gpu/test_tuner_gpu.py -v
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest

from deepgen.runtime.artifact import KernelArtifact
from deepgen.runtime.reference import FAULTS, faulty_artifact, reference_artifact
from deepgen.spec import GemmSpec
from deepgen.tuner.benching import gpu_count
from deepgen.tuner.journal import latest, read_journal
from deepgen.tuner.manifest import Candidate, write_index

pytestmark = pytest.mark.gpu

SPEC = GemmSpec(256, 384, 512)
HANG_TIMEOUT = 20  # seconds before the hung candidate's worker is killed


def _variant(name: str) -> KernelArtifact:
    if name == "wrong":  # a kernel built for half of K, labelled with the full K
        art = reference_artifact(dataclasses.replace(SPEC, K=SPEC.K // 2))
        art.spec = SPEC.to_dict()
        return art
    if name in FAULTS:  # trap: the context is lost, the worker must be replaced; hang
        return faulty_artifact(SPEC, name)
    return reference_artifact(SPEC, split=(name == "split"))


def _bundle(d, names: list[str]):
    cands = []
    for name in names:
        c = Candidate(SPEC, {"reference": name}, "sm_90a", default=(name == "ok"))
        _variant(name.split("-")[0]).save(d / c.dir)
        c.compile = {"ok": True, "seconds": 0.0, "resources": {}}
        cands.append(c)
    shapes = [{"key": cands[0].shape, "spec": SPEC.to_dict(), "space": {},
               "candidates": len(cands)}]
    write_index(d, "gpu-test", shapes, cands, {"target": "sm_90a"})
    return d, {c.config["reference"]: c.id for c in cands}


def _deepgen_bench(d, out, *args):
    return subprocess.run([sys.executable, "-m", "deepgen", "bench", str(d), "--out", str(out),
                           "--timeout", str(HANG_TIMEOUT), "--no-progress", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return _bundle(tmp_path_factory.mktemp("tune_bundle"),
                   ["ok", "wrong", "trap", "split", "hang", "ok-again"])


def test_bench_ranks_good_kernels_and_survives_bad_ones(bundle, tmp_path):
    d, ids = bundle
    out = tmp_path / "results"
    t0 = time.monotonic()
    proc = _deepgen_bench(d, out, "--gpus", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = latest(read_journal(out), "bench")
    assert set(recs) == set(ids.values())
    ok = lambda n: recs[ids[n]]
    for name in ("ok", "split", "ok-again"):
        assert ok(name)["ok"] and ok(name)["rel_err"] < 1e-5, ok(name)
        assert ok(name)["ms"] > 0 and ok(name)["baseline_ms"] > 0
    assert ok("wrong")["wrong"] and ok("wrong")["rel_err"] > 1e-3
    assert not ok("trap")["ok"] and (ok("trap").get("restart") or ok("trap").get("crashed"))
    assert ok("hang")["timeout"]
    # after the trap and the hang, fresh workers still produce correct results
    assert ok("ok-again")["ok"]
    res = json.loads((out / "results.json").read_text())
    (sh,) = res["shapes"]
    assert sh["counts"]["correct"] == 3 and sh["counts"]["wrong"] == 1
    assert sh["counts"]["bench_failed"] == 2
    assert {t["config"]["reference"] for t in sh["top"]} == {"ok", "split", "ok-again"}
    assert sh["baseline"]["tflops"] > 0 and res["device"]
    print(f"bench of 6 candidates (one hang of {HANG_TIMEOUT} s): "
          f"{time.monotonic() - t0:.1f} s\n{proc.stdout}")


@pytest.mark.skipif(gpu_count() < 2, reason="needs two GPUs (its CPU counterpart: "
                    "tests/test_tuner_run.py::test_bench_on_two_fake_gpus_survives_a_crash_on_one)")
def test_bench_on_every_gpu_survives_a_trap_on_one(tmp_path):
    """One worker per GPU: the trapped worker is replaced, every other candidate is timed, the
    work spreads over every GPU, and the ranking scales each GPU's times to one baseline."""
    n = 16 * gpu_count()  # enough that a worker that starts a second late still gets some
    names = [f"ok-{i}" for i in range(n // 2)] + ["trap"] + [f"ok-{i}" for i in range(n // 2, n)]
    d, ids = _bundle(tmp_path / "bundle", names)
    out = tmp_path / "results"
    proc = _deepgen_bench(d, out)  # every visible GPU
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = latest(read_journal(out), "bench")
    assert set(recs) == set(ids.values())
    trap = recs[ids["trap"]]
    assert not trap["ok"] and (trap.get("restart") or trap.get("crashed")) and "slot" in trap
    good = [recs[ids[n]] for n in names if n != "trap"]
    assert all(r["ok"] and r["rel_err"] < 1e-5 for r in good)
    gpus = {r["gpu_uuid"] for r in good}
    assert len(gpus) == gpu_count(), gpus  # every GPU's worker took some
    res = json.loads((out / "results.json").read_text())
    assert res["bench_phase"]["workers"] == gpu_count()
    (sh,) = res["shapes"]
    assert set(sh["gpu_scales"]) == gpus and all(0.8 < f < 1.25 for f in sh["gpu_scales"].values())
    assert sh["counts"]["correct"] == n and sh["counts"]["bench_failed"] == 1
