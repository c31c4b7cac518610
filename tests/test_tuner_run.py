"""Tune runs end to end on the CPU: compile-only bundles (real compiles of tiny candidates),
benchmarks with a fake GPU worker, resume after an interruption or a kill, results files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tuner_fakes as fakes
from deepgen.tuner import run as run_mod
from deepgen.tuner.journal import Journal, latest, read_journal, write_json
from deepgen.tuner.manifest import BUNDLE_FORMAT, load_index
from deepgen.tuner.run import Options, RunError

CONFIG = {"format": "deepgen-tuning/1", "name": "tiny", "dtype": "f32",
          "shapes": [{"size": 128}], "space": {"BN": [64, 128], "BK": [8, 16]}}


def _config(tmp_path, **changes) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**CONFIG, **changes}))
    return path


def _opts(out, **kw) -> Options:
    return Options(out=Path(out), workers=2, progress=False, **kw)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A compiled tiny bundle (4 candidates of 128^3, one of them the default config)."""
    tmp = tmp_path_factory.mktemp("bundle")
    out = tmp / "b"
    assert run_mod.tune(_config(tmp), _opts(out, compile_only=True)) == 0
    return out


@pytest.fixture
def fresh(bundle, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(bundle, out)
    return out


def test_compile_only_writes_a_portable_bundle(bundle, capsys):
    index, cands = load_index(bundle)
    assert index["format"] == BUNDLE_FORMAT and index["target"] == "sm_90a"
    assert [s["key"] for s in index["shapes"]] == ["128x128x128_f32_NN"]
    assert index["shapes"][0]["space"]["total"] == 4
    assert len(cands) == 4 and sum(c.default for c in cands) == 1
    for c in cands:
        assert c.compile["ok"] and c.compile["resources"] and c.compile["seconds"] > 0
        meta = json.loads((bundle / c.dir / "kernel.json").read_text())
        assert meta["config"] == c.config and (bundle / c.dir / "kernel.cubin").exists()
        assert not (bundle / c.dir / "kernel.ptx").exists()  # PTX dropped: small bundles
    recs = read_journal(bundle)
    assert len(recs) == 4 and {r["stage"] for r in recs} == {"compile"}


def test_a_second_run_without_resume_refuses(bundle, fresh, tmp_path):
    with pytest.raises(RunError, match="--resume"):
        run_mod.tune(_config(tmp_path), _opts(fresh, compile_only=True))


def test_resume_skips_finished_candidates_and_redoes_the_rest(fresh, tmp_path, capsys):
    """Simulated interruption: two candidates' journal lines and one kernel dir are lost."""
    lines = (fresh / "journal.jsonl").read_text().splitlines()
    kept = [json.loads(line)["id"] for line in lines[:2]]
    lost = [json.loads(line)["id"] for line in lines[2:]]
    (fresh / "journal.jsonl").write_text("\n".join(lines[:2]) + '\n{"torn li')
    shutil.rmtree(fresh / "kernels" / lost[0])
    assert run_mod.tune(_config(tmp_path), _opts(fresh, compile_only=True, resume=True)) == 0
    assert "2 candidates already compiled (or failed), 2 to go" in capsys.readouterr().out
    recs = latest(read_journal(fresh), "compile")
    assert set(recs) == set(kept + lost)
    ids = [r["id"] for r in read_journal(fresh)]
    assert all(ids.count(i) == 1 for i in kept)  # not compiled again
    assert all((fresh / "kernels" / i / "kernel.json").exists() for i in lost)


def test_killed_run_resumes(tmp_path):
    """A run killed mid-compile (SIGKILL of its whole process group) continues with --resume
    and compiles each candidate once."""
    cfg = _config(tmp_path, space={"BN": [64, 128], "BK": [8, 16, 32]})
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "deepgen", "tune", str(cfg), "--compile-only", "--out",
           str(out), "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(read_journal(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its pool workers
        proc.wait()
    before = latest(read_journal(out), "compile")
    assert 2 <= len(before) < 6, "the run ended before it was killed: nothing to resume"
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = read_journal(out)
    assert len(latest(after, "compile")) == 6
    ids = [r["id"] for r in after]
    assert all(ids.count(i) == 1 for i in before)
    _, cands = load_index(out)
    assert all(c.compile.get("ok") for c in cands)


def _bench(out, **kw):
    return run_mod.bench(out, out, _opts(out, bench_worker=(fakes.bench_fn_by_config,
                                                             fakes.bench_init), **kw))


def test_bench_ranks_correct_candidates_and_records_crashes(fresh, capsys):
    assert _bench(fresh, top=2) == 0
    res = json.loads((fresh / "results.json").read_text())
    assert res["format"] == "deepgen-tune-results/1" and res["device"] == "Fake GPU"
    (sh,) = res["shapes"]
    assert sh["counts"] == {"candidates": 4, "compiled": 4, "compile_failed": 0,
                            "benchmarked": 4, "correct": 2, "wrong": 0, "bench_failed": 2}
    assert "worker process died (exit code 9) on this task" in sh["errors"]
    top = sh["top"]
    assert [t["config"]["BK"] for t in top] == [8, 16] and top[0]["ms"] < top[1]["ms"]
    assert all(t["config"]["BN"] == 128 for t in top)
    assert top[0]["registers"] > 0 and top[0]["spill_stores"] == 0
    assert top[0]["compile_seconds"] > 0 and top[0]["vs_baseline"] == 1.0 / top[0]["ms"]
    assert sh["baseline"]["ms"] == 1.0 and sh["default"]["default"]
    phase = res["bench_phase"]  # this run's benchmark phase, for scaling over GPUs
    assert (phase["candidates"], phase["workers"], phase["failed_or_wrong"]) == (4, 1, 2)
    assert phase["seconds"] > 0
    out = capsys.readouterr().out
    assert "128x128x128_f32_NN" in out and "2/4" in out


def test_results_rank_times_from_several_gpus_on_one_baseline():
    """GPU 1 runs 10% slower (its cuBLAS baseline too): b's 1.05 ms there is a faster kernel
    than a's 1.0 ms on GPU 0, and ranks first; from one GPU nothing is scaled."""
    from deepgen.spec import GemmSpec
    from deepgen.tuner.manifest import Candidate
    from deepgen.tuner.database import winners
    from deepgen.tuner.results import build

    spec = GemmSpec(128, 128, 128)
    cands = [Candidate(spec, {"BK": bk}, "sm_90a", compile={"ok": True}) for bk in (8, 16, 32)]
    index = {"shapes": [{"key": cands[0].shape, "spec": spec.to_dict()}]}

    def rec(c, ms, gpu, base):
        return {"id": c.id, "stage": "bench", "ok": True, "ms": ms, "tflops": 1 / ms,
                "baseline_ms": base, "gpu": gpu, "gpu_uuid": f"GPU-{gpu}"}

    two = [rec(cands[0], 1.0, 0, 1.0), rec(cands[1], 1.05, 1, 1.1), rec(cands[2], 1.2, 0, 1.0)]
    (sh,) = build(index, cands, two)["shapes"]
    assert [t["config"]["BK"] for t in sh["top"]] == [16, 8, 32]
    assert sh["gpu_scales"] == pytest.approx({"GPU-0": 1.05, "GPU-1": 1.05 / 1.1})
    assert sh["top"][0]["ms"] == 1.05 and sh["top"][0]["ms_ranked"] == pytest.approx(1.05 * 1.05 / 1.1)
    assert sh["top"][0]["gpu"] == "GPU-1"
    (entry,) = winners({"shapes": [sh]}, "test")  # installed on the baseline's scale
    assert entry["ms"] == sh["top"][0]["ms_ranked"] and entry["baseline_ms"] == 1.0
    assert entry["tflops"] == pytest.approx(sh["top"][0]["tflops"] * 1.05 / entry["ms"])
    one = [rec(cands[0], 1.0, 0, 1.0), rec(cands[1], 1.05, 0, 1.1)]
    (sh,) = build(index, cands, one)["shapes"]
    assert [t["config"]["BK"] for t in sh["top"]] == [8, 16]
    assert "gpu_scales" not in sh and "ms_ranked" not in sh["top"][0]


def test_bench_on_two_fake_gpus_survives_a_crash_on_one(fresh):
    """The CPU side of tests/gpu/test_tuner_gpu.py's run on two GPUs: two worker slots, the
    BN 64 candidates kill their worker, the others are all timed, failures name their slot."""
    assert _bench(fresh, gpus=2) == 0
    recs = latest(read_journal(fresh), "bench")
    assert len(recs) == 4
    crashed = [r for r in recs.values() if not r["ok"]]
    assert len(crashed) == 2 and all(r["crashed"] and r["slot"] in (0, 1) for r in crashed)
    assert all(r["gpu"] in (0, 1) for r in recs.values() if r["ok"])
    res = json.loads((fresh / "results.json").read_text())
    assert res["bench_phase"]["workers"] == 2 and res["shapes"][0]["counts"]["correct"] == 2


def test_bench_resume_runs_only_what_is_left(fresh):
    assert _bench(fresh) == 0
    benched = latest(read_journal(fresh), "bench")
    lines = [l for l in (fresh / "journal.jsonl").read_text().splitlines()
             if '"bench"' not in l or json.loads(l)["id"] != next(iter(benched))]
    (fresh / "journal.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match="--resume"):
        _bench(fresh)
    assert _bench(fresh, resume=True) == 0
    recs = [r for r in read_journal(fresh) if r["stage"] == "bench"]
    assert len(recs) == 4 and len({r["id"] for r in recs}) == 4


def test_bench_into_another_directory_keeps_the_bundle_clean(fresh, tmp_path):
    out = tmp_path / "results"
    assert run_mod.bench(fresh, out, _opts(out, bench_worker=(fakes.bench_fn_by_config,
                                                              fakes.bench_init))) == 0
    assert (out / "results.json").exists() and (out / "journal.jsonl").exists()
    assert not (fresh / "results.json").exists()
    assert {r["stage"] for r in read_journal(fresh)} == {"compile"}


def test_results_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_json(path, {"v": 1})
    def fail(*a):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left


def test_journal_appends_survive_torn_lines(tmp_path):
    with Journal(tmp_path) as j:
        j.append({"id": "a", "stage": "compile", "ok": True})
    with open(tmp_path / "journal.jsonl", "a") as f:
        f.write('{"id": "b", "sta')  # killed mid-write
    with Journal(tmp_path) as j:
        j.append({"id": "c", "stage": "compile", "ok": False})
    assert [r["id"] for r in read_journal(tmp_path)] == ["a", "c"]


def test_report_table_and_plot(fresh, capsys, monkeypatch):
    _bench(fresh)
    capsys.readouterr()
    pytest.importorskip("matplotlib")
    assert run_mod.report(fresh) == 0
    out = capsys.readouterr().out
    assert "best TF/s" in out and f"plot: {fresh / 'results.png'}" in out
    assert (fresh / "results.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert run_mod.report(fresh, tmp := fresh / "other.png") == 0
    assert "no plot: matplotlib is not installed" in capsys.readouterr().out
    assert not tmp.exists()


def test_cli_tune_report_and_bench_errors(fresh, tmp_path, capsys):
    from deepgen import cli

    _bench(fresh)
    assert cli.main(["tune", "report", str(fresh)]) == 0
    assert "128x128x128_f32_NN" in capsys.readouterr().out
    assert cli.main(["bench", str(tmp_path / "nothing")]) == 2
    assert "no index.json: not a tune bundle" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**CONFIG, "space": {"BM": ["x"]}}))
    assert cli.main(["tune", str(bad), "--dry-run"]) == 2
    assert f"{bad}: $.space.BM[0]: 'x' is not of type 'integer'" in capsys.readouterr().err
    assert cli.main(["tune", "report"]) == 2


def test_bench_path_imports_no_mlir():
    """`deepgen bench` runs on GPU hosts without MLIR: its modules must not import it."""
    code = ("import sys; import deepgen.commands.bench, deepgen.tuner.run, "
            "deepgen.tuner.benching, deepgen.tuner.supervisor, deepgen.tuner.results, "
            "deepgen.tuner.manifest, deepgen.tuner.database, deepgen.tuner.ray_backend; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('mlir', 'torch', 'llvmlite') or m.startswith('deepgen.compiler')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
