"""CPU side of benchmarks/multi_gpu_tune.py (issue 19): trapping candidates go into a bundle
among the real ones, and the summary's scaling, ranking agreement and crash checks hold on
made-up runs, including runs where they must fail. The GPU host runs the rest."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deepgen.runtime.artifact import KernelArtifact
from deepgen.runtime.reference import FAULTS, reference_artifact
from deepgen.spec import GemmSpec
from deepgen.tuner.benching import bench_tasks
from deepgen.tuner.manifest import Candidate, load_index, write_index

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mgt():
    sys.path.insert(0, str(REPO / "benchmarks"))  # not a package; the script does the same
    import multi_gpu_tune

    return multi_gpu_tune


def _bundle(d: Path, per_shape: int = 6) -> list[Candidate]:
    shapes, cands = [], []
    for spec in (GemmSpec(64, 64, 64, dtype="bf16"), GemmSpec(128, 64, 32, dtype="bf16")):
        mine = [Candidate(spec, {"BK": 8 * (i + 1)}, "sm_90a", compile={"ok": True})
                for i in range(per_shape)]
        for c in mine:
            reference_artifact(spec).save(d / c.dir)
        shapes.append({"key": mine[0].shape, "spec": spec.to_dict(), "candidates": per_shape})
        cands += mine
    write_index(d, "tiny", shapes, cands, {"target": "sm_90a"})
    return cands


def test_traps_go_among_each_shapes_candidates_once(mgt, tmp_path):
    real = _bundle(tmp_path)
    ids = mgt.add_traps(tmp_path, 2)
    assert len(ids) == 4 and mgt.add_traps(tmp_path, 2) == []  # a second call adds none
    index, cands = load_index(tmp_path)
    assert [s["candidates"] for s in index["shapes"]] == [8, 8] and index["target"] == "sm_90a"
    order = [t["id"] for t in bench_tasks(tmp_path, cands, set())]
    assert len(order) == 16 and set(order) >= {c.id for c in real}
    pos = [order.index(i) for i in ids]
    assert pos == [2, 5, 10, 13]  # inside each shape's run, never first or last
    art = KernelArtifact.load(tmp_path / next(c for c in cands if c.id == ids[0]).dir)
    assert FAULTS["trap"] in art.binary.decode()


def _rec(i, ms, gpu, base=1.0, ok=True, **kw):
    return {"id": i, "stage": "bench", "ok": ok, "ms": ms, "gpu": gpu, "gpu_uuid": f"G{gpu}",
            "baseline_ms": base, **kw}


def _run(workers, seconds, times, gpus, trap_slot=0, drop=()):
    """A run's records: candidates c0.. with `times`, spread over `gpus`, a trap after the
    first, GPU 1 10% slower than GPU 0 (its baseline too)."""
    recs = []
    for n, ms in enumerate(times):
        if f"c{n}" in drop:
            continue
        g = gpus[n % len(gpus)]
        slow = 1.1 if g == 1 else 1.0
        recs.append(_rec(f"c{n}", ms * slow, g, base=slow))
        if n == 0:
            recs.append({"id": "trap", "stage": "bench", "ok": False, "restart": True,
                         "slot": trap_slot})
    return {"workers": workers, "rc": 0, "bench_phase": {"seconds": seconds}, "records": recs}


def test_summary_scaling_rankings_and_crashes(mgt):
    times = [1.0 + 0.1 * n for n in range(8)]
    noisy = [t * (1 + 0.004 * (-1) ** n) for n, t in enumerate(times)]
    shape_of = {f"c{n}": "s" for n in range(8)} | {"trap": "s"}
    runs = [_run(1, 60.0, times, [0]), _run(1, 62.0, noisy, [0]), _run(2, 32.0, times, [0, 1]),
            _run(2, 33.0, noisy, [1, 0], trap_slot=1)]
    s = mgt.summarize(runs, shape_of, {"trap"})
    one, two = s["by_workers"]["1"], s["by_workers"]["2"]
    assert one["bench_phase_s"] == 61.0 and two["bench_phase_s"] == 32.5
    assert two["speedup_vs_1"] == pytest.approx(61.0 / 32.5, abs=1e-3)
    # GPU 1's times are scaled back by its baseline: the rankings are the one-GPU ones
    assert two["worst_rho_vs_1"] == 1.0 and two["worst_regret_vs_1"] == 0.0
    assert two["rankings_agree"] and two["crash_isolated"] and two["gpus_used"] == 2
    check = runs[3]["crash_check"]
    assert check["after_each_trap"][0]["slot"] == 1
    assert check["after_each_trap"][0]["later_on_gpus"] == ["G0", "G1"]


def test_summary_fails_a_scrambled_ranking_and_a_lost_candidate(mgt):
    times = [1.0 + 0.1 * n for n in range(8)]
    shape_of = {f"c{n}": "s" for n in range(8)} | {"trap": "s"}
    runs = [_run(1, 60.0, times, [0]), _run(1, 60.0, times, [0]),
            _run(2, 30.0, times[::-1], [0, 1], drop=("c3",))]
    two = mgt.summarize(runs, shape_of, {"trap"})["by_workers"]["2"]
    assert two["worst_rho_vs_1"] < 0 and two["worst_regret_vs_1"] == pytest.approx(0.7)
    assert two["rankings_agree"] is False
    assert two["crash_isolated"] is False and runs[2]["crash_check"]["missing"] == ["c3"]


def test_spearman_and_regret(mgt):
    a = {"x": 1.0, "y": 2.0, "z": 3.0, "w": 4.0}
    assert mgt.spearman(a, a) == 1.0
    assert mgt.spearman(a, {k: -v for k, v in a.items()}) == -1.0
    assert mgt.regret(a, {"x": 2.0, "y": 1.0, "z": 3.0}) == 1.0  # b's winner y: 2.0 vs 1.0
    assert mgt.regret(a, a) == 0.0
