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
from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec
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
    art = reference_artifact(SPEC, split=(name == "split"))
    ptx = art.binary.decode()
    first = "    ld.param.u64 %rd1, [pA];"
    if name == "trap":  # the context is lost after this: the worker must be replaced
        ptx = ptx.replace(first, "    trap;\n" + first, 1)
    elif name == "hang":
        ptx = ptx.replace(first, "HANG:\n    bra.uni HANG;\n" + first, 1)
    art.binary = ptx.encode()
    art.assembly = ptx
    return art


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune_bundle")
    names = ["ok", "wrong", "trap", "split", "hang", "ok-again"]
    cands = []
    for name in names:
        c = Candidate(SPEC, {"reference": name}, "sm_90a", default=(name == "ok"))
        _variant(name.replace("-again", "")).save(d / c.dir)
        c.compile = {"ok": True, "seconds": 0.0, "resources": {}}
        cands.append(c)
    shapes = [{"key": cands[0].shape, "spec": SPEC.to_dict(), "space": {}, "candidates": 6}]
    write_index(d, "gpu-test", shapes, cands, {"target": "sm_90a"})
    return d, {c.config["reference"]: c.id for c in cands}


def test_bench_ranks_good_kernels_and_survives_bad_ones(bundle, tmp_path):
    d, ids = bundle
    out = tmp_path / "results"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "deepgen", "bench", str(d), "--out", str(out),
                           "--timeout", str(HANG_TIMEOUT), "--gpus", "1", "--no-progress"],
                          capture_output=True, text=True, timeout=600)
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
